-- SDK retry and error paths against the sandbox's real fault injection
-- (X-Sandbox-Fault) over real libcurl: retried faults succeed after retries,
-- final ones are final, with the right kind.
local S = require "support.sandbox"
local ugen = require "ugen"
local crypto = require "ugen.crypto"
local sched = require("ugen").scheduler

local function client(extra)
  local o = { base_url = S.info().base_url, api_key = S.tenant.default.api_key, rng = function() return 0 end,
              timeout = 10 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return ugen.new(o)
end

-- a fault header for the next n attempts only (unique counter key)
local function fault(spec, n)
  local h = spec
  if n then h = h .. ";count=" .. n .. ";key=" .. crypto.uuid4() end
  return { headers = { ["X-Sandbox-Fault"] = h } }
end

local function timed(fn)
  local t0 = sched.now()
  local a, b = fn()
  return a, b, sched.now() - t0
end

describe("sdk faults (sandbox)", function()
  setup(function() S.info() end)

  it("status=503 twice: GET succeeds on the third attempt after backoff", function()
    local c = client()
    local r, err, dt = timed(function() return c.credits:balance(fault("status=503", 2)) end)
    assert.is_table(r, tostring(err))
    assert.is_number(r.available_credits)
    assert.is_true(dt >= 0.7, tostring(dt))                 -- 0.25 + 0.5 s of backoff
  end)

  it("status=503 always: final after 1 + max_retries attempts, kind api, retryable", function()
    local _, err = client().credits:balance(fault("status=503"))
    assert.equal("api", err.kind); assert.equal(503, err.status)
    assert.is_true(err.retryable); assert.equal(3, err.attempts)
  end)

  for _, st in ipairs({ 500, 502, 504, 408 }) do
    it(("status=%d once is retried"):format(st), function()
      assert.truthy(client().credits:balance(fault("status=" .. st, 1)))
    end)
  end

  it("a gateway HTML 502 is kind api with the status kept, and retried", function()
    local _, err = client({ max_retries = 0 }).credits:balance(fault("status=502;html"))
    assert.equal("api", err.kind); assert.equal(502, err.status); assert.is_true(err.retryable)
    assert.truthy(client().credits:balance(fault("status=502;html", 1)))
  end)

  it("final 4xx faults are not retried", function()
    for st, kind in pairs({ [400] = "validation", [401] = "auth", [403] = "auth", [404] = "not_found",
                            [409] = "conflict", [402] = "insufficient_credits" }) do
      local _, err = client().credits:balance(fault("status=" .. st, 1))
      assert.equal(kind, err.kind, st); assert.equal(st, err.status); assert.equal(1, err.attempts)
    end
  end)

  it("status=429;retry_after=1: waits the Retry-After, then succeeds", function()
    local r, err, dt = timed(function() return client().credits:balance(fault("status=429;retry_after=1", 1)) end)
    assert.is_table(r, tostring(err))
    assert.is_true(dt >= 0.95 and dt < 3, tostring(dt))
  end)

  it("status=429 without retries: kind rate_limit carrying retry_after", function()
    local _, err = client({ max_retries = 0 }).credits:balance(fault("status=429;retry_after=7"))
    assert.equal("rate_limit", err.kind); assert.equal(429, err.status); assert.equal(7, err.retry_after)
    assert.is_true(err.retryable)
  end)

  it("reset once: GET is retried after a network error and succeeds", function()
    assert.truthy(client().credits:balance(fault("reset", 1)))
  end)

  it("reset always: final kind network", function()
    local _, err = client({ max_retries = 1 }).credits:balance(fault("reset"))
    assert.equal("network", err.kind); assert.is_nil(err.status); assert.equal(2, err.attempts)
  end)

  it("reset on a non-idempotent POST after sending: not retried", function()
    local est = { segment_count = 3, model_id = "veo3_fast", variant = "i2v", music_enabled = true,
                  voice_enabled = true }
    local _, err = client().credits:estimate(est, fault("reset", 1))
    assert.equal("network", err.kind); assert.equal(1, err.attempts)
    local _, err2 = client().credits:estimate(est, fault("status=503", 1))
    assert.equal(503, err2.status); assert.equal(1, err2.attempts)
  end)

  it("delay beyond the per-call timeout: kind timeout; retried when the delay goes away", function()
    local _, err, dt = timed(function()
      return client({ max_retries = 0 }).credits:balance({ timeout = 0.5,
        headers = { ["X-Sandbox-Fault"] = "delay=2" } })
    end)
    assert.equal("timeout", err.kind); assert.is_true(err.retryable)
    assert.is_true(dt < 1.5, tostring(dt))
    -- a per-call timeout bounds the whole call (issue 12 item 4): the retry after a
    -- timed-out attempt needs the per-attempt (client) timeout and room left
    local r, err2 = client({ timeout = 0.5 }).credits:balance(fault("delay=2", 1))
    assert.is_table(r, tostring(err2))
  end)

  it("delay within the timeout just takes longer", function()
    local o = fault("delay=0.3", 1)
    local r, _, dt = timed(function() return client().credits:balance(o) end)
    -- nginx's ngx.sleep(0.3) runs on its cached millisecond clock and may end a hair early
    assert.is_table(r); assert.is_true(dt >= 0.28, tostring(dt))
  end)

  it("truncate: a body cut short of its Content-Length is kind network; retried once it goes away", function()
    local _, err = client({ max_retries = 0 }).credits:balance(fault("truncate"))
    assert.equal("network", err.kind); assert.equal("CURLE_18", err.code)
    assert.truthy(client().credits:balance(fault("truncate", 1)))
  end)

  it("badjson: kind decode with the status kept, not retried", function()
    local c = client()
    local _, err = c.credits:balance(fault("badjson", 1))
    assert.equal("decode", err.kind); assert.equal(200, err.status); assert.equal(1, err.attempts)
  end)

  it("POST /jobs under count=2 503s: retried with one key, exactly one job", function()
    S.reset("acme")
    local c = ugen.new{ base_url = S.info().base_url, api_key = S.tenant.acme.api_key, rng = function() return 0 end }
    local name = "Retry Mug " .. crypto.uuid4()
    local job, meta = c.jobs:create({ product_name = name, product_image_url = "https://example.com/m.jpg",
      segment_count = 1, stop_at_stage = "agents" }, fault("status=503", 2))
    assert.is_table(job, tostring(meta))
    local n = 0
    for j in c.jobs:each{ page_size = 100 } do if j.product_name == name then n = n + 1 end end
    assert.equal(1, n)
  end)

  it("a response body over the transport's cap: kind decode TOO_LARGE, not retried", function()
    local curl = require "ugen.transport.curl"
    local saved = curl.MAX_BODY
    curl.MAX_BODY = 16
    local r, err = client().models:list()
    curl.MAX_BODY = saved
    assert.is_nil(r)
    assert.equal("decode", err.kind); assert.equal("TOO_LARGE", err.code); assert.equal(1, err.attempts)
    assert.truthy(client().models:list())
  end)

  it("TLS to a plain-HTTP port: kind tls, not retried", function()
    local c = ugen.new{ base_url = S.info().base_url:gsub("^http:", "https:"), api_key = "k",
                        cainfo = "/etc/ssl/certs/ca-certificates.crt" }
    local r, err = c.credits:balance()
    assert.is_nil(r)
    assert.equal("tls", err.kind); assert.is_false(err.retryable); assert.equal(1, err.attempts)
  end)

  it("a dead port fails fast with kind network (under the connect timeout)", function()
    local port = S.info().port
    -- a port nobody listens on: bind one, close it
    local sock = require("socket").bind("127.0.0.1", 0)
    local _, dead = sock:getsockname()
    sock:close()
    assert.not_equal(port, tonumber(dead))
    local c = ugen.new{ base_url = "http://127.0.0.1:" .. dead .. "/api/v1", api_key = "k", connect_timeout = 5,
                        rng = function() return 0 end }
    local r, err, dt = timed(function() return c.credits:balance({ max_retries = 0 }) end)
    assert.is_nil(r)
    assert.equal("network", err.kind); assert.is_nil(err.status)
    assert.is_true(dt < 1, tostring(dt))
    -- with the default retries (0.25 + 0.5 s backoff) still under the 5 s connect timeout
    r, err, dt = timed(function() return c.credits:balance() end)
    assert.is_nil(r)
    assert.equal("network", err.kind); assert.equal(3, err.attempts)
    assert.is_true(dt < 5, tostring(dt))
    -- never sent: even a non-idempotent POST is retried
    r, err = c.credits:estimate{ segment_count = 1 }
    assert.is_nil(r); assert.equal(3, err.attempts)
  end)
end)
