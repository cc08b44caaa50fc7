-- Webhook deliveries from the sandbox to a real loopback receiver in this
-- process: payload, signature (checked with the project's HMAC code),
-- per-job override, retries on the documented schedule, abandonment, the
-- delivery log, and DELETE semantics.
local S = require "support.sandbox"
local crypto = require "ugen.crypto"
local json = require "ugen.json"

local JOB = { product_name = "Mug", product_image_url = "https://example.com/mug.png", segment_count = 1 }

local function job(extra)
  local b = {}
  for k, v in pairs(JOB) do b[k] = v end
  for k, v in pairs(extra or {}) do b[k] = v end
  return b
end

local function set_hook(url, secret, tenant)
  local r = S.request{ method = "PUT", path = "/tenants/me/webhook", tenant = tenant,
                       json = { webhook_url = url, webhook_secret = secret } }
  assert.are.equal(200, r.status, r.body)
  return r
end

local function create(body, tenant)
  local r = S.request{ method = "POST", path = "/jobs", json = body, tenant = tenant }
  assert.are.equal(201, r.status, r.body)
  return r.json
end

local function verify(secret, req)
  local ts, sig = req.headers["x-ugen-timestamp"], req.headers["x-ugen-signature"]
  return ts ~= nil and sig ~= nil and crypto.consteq(crypto.hmac_sha256(secret, ts .. "." .. req.body), sig)
end

local function keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

describe("sandbox webhooks", function()
  local rx
  setup(function()
    S.info()
    S.reset(true)
    S.reset("acme") -- acme: no jobs running, so every delivery below belongs to this file's jobs
  end)
  after_each(function()
    if rx then rx.close(); rx = nil end
    S.request{ method = "DELETE", path = "/tenants/me/webhook", tenant = "acme" }
  end)

  it("PUT/GET/DELETE config; the secret is never returned; http:// only for loopback", function()
    local secret = crypto.new_secret()
    local r = set_hook("http://127.0.0.1:9/x", secret, "acme")
    assert.are.same({ "updated_at", "webhook_configured", "webhook_secret_set", "webhook_url" }, keys(r.json))
    assert.is_true(r.json.webhook_secret_set)
    local g = S.request{ path = "/tenants/me/webhook", tenant = "acme" }
    assert.is_nil(g.body:find(secret, 1, true))
    assert.is_true(g.json.webhook_configured)
    -- isolation
    assert.is_false(S.request{ path = "/tenants/me/webhook", tenant = "lowcredit" }.json.webhook_configured)
    local d = S.request{ method = "DELETE", path = "/tenants/me/webhook", tenant = "acme" }
    assert.are.equal(200, d.status)
    assert.is_false(d.json.webhook_configured)
    assert.is_false(S.request{ path = "/tenants/me/webhook", tenant = "acme" }.json.webhook_configured)
    local bad = S.request{ method = "PUT", path = "/tenants/me/webhook", tenant = "acme",
                           json = { webhook_url = "http://example.com/hook" } }
    assert.are.equal(422, bad.status)
    assert.are.same({ "body", "webhook_url" }, bad.json.detail[1].loc)
    bad = S.request{ method = "PUT", path = "/tenants/me/webhook", tenant = "acme",
                     json = { webhook_url = "https://example.com/h", webhook_secret = "" } }
    assert.are.equal(422, bad.status)
    assert.are.same({ "body", "webhook_secret" }, bad.json.detail[1].loc)
    bad = S.request{ method = "PUT", path = "/tenants/me/webhook", tenant = "acme", json = {} }
    assert.are.equal(422, bad.status)
    assert.are.equal("missing", bad.json.detail[1].type)
  end)

  it("job.completed: documented payload, headers, verified signature", function()
    local secret = crypto.new_secret()
    rx = S.receiver()
    set_hook(rx.url, secret, "acme")
    local j = create(job(), "acme")
    assert.is_true(rx.wait(1, 10))
    local req = rx.requests[1]
    assert.are.equal("POST", req.method)
    assert.are.equal("/hooks/ugen", req.path)
    assert.are.equal("application/json", req.headers["content-type"])
    assert.are.equal("job.completed", req.headers["x-ugen-event"])
    assert.is_true(verify(secret, req))
    assert.is_false(verify(crypto.new_secret(), req))
    local ev = json.decode(req.body, true)
    assert.are.same({ "credits_consumed", "error_message", "event", "final_video_url", "job_id", "status",
                      "thumbnail_url", "timestamp" }, keys(ev))
    assert.are.equal(j.job_id, ev.job_id)
    assert.are.equal("completed", ev.status)
    assert.are.equal(json.null, ev.error_message)
    local final = S.request{ path = "/jobs/" .. j.job_id, tenant = "acme" }.json
    assert.are.equal(final.final_video_url, ev.final_video_url)
    assert.are.equal(final.credits_consumed, ev.credits_consumed)
    -- the log records it
    local log = S.deliveries("acme", j.job_id)
    assert.are.equal(1, #log)
    assert.are.equal("delivered", log[1].status)
    assert.is_true(log[1].signed)
    assert.are.equal(200, log[1].attempts[1].response_status)
    assert.are.equal(req.body, log[1].payload)
    -- another tenant's log does not show it
    for _, d in ipairs(S.deliveries("default")) do assert.are_not.equal(j.job_id, d.job_id) end
  end)

  it("job.failed: error_message, no video, credits_consumed 0; unsigned without a secret", function()
    rx = S.receiver()
    set_hook(rx.url, nil, "acme")
    local j = create(job{ product_name = "Mug [fail:audio:TTS_TIMEOUT]" }, "acme")
    assert.is_true(rx.wait(1, 10))
    local req = rx.requests[1]
    assert.is_nil(req.headers["x-ugen-signature"])
    assert.matches("^%d+$", req.headers["x-ugen-timestamp"])
    local ev = json.decode(req.body, true)
    assert.are.equal("job.failed", ev.event)
    assert.are.equal(j.job_id, ev.job_id)
    assert.are.equal("failed", ev.status)
    assert.are.equal("Voice-over generation failed: TTS_TIMEOUT", ev.error_message)
    assert.are.equal(0, ev.credits_consumed)
    assert.are.equal(json.null, ev.final_video_url)
    assert.are.equal(json.null, ev.thumbnail_url)
    assert.is_false(S.deliveries("acme", j.job_id)[1].signed)
  end)

  it("a per-job webhook_url overrides the tenant URL (signed with the tenant secret)", function()
    local secret = crypto.new_secret()
    rx = S.receiver()
    local other = S.receiver{ path = "/per-job" }
    finally(function() other.close() end)
    set_hook(rx.url, secret, "acme")
    local j = create(job{ webhook_url = other.url }, "acme")
    assert.is_true(other.wait(1, 10))
    assert.are.equal("/per-job", other.requests[1].path)
    assert.is_true(verify(secret, other.requests[1]))
    assert.matches(j.job_id, other.requests[1].body, 1, true)
    rx.drain(0.3)
    assert.are.equal(0, #rx.requests)
  end)

  it("retries a failing receiver at +1 s, +4 s, +16 s (scaled by --speed) until 2xx", function()
    local secret = crypto.new_secret()
    rx = S.receiver{ statuses = { 500, 503, 200 } }
    set_hook(rx.url, secret, "acme")
    local j = create(job(), "acme")
    assert.is_true(rx.wait(3, 10))
    rx.drain(0.3)
    assert.are.equal(3, #rx.requests)
    for _, req in ipairs(rx.requests) do
      assert.is_true(verify(secret, req))
      assert.are.equal(rx.requests[1].body, req.body) -- the same body every time
    end
    local gap1 = rx.requests[2].received_at - rx.requests[1].received_at
    local gap2 = rx.requests[3].received_at - rx.requests[2].received_at
    assert.is_true(gap1 >= 1 / S.SPEED * 0.9, "gap1 " .. gap1)
    assert.is_true(gap2 >= 4 / S.SPEED * 0.9, "gap2 " .. gap2)
    local log = S.deliveries("acme", j.job_id)[1]
    assert.are.equal("delivered", log.status)
    assert.are.same({ 500, 503, 200 }, { log.attempts[1].response_status, log.attempts[2].response_status,
                                          log.attempts[3].response_status })
  end)

  it("abandons a delivery after 1 + 3 failed attempts", function()
    rx = S.receiver{ statuses = { 500 } }
    set_hook(rx.url, nil, "acme")
    local j = create(job(), "acme")
    assert.is_true(rx.wait(4, 10))
    rx.drain(32 / S.SPEED + 0.3) -- longer than another retry would take
    assert.are.equal(4, #rx.requests)
    local log = S.eventually(function()
      local l = S.deliveries("acme", j.job_id)[1]
      return l.status == "failed" and l
    end, 3)
    assert.is_table(log)
    assert.are.equal(4, #log.attempts)
  end)

  it("retries a receiver that does not answer in time", function()
    rx = S.receiver{ statuses = { "hang", 200 } }
    set_hook(rx.url, nil, "acme")
    local j = create(job(), "acme")
    assert.is_true(rx.wait(2, 10))
    local log = S.eventually(function()
      local l = S.deliveries("acme", j.job_id)[1]
      return l.status == "delivered" and l
    end, 3)
    assert.is_table(log)
    assert.are.equal(2, #log.attempts)
    assert.matches("timeout", log.attempts[1].error)
  end)

  it("after DELETE nothing new is sent; non-loopback receivers are logged as skipped", function()
    rx = S.receiver()
    set_hook(rx.url, nil, "acme")
    S.request{ method = "DELETE", path = "/tenants/me/webhook", tenant = "acme" }
    local j = create(job(), "acme")
    S.wait_job(j.job_id, "acme")
    rx.drain(0.3)
    assert.are.equal(0, #rx.requests)
    assert.are.equal(0, #S.deliveries("acme", j.job_id))
    set_hook("https://your-server.com/webhooks/ugen", crypto.new_secret(), "acme")
    j = create(job(), "acme")
    S.wait_job(j.job_id, "acme")
    local log = S.deliveries("acme", j.job_id)
    assert.are.equal(1, #log)
    assert.are.equal("skipped", log[1].status)
    assert.are.equal("https://your-server.com/webhooks/ugen", log[1].url)
  end)
end)
