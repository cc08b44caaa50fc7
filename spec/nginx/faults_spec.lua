-- Same pipeline, other transport: every fault of the sandbox (X-Sandbox-Fault)
-- gives the same outcome (result or err kind/status/attempts/retryable) with
-- the SDK inside nginx on cosockets as with libcurl in this process.
local S = require "support.sandbox"
local N = require "support.nginx"
local ugen = require "ugen"
local crypto = require "ugen.crypto"
local sched = require("ugen").scheduler

local EST = { segment_count = 3, model_id = "veo3_fast", variant = "i2v", music_enabled = true, voice_enabled = true }

-- one SDK call with libcurl here -> outcome
local function via_curl(sc, fault)
  local copts = { base_url = sc.base_url or S.info().base_url, api_key = S.tenant[sc.tenant or "default"].api_key,
                  rng = function() return 0 end, timeout = 10 }
  for k, v in pairs(sc.client or {}) do copts[k] = v end
  local c = ugen.new(copts)
  local opts = {}
  for k, v in pairs(sc.opts or {}) do opts[k] = v end
  if fault then opts.headers = { ["X-Sandbox-Fault"] = fault } end
  local t0 = sched.now()
  local r, err
  if sc.call == "credits.balance" then r, err = c.credits:balance(opts)
  elseif sc.call == "credits.estimate" then r, err = c.credits:estimate(sc.params, opts)
  elseif sc.call == "jobs.create" then r, err = c.jobs:create(sc.params, opts)
  end
  if r then err = nil end
  return { ok = r ~= nil, result = r, err = err, elapsed = sched.now() - t0 }
end

-- the same call inside nginx -> outcome
local function via_ngx(sc, fault)
  local opts = {}
  for k, v in pairs(sc.opts or {}) do opts[k] = v end
  if fault then opts.headers = { ["X-Sandbox-Fault"] = fault } end
  local client = { timeout = 10 }
  for k, v in pairs(sc.client or {}) do client[k] = v end
  return N.run{ call = sc.call, base_url = sc.base_url or S.info().base_url,
                api_key = S.tenant[sc.tenant or "default"].api_key, client = client, params = sc.params, opts = opts }
end

local function fault_for(sc)
  if not sc.fault then return nil end
  if sc.count then return sc.fault .. ";count=" .. sc.count .. ";key=" .. crypto.uuid4() end
  return sc.fault
end

local function outcome(o)
  local e = o.err or {}
  return { ok = o.ok, kind = e.kind, status = e.status, attempts = e.attempts, retryable = e.retryable,
           retry_after = e.retry_after, api_code = e.status and e.code or nil }
end

local SCENARIOS = {
  { name = "status=503 twice, GET: succeeds on the third attempt", call = "credits.balance", fault = "status=503",
    count = 2, min_elapsed = 0.7 },
  { name = "status=503 always: final after 3 attempts", call = "credits.balance", fault = "status=503" },
  { name = "status=502 once is retried", call = "credits.balance", fault = "status=502", count = 1 },
  { name = "a gateway HTML 502 without retries", call = "credits.balance", fault = "status=502;html",
    client = { max_retries = 0 } },
  { name = "final 401 is not retried", call = "credits.balance", fault = "status=401", count = 1 },
  { name = "final 404 is not retried", call = "credits.balance", fault = "status=404", count = 1 },
  { name = "429 with Retry-After 1 once: waits, then succeeds", call = "credits.balance",
    fault = "status=429;retry_after=1", count = 1, min_elapsed = 0.95 },
  { name = "429 without retries carries retry_after", call = "credits.balance", fault = "status=429;retry_after=7",
    client = { max_retries = 0 } },
  { name = "reset once, GET: retried", call = "credits.balance", fault = "reset", count = 1 },
  { name = "reset always: final kind network", call = "credits.balance", fault = "reset",
    client = { max_retries = 1 } },
  { name = "reset on a non-idempotent POST after sending: not retried", call = "credits.estimate", params = EST,
    fault = "reset", count = 1 },
  { name = "503 on a non-idempotent POST: not retried", call = "credits.estimate", params = EST,
    fault = "status=503", count = 1 },
  { name = "delay past the per-call timeout: kind timeout", call = "credits.balance", fault = "delay=2",
    client = { max_retries = 0 }, opts = { timeout = 0.5 }, max_elapsed = 1.5 },
  { name = "delay past the timeout once: retried", call = "credits.balance", fault = "delay=2", count = 1,
    opts = { timeout = 0.5 } },
  { name = "truncate: kind network", call = "credits.balance", fault = "truncate", client = { max_retries = 0 } },
  { name = "truncate once: retried", call = "credits.balance", fault = "truncate", count = 1 },
  { name = "badjson: kind decode, not retried", call = "credits.balance", fault = "badjson", count = 1 },
}

describe("faults: ngx transport == libcurl (sandbox)", function()
  setup(function()
    S.info()
    N.app()
  end)

  for _, sc in ipairs(SCENARIOS) do
    it(sc.name, function()
      local c = via_curl(sc, fault_for(sc))
      local n = via_ngx(sc, fault_for(sc))
      assert.same(outcome(c), outcome(n))
      for _, o in ipairs({ c, n }) do
        if sc.min_elapsed then assert.is_true(o.elapsed >= sc.min_elapsed, tostring(o.elapsed)) end
        if sc.max_elapsed then assert.is_true(o.elapsed < sc.max_elapsed, tostring(o.elapsed)) end
        if o.ok then assert.is_number(o.result.available_credits or o.result.credits_estimated or 0) end
      end
    end)
  end

  it("truncate: both say why (curl CURLE_18, ngx PARTIAL_BODY)", function()
    local c = via_curl({ call = "credits.balance", client = { max_retries = 0 } }, "truncate")
    local n = via_ngx({ call = "credits.balance", client = { max_retries = 0 } }, "truncate")
    assert.equal("CURLE_18", c.err.code)
    assert.equal("PARTIAL_BODY", n.err.code)
  end)

  it("POST /jobs under two 503s: retried with one idempotency key, exactly one job (both transports)", function()
    S.reset("acme")
    for _, via in ipairs({ via_curl, via_ngx }) do
      local name = "Retry Mug " .. crypto.uuid4()
      local o = via({ call = "jobs.create", tenant = "acme", params = { product_name = name,
        product_image_url = "https://example.com/m.jpg", segment_count = 1, stop_at_stage = "agents" } },
        "status=503;count=2;key=" .. crypto.uuid4())
      assert.is_true(o.ok, tostring(o.err and o.err.message))
      local c = ugen.new{ base_url = S.info().base_url, api_key = S.tenant.acme.api_key }
      local count = 0
      for j in c.jobs:each{ page_size = 100 } do if j.product_name == name then count = count + 1 end end
      assert.equal(1, count)
    end
  end)

  it("jobs:download inside nginx streams the same video to a file as libcurl does", function()
    S.reset("acme")
    local c = ugen.new{ base_url = S.info().base_url, api_key = S.tenant.acme.api_key }
    local job = assert(c.jobs:create{ product_name = "Download Mug", product_image_url = "https://example.com/m.jpg",
                                      segment_count = 1 })
    assert(c.jobs:wait(job.job_id, { interval = 0.05, timeout = 30 }))
    local d = N.tmpdir()
    local info = assert(c.jobs:download(job.job_id, d .. "/curl.mp4"))
    local j = N.run{ call = "download", base_url = S.info().base_url, api_key = S.tenant.acme.api_key,
                     job_id = job.job_id, path = d .. "/ngx.mp4" }
    assert.is_true(j.ok, j.err and j.err.message)
    assert.equal(info.size, j.result.size)
    assert.equal(N.read_file(d .. "/curl.mp4"), N.read_file(d .. "/ngx.mp4"))
    assert.is_nil(N.read_file(d .. "/ngx.mp4.part"))
  end)

  it("a dead port: kind network, never sent, so even a POST is retried (3 attempts) on both", function()
    local dead = N.free_port()
    local sc = { call = "credits.estimate", params = EST, base_url = "http://127.0.0.1:" .. dead .. "/api/v1" }
    local c, n = via_curl(sc), via_ngx(sc)
    assert.same(outcome(c), outcome(n))
    assert.equal("network", n.err.kind); assert.equal(3, n.err.attempts)
  end)
end)
