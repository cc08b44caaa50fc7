-- SDK credits calls and job limits against the sandbox.
local S = require "support.sandbox"
local ugen = require "ugen"
local sched = require("ugen").scheduler

local function client(slug, extra)
  local o = { base_url = S.info().base_url, api_key = S.tenant[slug or "default"].api_key,
              rng = function() return 0 end }
  for k, v in pairs(extra or {}) do o[k] = v end
  return ugen.new(o)
end

local JOB = { product_name = "Mug", product_image_url = "https://example.com/mug.jpg", segment_count = 1,
              video_model = "kling3_std" }

describe("sdk credits (sandbox)", function()
  setup(function() S.info() end)

  it("balance: credit_balance, credit_reserved, available_credits", function()
    S.reset("acme")
    local b = assert(client("acme").credits:balance())
    assert.equal(b.credit_balance - b.credit_reserved, b.available_credits)
    assert.equal(S.tenant.acme.credits, b.credit_balance)
  end)

  it("estimate with the docs' values: a total and a breakdown", function()
    local e = assert(client("acme").credits:estimate{ segment_count = 3, model_id = "veo3_fast", variant = "i2v",
                                                      music_enabled = true, voice_enabled = true })
    assert.is_number(e.total_credits)
    assert.is_table(e.breakdown)
    local sum = 0
    for _, v in pairs(e.breakdown) do if type(v) == "number" then sum = sum + v end end
    assert.is_true(sum > 0)
  end)

  it("estimate validation: segment_count out of range is caught before sending", function()
    local _, err = client("acme").credits:estimate{ segment_count = 0 }
    assert.equal("validation", err.kind); assert.is_nil(err.status)
    assert.same({ "body", "segment_count" }, err.fields[1].loc)
  end)

  it("transactions: a job's reserve shows up; each_transaction pages through all", function()
    S.reset("acme")
    local c = client("acme")
    local job = assert(c.jobs:create(JOB))
    local page = assert(c.credits:transactions{ job_id = job.job_id })
    assert.is_true(#page.items >= 1)
    local reserve
    for _, t in ipairs(page.items) do if t.type == "reserve" then reserve = t end end
    assert.is_table(reserve)
    assert.equal(job.job_id, reserve.job_id)
    local b = assert(c.credits:balance())
    assert.is_true(b.credit_reserved > 0)
    -- every transaction, in pages of 1
    local all = assert(c.credits:transactions{ page_size = 100 })
    local n = 0
    for t, err in c.credits:each_transaction{ page_size = 1 } do
      assert.is_table(t, tostring(err)); n = n + 1
    end
    assert.equal(all.total, n)
    assert.is_true(n >= 1)
  end)

  it("concurrent limit: 429 with Retry-After; honoured and retried when short", function()
    S.reset("limited")
    local c = client("limited", { max_retries = 0 })
    assert(c.jobs:create(JOB))
    local _, err = c.jobs:create(JOB)
    assert.equal("rate_limit", err.kind); assert.equal(429, err.status)
    assert.is_number(err.retry_after); assert.is_true(err.retry_after <= 60)
    assert.is_true(err.retryable)
    -- with retries, the SDK sleeps the Retry-After (the running job ends) and gets through
    local t0 = sched.now()
    local job, e2 = client("limited").jobs:create(JOB)
    assert.is_table(job, tostring(e2))
    assert.is_true(sched.now() - t0 >= 0.5)
  end)

  it("daily limit: Retry-After over 60 s is not slept; rate_limit error carries it", function()
    local c = client("limited")
    -- 2 jobs were created above today; the daily limit is 3 (reset to be sure)
    S.reset("limited")
    assert(S.request{ method = "PUT", url = S.info().origin .. "/_sandbox/limits", tenant = "limited",
                      json = { concurrent_limit = 10, daily_limit = 1 } }.status == 200)
    assert(c.jobs:create(JOB))
    local t0 = sched.now()
    local job, err = c.jobs:create(JOB)
    assert.is_nil(job)
    assert.is_true(sched.now() - t0 < 1)
    assert.equal("rate_limit", err.kind)
    assert.is_true(err.retry_after > 60)
    assert.equal(1, err.attempts)
    S.reset("limited")
  end)
end)
