-- The credit guard (jobs:create's opts.max_credits) and jobs:create_and_wait,
-- against the sandbox. "No job created" is read from the sandbox itself (its
-- job list and credit reservation through curl, not through the SDK).
local S = require "support.sandbox"
local ugen = require "ugen"
local socket = require "socket"

local function client(slug)
  return ugen.new{ base_url = S.info().base_url, api_key = S.tenant[slug or "acme"].api_key,
                   rng = function() return 0 end }
end

local JOB = { product_name = "Guarded Mug", product_image_url = "https://example.com/mug.jpg",
              segment_count = 2, video_model = "kling3_std" }

local function with(t, extra)
  local o = {}
  for k, v in pairs(t) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- the tenant's jobs and reserved credits, as the sandbox has them
local function server_state(slug)
  local jobs = S.request{ path = "/jobs?page_size=100", tenant = slug or "acme" }
  assert(jobs.status == 200, jobs.body)
  local bal = S.request{ path = "/credits/balance", tenant = slug or "acme" }
  assert(bal.status == 200, bal.body)
  return jobs.json.total, bal.json.credit_reserved
end

describe("jobs:create { max_credits } (sandbox)", function()
  local c, price
  setup(function()
    S.info()
    c = client()
    price = assert(c.credits:estimate{ segment_count = 2, model_id = "kling3_std" }).total_credits
  end)
  before_each(function() S.reset("acme") end)

  it("refuses a job estimated over the budget: kind budget, OVER_BUDGET, no job created", function()
    local job, err = c.jobs:create(JOB, { max_credits = price - 1 })
    assert.is_nil(job)
    assert.equal("budget", err.kind)
    assert.equal("OVER_BUDGET", err.code)
    assert.is_false(err.retryable)
    assert.equal(price, err.details.estimate)
    assert.equal(price - 1, err.details.budget)
    assert.is_true(ugen.is_error(err, "budget"))
    local s = tostring(err)
    assert.matches(("estimated at %d credits"):format(price), s, 1, true)
    assert.matches(("budget of %d"):format(price - 1), s, 1, true)
    assert.matches("no job was created", s, 1, true)
    local total, reserved = server_state()
    assert.equal(0, total)
    assert.equal(0, reserved)
  end)

  it("creates the job when the estimate is within budget; meta.estimate is the estimate", function()
    local job, meta = c.jobs:create(JOB, { max_credits = price })
    assert.is_table(job, tostring(meta))
    assert.equal(price, meta.estimate.total_credits)
    assert.equal(price, job.credits_estimated)   -- the estimate priced the job the server made
    assert.is_string(meta.idempotency_key)
    assert.equal(1, (server_state()))
  end)

  it("prices the job's video_model (sent as the estimate's model_id), not the default model", function()
    local veo = assert(c.credits:estimate{ segment_count = 2, model_id = "veo3" }).total_credits
    assert.is_true(veo > price, "the test needs veo3 dearer than kling3_std")
    local _, err = c.jobs:create(with(JOB, { video_model = "veo3" }), { max_credits = price })
    assert.equal("budget", err and err.kind)
    assert.equal(veo, err.details.estimate)
    assert.equal(0, (server_state()))
  end)

  it("prices the same fields as the job (segment_count, music_enabled)", function()
    local dear = assert(c.credits:estimate{ segment_count = 3, model_id = "kling3_std", music_enabled = true })
    local _, err = c.jobs:create(with(JOB, { segment_count = 3, music_enabled = true }),
                                 { max_credits = dear.total_credits - 1 })
    assert.equal("OVER_BUDGET", err and err.code)
    assert.equal(dear.total_credits, err.details.estimate)
    local job = assert(c.jobs:create(with(JOB, { segment_count = 3, music_enabled = true }),
                                     { max_credits = dear.total_credits }))
    assert.equal(dear.total_credits, job.credits_estimated)
  end)

  it("max_credits = 0 refuses every job", function()
    local _, err = c.jobs:create(JOB, { max_credits = 0 })
    assert.equal("OVER_BUDGET", err and err.code)
    assert.equal(0, (server_state()))
  end)

  it("a failed estimate is returned as is and no job is created", function()
    local _, err = c.jobs:create(with(JOB, { video_model = "no_such_model" }), { max_credits = 1e9 })
    assert.equal("validation", err and err.kind, tostring(err))
    assert.equal(422, err.status)
    assert.equal(0, (server_state()))
    -- without a budget the same job is made (the server decides models)
  end)

  it("keeps the idempotency key: the guarded create is still sent once per key", function()
    local key = "guard-key-" .. tostring(os.time())
    local a = assert(c.jobs:create(JOB, { max_credits = price, idempotency_key = key }))
    local b = assert(c.jobs:create(JOB, { max_credits = price, idempotency_key = key }))
    assert.equal(a.job_id, b.job_id)
    assert.equal(1, (server_state()))
  end)

  it("a per-call timeout bounds the estimate and the create together", function()
    -- the server answers each of the two requests after 0.6 s; one second for both
    local fault = "delay=0.6;count=2;key=guard-deadline-" .. tostring(math.random(1e9))
    local t0 = socket.gettime()
    local job, err = c.jobs:create(JOB, { max_credits = price, timeout = 1, max_retries = 0,
                                          headers = { ["X-Sandbox-Fault"] = fault } })
    local took = socket.gettime() - t0
    assert.is_nil(job)
    assert.equal("timeout", err.kind, tostring(err))
    assert.is_true(took >= 0.9 and took < 1.6, "took " .. took)
  end)

  it("checks max_credits at the call site", function()
    for _, bad in ipairs({ -1, "10", 0 / 0, true }) do
      assert.has_error(function() c.jobs:create(JOB, { max_credits = bad }) end,
        "bad argument #2 to 'create' (opts.max_credits must be a number >= 0)")
    end
    assert.has_error(function() c.jobs:create_and_wait(JOB, { max_credits = -5 }) end,
      "bad argument #2 to 'create_and_wait' (opts.max_credits must be a number >= 0)")
    assert.equal(0, (server_state()))
  end)
end)

describe("jobs:create_and_wait (sandbox)", function()
  local c
  setup(function() S.info(); c = client() end)
  before_each(function() S.reset("acme") end)

  it("creates the job and returns it completed, with progress along the way", function()
    local seen = {}
    local job, err = c.jobs:create_and_wait(JOB, { interval = 0.02, timeout = 30,
      on_progress = function(j) seen[#seen + 1] = j.current_stage end, idempotency_key = "caw-1" })
    assert.is_table(job, tostring(err))
    assert.equal("completed", job.status)
    assert.is_string(job.final_video_url)
    assert.equal("caw-1", job.idempotency_key)
    assert.is_true(#seen >= 2)
    assert.equal("complete", seen[#seen])
    assert.equal(1, (server_state()))
  end)

  it("a job that fails: kind job_failed, with the job and its id", function()
    local _, err = c.jobs:create_and_wait(with(JOB, { product_name = "Broken Mug [fail:agents]" }),
      { interval = 0.02, timeout = 30 })
    assert.equal("job_failed", err.kind)
    assert.is_string(err.job_id)
    assert.equal(err.job_id, err.job.job_id)
    assert.matches(err.job_id, tostring(err), 1, true)
  end)

  it("the deadline covers the whole call: a short timeout ends with WAIT_TIMEOUT and the job's id", function()
    S.speed(1) -- the job takes about 20 s now: the wait is what times out, not the create
    finally(function() S.speed() end)
    local t0 = socket.gettime()
    local _, err = c.jobs:create_and_wait(JOB, { interval = 0.02, timeout = 1.5 })
    assert.equal("timeout", err.kind)
    assert.is_string(err.job_id)
    assert.is_string(err.idempotency_key)
    local r = S.request{ path = "/jobs/" .. err.job_id, tenant = "acme" }
    assert.equal(200, r.status)                  -- it was created, and keeps running
    local took = socket.gettime() - t0
    assert.is_true(took >= 1.4 and took < 3.5, "took " .. took)
  end)

  it("over budget: the budget error, no job id, no job", function()
    local _, err = c.jobs:create_and_wait(JOB, { max_credits = 1, interval = 0.02, timeout = 30 })
    assert.equal("budget", err.kind)
    assert.is_nil(err.job_id)
    assert.equal(0, (server_state()))
  end)

  it("within budget: created and awaited", function()
    local price = assert(c.credits:estimate{ segment_count = 2, model_id = "kling3_std" }).total_credits
    local job, err = c.jobs:create_and_wait(JOB, { max_credits = price, interval = 0.02, timeout = 30 })
    assert.is_table(job, tostring(err))
    assert.equal("completed", job.status)
  end)

  it("a create refused by validation: that error, no job id", function()
    local _, err = c.jobs:create_and_wait({ product_name = "No Image", segment_count = 1 }, { interval = 0.02 })
    assert.equal("validation", err.kind)
    assert.is_nil(err.job_id)
    assert.equal(0, (server_state()))
  end)

  it("a wait that fails after the create names the created job", function()
    -- the job is created, then deleted server-side (a tenant reset) from the
    -- first poll's progress callback, so the next poll is a 404; a slow clock
    -- keeps the job from finishing before that
    S.speed(1)
    finally(function() S.speed() end)
    local _, err = c.jobs:create_and_wait(JOB, { interval = 0.02, timeout = 30, on_progress = function()
      S.reset("acme")
    end })
    assert.equal("not_found", err.kind, tostring(err))
    assert.is_string(err.job_id)
    assert.matches("job " .. err.job_id .. " was created; waiting for it failed", tostring(err), 1, true)
  end)

  it("checks every option before anything is sent", function()
    assert.has_error(function() c.jobs:create_and_wait(JOB, { intervall = 1 }) end,
      "bad argument #2 to 'create_and_wait' (unknown option 'intervall')")
    assert.has_error(function() c.jobs:create_and_wait(JOB, { interval = -1 }) end,
      "bad argument #2 to 'create_and_wait' (opts.interval must be a positive number)")
    assert.has_error(function() c.jobs:create_and_wait(JOB, { on_progress = 1 }) end,
      "bad argument #2 to 'create_and_wait' (opts.on_progress must be a function)")
    assert.has_error(function() c.jobs:create_and_wait("x") end,
      "bad argument #1 to 'create_and_wait' (table expected, got string)")
    assert.equal(0, (server_state()))
  end)
end)
