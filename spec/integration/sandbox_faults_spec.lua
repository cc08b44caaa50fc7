-- X-Sandbox-Fault: every fault kind, seen by a real HTTP client (curl), and
-- the count/key mechanism a retry test relies on.
local S = require "support.sandbox"
local json = require "ugen.json"

local JOB = { product_name = "Mug", product_image_url = "https://example.com/mug.png", segment_count = 1 }

local function with_key(key)
  local b = { idempotency_key = key }
  for k, v in pairs(JOB) do b[k] = v end
  return b
end

local function job_total()
  return S.request{ path = "/jobs", tenant = "acme" }.json.total
end

local function unique(s) return s .. "-" .. os.time() .. "-" .. math.random(1e6) end

describe("sandbox faults (X-Sandbox-Fault)", function()
  setup(function()
    S.info()
    S.reset(true)
    S.reset("acme")
  end)

  it("status=503: nested error, request not processed", function()
    local before = job_total()
    local r = S.request{ method = "POST", path = "/jobs", tenant = "acme", json = JOB, fault = "status=503" }
    assert.are.equal(503, r.status)
    assert.are.equal("SERVICE_UNAVAILABLE", r.json.error.code)
    assert.is_truthy(r.headers["x-request-id"])
    assert.are.equal(before, job_total())
  end)

  it("status=429;retry_after=1: Retry-After header and error.details.retry_after", function()
    local r = S.request{ path = "/jobs", fault = "status=429;retry_after=1" }
    assert.are.equal(429, r.status)
    assert.are.equal("1", r.headers["retry-after"])
    assert.are.equal(1, r.json.error.details.retry_after)
    assert.are.equal("RATE_LIMIT_EXCEEDED", r.json.error.code)
  end)

  it("status=502;html: a non-JSON gateway page", function()
    local r = S.request{ path = "/jobs", fault = "status=502;html" }
    assert.are.equal(502, r.status)
    assert.matches("^text/html", r.headers["content-type"])
    assert.is_nil(json.decode(r.body))
  end)

  it("reset: connection closed without a response, nothing processed", function()
    local before = job_total()
    local r = S.request{ method = "POST", path = "/jobs", tenant = "acme", json = JOB, fault = "reset" }
    assert.are.equal(52, r.exit) -- curl: empty reply from server
    assert.are.equal(0, r.status)
    assert.are.equal(before, job_total())
  end)

  it("reset_after: processed, then closed; a retry with the same idempotency key gets the job", function()
    local key = unique("reset-after")
    local before = job_total()
    local r = S.request{ method = "POST", path = "/jobs", tenant = "acme", json = with_key(key), fault = "reset_after" }
    assert.are.equal(52, r.exit)
    assert.are.equal(before + 1, job_total())
    local again = S.request{ method = "POST", path = "/jobs", tenant = "acme", json = with_key(key) }
    assert.are.equal(200, again.status)
    assert.are.equal(key, again.json.idempotency_key)
    assert.are.equal(before + 1, job_total())
  end)

  it("delay=S: answers after S seconds (a short client timeout gives up)", function()
    local t0 = require("socket").gettime()
    local r = S.request{ path = "/credits/balance", fault = "delay=0.6" }
    assert.are.equal(200, r.status)
    assert.is_true(require("socket").gettime() - t0 >= 0.6)
    r = S.request{ path = "/credits/balance", fault = "delay=2", timeout = 0.5 }
    assert.are.equal(28, r.exit) -- curl: operation timed out
  end)

  it("truncate: half the body under the full Content-Length, then closed", function()
    local full = S.request{ path = "/models" }
    local r = S.request{ path = "/models", fault = "truncate" }
    assert.are.equal(18, r.exit) -- curl: partial file
    assert.are.equal(200, r.status)
    assert.are.equal(#full.body, tonumber(r.headers["content-length"]))
    assert.are.equal(math.floor(#full.body / 2), #r.body)
    assert.are.equal(full.body:sub(1, #r.body), r.body)
  end)

  it("badjson: normal status and headers, a body that is not JSON", function()
    local r = S.request{ path = "/credits/balance", fault = "badjson" }
    assert.are.equal(200, r.status)
    assert.are.equal("application/json", r.headers["content-type"])
    assert.is_nil(json.decode(r.body))
  end)

  it("count=N;key=K: only the first N attempts fail, then requests succeed", function()
    local key = unique("retry")
    local fault = "status=503;count=2;key=" .. key
    local before = job_total()
    local statuses = {}
    for i = 1, 4 do
      statuses[i] = S.request{ method = "POST", path = "/jobs", tenant = "acme",
                               json = with_key(key), fault = fault }.status
    end
    assert.are.same({ 503, 503, 201, 200 }, statuses)
    assert.are.equal(before + 1, job_total())
    -- another key has its own counter; the header value is the default key
    local other = "status=500;count=1;key=" .. unique("other")
    assert.are.equal(500, S.request{ path = "/jobs", fault = other }.status)
    assert.are.equal(200, S.request{ path = "/jobs", fault = other }.status)
    local nokey = "reset;count=1;delay=0." .. math.random(100000, 999999)
    assert.are.equal(52, S.request{ path = "/jobs", fault = nokey }.exit)
    assert.are.equal(200, S.request{ path = "/jobs", fault = nokey }.status)
  end)

  it("chance=P: about that share of requests get the fault (0 none, 1 all)", function()
    -- the SDK over one kept-alive connection (200 curl processes would take long)
    local c = require("ugen").new{ base_url = S.info().base_url, api_key = S.info().api_key, max_retries = 0,
                                   headers = { ["X-Sandbox-Fault"] = "status=503;chance=0.2" } }
    local hit = 0
    for _ = 1, 200 do
      local b, err = c.credits:balance()
      if b then assert.is_number(b.available_credits) else assert.are.equal(503, err.status); hit = hit + 1 end
    end
    -- binomial(200, 0.2): mean 40, sd 5.7; [15, 70] is beyond 4 sd on either side
    assert.is_true(hit >= 15 and hit <= 70, "hit " .. hit .. " of 200")
    for _ = 1, 5 do
      assert.are.equal(200, S.request{ path = "/credits/balance", fault = "status=503;chance=0" }.status)
      assert.are.equal(503, S.request{ path = "/credits/balance", fault = "status=503;chance=1" }.status)
    end
  end)

  -- the job's webhook deliveries: a receiver that answers 200 to everything
  local function job_with_hook(fault, receiver)
    local b = { webhook_url = receiver.url }
    for k, v in pairs(JOB) do b[k] = v end
    local r = S.request{ method = "POST", path = "/jobs", tenant = "acme", json = b, fault = fault }
    assert.are.equal(201, r.status, r.body)
    return r.json.job_id
  end

  it("webhook=duplicate: the job is created; each event is delivered twice (two delivery ids)", function()
    local rcv = S.receiver()
    finally(rcv.close)
    local id = job_with_hook("webhook=duplicate", rcv)
    assert.is_true(rcv.wait(2, 15))
    rcv.drain(0.5)
    assert.are.equal(2, #rcv.requests)
    local a, b = rcv.requests[1], rcv.requests[2]
    assert.are.equal(a.body, b.body)
    assert.are.equal(id, json.decode(a.body).job_id)
    assert.are_not.equal(a.headers["x-ugen-delivery"], b.headers["x-ugen-delivery"])
    local d = S.eventually(function()
      local list = S.deliveries("acme", id)
      return #list == 2 and list[1].status == "delivered" and list[2].status == "delivered" and list
    end, 5)
    assert.is_table(d)
  end)

  it("webhook=reset: the first attempt is sent then cut (failed), the retry is answered", function()
    local rcv = S.receiver()
    finally(rcv.close)
    local id = job_with_hook("webhook=reset", rcv)
    assert.is_true(rcv.wait(2, 15))
    assert.are.equal(rcv.requests[1].body, rcv.requests[2].body)   -- the receiver got the whole first request
    local d = S.eventually(function()
      local list = S.deliveries("acme", id)
      return list[1] and list[1].status == "delivered" and list[1]
    end, 5)
    assert.is_table(d)
    assert.are.equal(2, #d.attempts)
    assert.matches("reset by the sandbox", d.attempts[1].error, 1, true)
    assert.are.equal(200, d.attempts[2].response_status)
    -- a job created without the fault is delivered once, at the first attempt
    local rcv2 = S.receiver()
    finally(rcv2.close)
    local id2 = job_with_hook(nil, rcv2)
    assert.is_true(rcv2.wait(1, 15))
    rcv2.drain(0.3)
    assert.are.equal(1, #rcv2.requests)
    assert.are.equal(1, #S.eventually(function() return S.deliveries("acme", id2)[1] end, 5).attempts)
  end)

  it("an invalid fault header is a 400, not silently ignored", function()
    for _, f in ipairs({ "status=200", "explode", "count=2", "status=503;count=0", "retry_after=1",
                         "status=503;chance=1.5", "status=503;chance=x", "chance=0.5", "webhook=twice" }) do
      local r = S.request{ path = "/jobs", fault = f }
      assert.are.equal(400, r.status, f)
      assert.are.equal("INVALID_SANDBOX_FAULT", r.json.error.code, f)
    end
  end)
end)
