-- SDK tenant webhook config and receiving real signed deliveries from the
-- sandbox, verified with ugen.webhook.verify.
local S = require "support.sandbox"
local ugen = require "ugen"

local function client(slug)
  return ugen.new{ base_url = S.info().base_url, api_key = S.tenant[slug or "default"].api_key,
                   rng = function() return 0 end }
end

local JOB = { product_name = "Hook Mug", product_image_url = "https://example.com/mug.jpg", segment_count = 1 }

describe("sdk webhooks (sandbox)", function()
  setup(function() S.info() end)

  it("set / get / delete the tenant webhook; the secret is never returned", function()
    S.reset("acme")
    local c = client("acme")
    local secret = ugen.webhook.new_secret()
    assert.truthy(c.webhooks:set{ webhook_url = "https://your-server.com/webhooks/ugen", webhook_secret = secret })
    local cfg = assert(c.webhooks:get())
    assert.is_true(cfg.webhook_configured)
    assert.equal("https://your-server.com/webhooks/ugen", cfg.webhook_url)
    assert.is_nil(cfg.webhook_secret)
    for _, v in pairs(cfg) do assert.not_equal(secret, v) end
    assert.truthy(c.webhooks:delete())
    cfg = assert(c.webhooks:get())
    assert.is_false(cfg.webhook_configured)
  end)

  it("set without webhook_url is a validation error, the secret not in it", function()
    local secret = ugen.webhook.new_secret()
    local _, err = client("acme").webhooks:set{ webhook_secret = secret }
    assert.equal("validation", err.kind)
    assert.equal("missing", err.fields[1].type)
    assert.is_nil(tostring(err):find(secret, 1, true))
    assert.equal("<redacted>", err.fields[1].input.webhook_secret)
  end)

  it("a completed job's delivery to the tenant URL verifies with the tenant secret", function()
    S.reset("acme")
    local c = client("acme")
    local rcv = S.receiver()
    local secret = ugen.webhook.new_secret()
    assert(c.webhooks:set{ webhook_url = rcv.url, webhook_secret = secret })
    local job = assert(c.jobs:create(JOB))
    assert(c.jobs:wait(job.job_id, { interval = 0.02, timeout = 30 }))
    assert.is_true(rcv.wait(1, 10))
    rcv.close()
    local req = rcv.requests[1]
    local event, err = ugen.webhook.verify(secret, req.headers, req.body)
    assert.is_table(event, tostring(err))
    assert.equal("job.completed", event.event)
    assert.equal(job.job_id, event.job_id)
    assert.equal("completed", event.status)
    -- a wrong secret, a tampered body: fail closed
    local bad, e2 = ugen.webhook.verify(ugen.webhook.new_secret(), req.headers, req.body)
    assert.is_nil(bad); assert.equal("signature", e2.kind)
    bad, e2 = ugen.webhook.verify(secret, req.headers, (req.body:gsub("completed", "failed")))
    assert.is_nil(bad); assert.equal("SIGNATURE_MISMATCH", e2.code)
    c.webhooks:delete()
  end)

  it("a per-job webhook_url receives job.failed, signed with the tenant secret", function()
    S.reset("acme")
    local c = client("acme")
    local rcv = S.receiver()
    local secret = ugen.webhook.new_secret()
    assert(c.webhooks:set{ webhook_url = "https://elsewhere.example/hook", webhook_secret = secret })
    local job = assert(c.jobs:create{ product_name = "Hook Mug [fail:agents]",
      product_image_url = "https://example.com/mug.jpg", segment_count = 1, webhook_url = rcv.url })
    local _, err = c.jobs:wait(job.job_id, { interval = 0.02, timeout = 30 })
    assert.equal("job_failed", err.kind)
    assert.is_true(rcv.wait(1, 10))
    rcv.close()
    local event, verr = ugen.webhook.verify(secret, rcv.requests[1].headers, rcv.requests[1].body)
    assert.is_table(event, tostring(verr))
    assert.equal("job.failed", event.event)
    assert.is_string(event.error_message)
    c.webhooks:delete()
  end)

  it("an unsigned delivery (no secret configured) fails verification closed", function()
    S.reset("acme")
    local c = client("acme")
    local rcv = S.receiver()
    assert(c.webhooks:set{ webhook_url = rcv.url })
    local job = assert(c.jobs:create(JOB))
    assert(c.jobs:wait(job.job_id, { interval = 0.02, timeout = 30 }))
    assert.is_true(rcv.wait(1, 10))
    rcv.close()
    local event, err = ugen.webhook.verify(ugen.webhook.new_secret(), rcv.requests[1].headers, rcv.requests[1].body)
    assert.is_nil(event)
    assert.equal("signature", err.kind); assert.equal("SIGNATURE_MISSING", err.code)
    c.webhooks:delete()
  end)

  it("a secret rotation: deliveries signed with the old and the new secret verify against { new, old }; "
     .. "a replayed delivery is refused by the replay store", function()
    S.reset("acme")
    local c = client("acme")
    local rcv = S.receiver()
    local old, new = ugen.webhook.new_secret(), ugen.webhook.new_secret()
    assert(c.webhooks:set{ webhook_url = rcv.url, webhook_secret = old })
    local job1 = assert(c.jobs:create(JOB))
    assert(c.jobs:wait(job1.job_id, { interval = 0.02, timeout = 30 }))
    assert.is_true(rcv.wait(1, 10))
    -- rotate: the sender signs with the new secret from now on; the receiver accepts both for a while
    assert(c.webhooks:set{ webhook_url = rcv.url, webhook_secret = new })
    local job2 = assert(c.jobs:create(JOB))
    assert(c.jobs:wait(job2.job_id, { interval = 0.02, timeout = 30 }))
    assert.is_true(rcv.wait(2, 10))
    rcv.close()
    local store = ugen.webhook.memory_store{ max = 100 }
    local r1, r2 = rcv.requests[1], rcv.requests[2]
    local ev1, i1 = ugen.webhook.verify({ new, old }, r1.headers, r1.body, { replay = store })
    assert.is_table(ev1, tostring(i1))
    assert.equal(job1.job_id, ev1.job_id); assert.equal(2, i1)
    local ev2, i2 = ugen.webhook.verify({ new, old }, r2.headers, r2.body, { replay = store })
    assert.is_table(ev2, tostring(i2))
    assert.equal(job2.job_id, ev2.job_id); assert.equal(1, i2)
    -- the first delivery replayed: refused, with either secret list
    local again, err = ugen.webhook.verify({ new, old }, r1.headers, r1.body, { replay = store })
    assert.is_nil(again)
    assert.equal("signature", err.kind); assert.equal("REPLAYED", err.code)
    -- the old secret alone no longer verifies the new delivery
    local bad, e2 = ugen.webhook.verify(old, r2.headers, r2.body)
    assert.is_nil(bad); assert.equal("SIGNATURE_MISMATCH", e2.code)
    c.webhooks:delete()
  end)
end)
