-- Jobs on the sandbox: lifecycle, failure markers, credits (reserve / consume /
-- release, 402), limits (429 + Retry-After), idempotency incl. concurrent
-- duplicate creates, the sandbox clock and cancel.
local S = require "support.sandbox"

local JOB = { product_name = "Mug", product_image_url = "https://example.com/mug.png", segment_count = 1 }

local function job(extra)
  local b = {}
  for k, v in pairs(JOB) do b[k] = v end
  for k, v in pairs(extra or {}) do b[k] = v end
  return b
end

local function create(body, tenant)
  return S.request{ method = "POST", path = "/jobs", json = body, tenant = tenant }
end

local function balance(tenant)
  return S.request{ path = "/credits/balance", tenant = tenant }.json
end

local function ledger(tenant, job_id)
  local r = S.request{ path = "/credits/transactions?page_size=100&job_id=" .. job_id, tenant = tenant }
  local out = {}
  for i = #r.json.items, 1, -1 do out[#out + 1] = r.json.items[i] end -- oldest first
  return out
end

describe("sandbox jobs", function()
  setup(function()
    S.info()
    S.reset(true)
  end)

  it("runs queued -> processing -> completed through every stage, settling credits", function()
    S.reset("acme")
    local before = balance("acme")
    local c = create(job{ video_model = "kling3_std", segment_duration = 5, music_enabled = true }, "acme")
    assert.are.equal(201, c.status)
    local R = c.json.credits_reserved
    -- 5 s x 6 credits/s, 2 keyframes x 8, voice 15, music 15, post 10, QA ceil(0.15 x 46) = 7
    assert.are.equal(30 + 16 + 15 + 15 + 10 + 7, R)
    local mid = balance("acme")
    assert.are.equal(before.available_credits - R, mid.available_credits)
    assert.are.equal(R, mid.credit_reserved)
    local done = S.wait_job(c.json.job_id, "acme")
    assert.is_table(done)
    assert.are.equal("completed", done.status)
    assert.are.equal("complete", done.current_stage)
    assert.are.equal(R - 7, done.credits_consumed)
    assert.are.equal(0, done.credits_reserved)
    assert.is_string(done.completed_at)
    local after = balance("acme")
    assert.are.equal(before.credit_balance - done.credits_consumed, after.credit_balance)
    assert.are.equal(0, after.credit_reserved)
    local l = ledger("acme", c.json.job_id)
    assert.are.same({ "reserve", "release", "consume" }, { l[1].type, l[2].type, l[3].type })
    assert.are.same({ -R, R, -done.credits_consumed }, { l[1].amount, l[2].amount, l[3].amount })
    for i = 1, 3 do assert.are.equal(l[i].balance_before + l[i].amount, l[i].balance_after) end
    assert.are.equal(l[1].balance_after, l[2].balance_before)
    assert.are.equal(after.available_credits, l[3].balance_after)
  end)

  it("walks every stage in order on the sandbox clock (speed 1, clock advanced)", function()
    local sandbox = require "ugen.sandbox"
    local dir = S.tmpdir() .. "/clock"
    local own = assert(sandbox.start{ dir = dir, speed = 1, seed = "clock" })
    finally(function() sandbox.stop{ dir = dir } end)
    local key = own.api_key
    local c = S.request{ method = "POST", url = own.base_url .. "/jobs", api_key = key, json = job() }
    assert.are.equal(201, c.status)
    local url = own.base_url .. "/jobs/" .. c.json.job_id
    -- stage ends (sandbox seconds): 1, 3, 5, 14, 16, 18, 20; probe mid-stage
    local expect = {
      { 0.5, "queued", "prepare" }, { 2, "processing", "agents" }, { 4, "processing", "init" },
      { 9.5, "processing", "generation" }, { 15, "processing", "concat" }, { 17, "processing", "audio" },
      { 19, "processing", "captions" }, { 21, "completed", "complete" },
    }
    local function clock(advance)
      local r = S.request{ method = "POST", url = own.origin .. "/_sandbox/clock", api_key = key,
                           json = { advance = advance } }
      assert.are.equal(200, r.status)
      return r.json.sim_time
    end
    local created = clock(0) -- just after the job's creation time
    local last = -1
    for _, e in ipairs(expect) do
      local need = created + e[1] - clock(0)
      if need > 0 then clock(need) end
      local j = S.request{ url = url, api_key = key }.json
      assert.are.same({ e[2], e[3] }, { j.status, j.current_stage })
      assert.is_true(j.progress_percent > last)
      last = j.progress_percent
    end
    assert.are.equal(100, last)
  end)

  it("fails on purpose with a [fail] marker: documented fields, credits released", function()
    local before = balance()
    local c = create(job{ product_name = "Mug [fail]" })
    assert.are.equal(201, c.status)
    local j = S.wait_job(c.json.job_id)
    assert.are.equal("failed", j.status)
    assert.are.equal("init", j.current_stage)
    assert.are.equal("init", j.failed_stage)
    assert.are.equal("PRODUCT_INTEGRITY", j.failure_category)
    assert.are.equal("Keyframe QA failed: PRODUCT_INTEGRITY", j.error_message)
    assert.are.equal(0, j.credits_consumed)
    assert.are.equal(require("ugen.json").null, j.final_video_url)
    assert.are.equal(before.available_credits, balance().available_credits)
    local l = ledger("default", c.json.job_id)
    assert.are.same({ "reserve", "release" }, { l[1].type, l[2].type })
    -- stage and category can be chosen; an unknown stage is a 422
    c = create(job{ product_name = "[fail:generation:MOTION_ARTIFACT] Mug" })
    j = S.wait_job(c.json.job_id)
    assert.are.equal("generation", j.failed_stage)
    assert.are.equal("Segment QA failed: MOTION_ARTIFACT", j.error_message)
    assert.are.equal(422, create(job{ product_name = "[fail:bogus]" }).status)
  end)

  it("stop_at_stage ends the job early and bills only the finished stages", function()
    local c = create(job{ stop_at_stage = "concat", segment_count = 2 })
    assert.are.equal(201, c.status)
    local j = S.wait_job(c.json.job_id)
    assert.are.equal("completed", j.status)
    assert.are.equal("concat", j.current_stage)
    assert.are.equal("concat", j.stop_at_stage)
    assert.is_string(j.final_video_url)
    assert.is_true(j.credits_consumed > 0 and j.credits_consumed < c.json.credits_reserved)
  end)

  it("lists jobs newest first with a status filter", function()
    S.reset("acme")
    local a = create(job(), "acme").json.job_id
    local b = create(job{ product_name = "[fail:agents]" }, "acme").json.job_id
    local r = S.request{ path = "/jobs", tenant = "acme" }
    assert.are.same({ b, a }, { r.json.items[1].job_id, r.json.items[2].job_id })
    S.wait_job(a, "acme")
    S.wait_job(b, "acme")
    r = S.request{ path = "/jobs?status=failed", tenant = "acme" }
    assert.are.equal(1, r.json.total)
    assert.are.equal(b, r.json.items[1].job_id)
  end)

  it("402 INSUFFICIENT_CREDITS with required/available; nothing reserved", function()
    S.reset("lowcredit")
    local r = create(job(), "lowcredit")
    assert.are.equal(402, r.status)
    assert.are.equal("INSUFFICIENT_CREDITS", r.json.error.code)
    assert.are.equal(50, r.json.error.details.available)
    assert.is_true(r.json.error.details.required > 50)
    local est = S.request{ method = "POST", path = "/credits/estimate", tenant = "lowcredit",
                           json = { model_id = "kling3_std", segment_count = 1 } }.json
    assert.are.equal(est.total_credits, r.json.error.details.required)
    assert.are.same({ credit_balance = 50, credit_reserved = 0, available_credits = 50 }, balance("lowcredit"))
    assert.are.equal(0, S.request{ path = "/jobs", tenant = "lowcredit" }.json.total)
    -- after a top-up the same request succeeds
    local top = S.request{ method = "POST", url = S.info().origin .. "/_sandbox/credits", tenant = "lowcredit",
                           json = { amount = 1000 } }
    assert.are.equal(200, top.status)
    assert.are.equal(201, create(job(), "lowcredit").status)
  end)

  it("429 with Retry-After for the concurrent and the daily limit", function()
    S.reset("limited")
    S.speed(1) -- the first job must still run when the second is created
    finally(function() S.speed() end)
    local first = create(job(), "limited")
    assert.are.equal(201, first.status)
    local r = create(job(), "limited")
    assert.are.equal(429, r.status)
    assert.are.equal("RATE_LIMIT_EXCEEDED", r.json.error.code)
    assert.are.equal("concurrent", r.json.error.details.limit_type)
    assert.matches("^%d+$", r.headers["retry-after"])
    assert.are.equal(tonumber(r.headers["retry-after"]), r.json.error.details.retry_after)
    assert.is_true(r.json.error.details.retry_after >= 1)
    local cancel = S.info().origin .. "/_sandbox/jobs/" .. first.json.job_id .. "/cancel"
    assert.are.equal(200, S.request{ method = "POST", tenant = "limited", url = cancel }.status)
    S.speed()
    for _ = 2, 3 do
      local c = create(job(), "limited")
      assert.are.equal(201, c.status)
      S.wait_job(c.json.job_id, "limited")
    end
    r = create(job(), "limited")
    assert.are.equal(429, r.status)
    assert.are.equal("daily", r.json.error.details.limit_type)
    local ra = tonumber(r.headers["retry-after"])
    -- a day on the sandbox clock is 86400 / speed real seconds
    assert.is_true(ra >= 1 and ra <= math.ceil(86400 / S.SPEED) + 1)
    -- reads are never limited
    assert.are.equal(200, S.request{ path = "/jobs", tenant = "limited" }.status)
    -- a day later (sandbox clock) the limit is free again
    local adv = S.request{ method = "POST", url = S.info().origin .. "/_sandbox/clock", tenant = "limited",
                           json = { advance = 86400 } }
    assert.are.equal(200, adv.status)
    assert.are.equal(201, create(job(), "limited").status)
  end)

  describe("idempotency", function()
    it("same key + same params returns the original job; other params are a 409", function()
      local key = "idem-" .. os.time() .. "-a"
      local a = create(job{ idempotency_key = key })
      assert.are.equal(201, a.status)
      assert.are.equal(key, a.json.idempotency_key)
      local b = create(job{ idempotency_key = key })
      assert.are.equal(200, b.status)
      assert.are.equal("true", b.headers["x-idempotent-replay"])
      assert.are.equal(a.json.job_id, b.json.job_id)
      local c = create(job{ idempotency_key = key, segment_count = 2 })
      assert.are.equal(409, c.status)
      assert.are.equal("IDEMPOTENCY_CONFLICT", c.json.error.code)
      assert.are.equal(a.json.job_id, c.json.error.details.job_id)
      -- keys are per tenant
      assert.are.equal(201, create(job{ idempotency_key = key }, "acme").status)
      -- only one reservation for the key
      local reserves = 0
      for _, e in ipairs(ledger("default", a.json.job_id)) do
        if e.type == "reserve" then reserves = reserves + 1 end
      end
      assert.are.equal(1, reserves)
    end)

    it("concurrent duplicate creates make exactly one job", function()
      S.reset("acme")
      local key = "idem-concurrent-" .. os.time()
      local reqs = {}
      for i = 1, 8 do
        reqs[i] = { method = "POST", path = "/jobs", tenant = "acme", json = job{ idempotency_key = key } }
      end
      local res = S.parallel(reqs)
      local created, replays, ids = 0, 0, {}
      for _, r in ipairs(res) do
        if r.status == 201 then created = created + 1 elseif r.status == 200 then replays = replays + 1 end
        ids[r.json.job_id] = true
      end
      assert.are.equal(1, created)
      assert.are.equal(7, replays)
      local n = 0
      for _ in pairs(ids) do n = n + 1 end
      assert.are.equal(1, n)
      assert.are.equal(1, S.request{ path = "/jobs", tenant = "acme" }.json.total)
      -- without a key, concurrent creates are separate jobs
      for i = 1, 4 do reqs[i] = { method = "POST", path = "/jobs", tenant = "acme", json = job() } end
      for i = 5, 8 do reqs[i] = nil end
      res = S.parallel(reqs)
      for _, r in ipairs(res) do assert.are.equal(201, r.status) end
      assert.are.equal(5, S.request{ path = "/jobs", tenant = "acme" }.json.total)
    end)
  end)

  it("sandbox extras: cancel releases credits; the clock can be advanced", function()
    local running = create(job())
    assert.are.equal(201, running.status)
    local id = running.json.job_id
    local r = S.request{ method = "POST", url = S.info().origin .. "/_sandbox/jobs/" .. id .. "/cancel" }
    assert.are.equal(200, r.status)
    assert.are.equal("cancelled", r.json.status)
    assert.are.equal(0, r.json.credits_reserved)
    local l = ledger("default", id)
    assert.are.same({ "reserve", "release" }, { l[1].type, l[2].type })
    r = S.request{ method = "POST", url = S.info().origin .. "/_sandbox/jobs/" .. id .. "/cancel" }
    assert.are.equal(409, r.status)
    assert.are.equal(404, S.request{ method = "POST", url = S.info().origin .. "/_sandbox/jobs/" .. id .. "/cancel",
                                     tenant = "acme" }.status)
    local c = create(job())
    S.request{ method = "POST", url = S.info().origin .. "/_sandbox/clock", json = { advance = 30 } }
    local j = S.request{ path = "/jobs/" .. c.json.job_id }.json
    assert.are.equal("completed", j.status)
  end)
end)
