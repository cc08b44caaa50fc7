-- ugen.ngx.webhook_handler inside nginx: real signed deliveries from the
-- sandbox are accepted (secret rotation says which secret matched); tampered,
-- stale, replayed, malformed and oversized ones are refused with the right
-- status; a body nginx spilled to a temp file still verifies.
local S = require "support.sandbox"
local N = require "support.nginx"
local ugen = require "ugen"
local json = require "ugen.json"
local crypto = require "ugen.crypto"
local socket = require "socket"

local srv

local function events()
  return srv.request{ path = "/events" }.json.events
end

local function event_for(job_id, timeout)
  local deadline = socket.gettime() + (timeout or 15)
  repeat
    for _, e in ipairs(events()) do
      if e.event.job_id == job_id then return e end
    end
    socket.sleep(0.05)
  until socket.gettime() > deadline
end

-- POST a body to a hook path with the given signature headers
local function post(path, body, headers)
  return srv.request{ method = "POST", path = path or "/hooks/ugen", body = body, headers = headers }
end

local function signed(secret, body, ts)
  ts = ts or os.time()
  return ugen.webhook.headers(secret, body, ts)
end

local function synthetic(extra)
  local e = { event = "job.completed", job_id = crypto.uuid4(), status = "completed", credits_consumed = 3,
              timestamp = os.date("!%Y-%m-%dT%H:%M:%SZ") }
  for k, v in pairs(extra or {}) do e[k] = v end
  return assert(json.encode(e)), e
end

describe("ugen.ngx.webhook_handler (nginx)", function()
  local c, secret_new, secret_old
  setup(function()
    srv = N.app()
    S.info()
    S.reset("acme")
    secret_new, secret_old = N.SECRETS[1], N.SECRETS[2]
    c = ugen.new{ base_url = S.info().base_url, api_key = S.tenant.acme.api_key }
  end)
  teardown(function()
    if c then c.webhooks:delete() end
  end)

  local delivered      -- the first real delivery, replayed below

  it("accepts a job.completed delivery signed by the sandbox (secret #1)", function()
    assert(c.webhooks:set{ webhook_url = srv.url("/hooks/ugen"), webhook_secret = secret_new })
    local job = assert(c.jobs:create{ product_name = "Nginx Hook Mug", product_image_url = "https://example.com/m.jpg",
                                      segment_count = 1 })
    assert(c.jobs:wait(job.job_id, { interval = 0.05, timeout = 30 }))
    local e = event_for(job.job_id)
    assert.is_table(e, "no delivery arrived:\n" .. srv.log():sub(-2000))
    assert.equal("job.completed", e.event.event)
    assert.equal(1, e.secret_index)
    assert.is_false(e.in_file)
    assert.equal("ugen:event:job.completed:" .. job.job_id, e.event_key)
    -- the sandbox (the sender) logged our 200 and stopped: one attempt, delivered
    local d = S.eventually(function()
      local list = S.deliveries("acme", job.job_id)
      return list[1] and list[1].status == "delivered" and list[1]
    end, 5)
    assert.is_table(d)
    assert.equal(1, #d.attempts)
    assert.equal(200, d.attempts[1].response_status)
    assert.equal(d.id, e.delivery_id)
    delivered = e
  end)

  it("secret rotation: a delivery signed with the previous secret is accepted as secret #2", function()
    assert(c.webhooks:set{ webhook_url = srv.url("/hooks/ugen"), webhook_secret = secret_old })
    local job = assert(c.jobs:create{ product_name = "Rotated Mug", product_image_url = "https://example.com/m.jpg",
                                      segment_count = 1 })
    assert(c.jobs:wait(job.job_id, { interval = 0.05, timeout = 30 }))
    local e = event_for(job.job_id)
    assert.is_table(e)
    assert.equal(2, e.secret_index)
  end)

  it("an exact replay of a delivery is refused with 409 and not processed again", function()
    assert.is_table(delivered)
    local before = #events()
    local r = post("/hooks/ugen", delivered.body, { ["X-UGen-Timestamp"] = delivered.timestamp,
                                                     ["X-UGen-Signature"] = delivered.signature })
    assert.equal(409, r.status, r.body)
    assert.equal("REPLAYED", r.json.error)
    assert.equal(before, #events())
  end)

  it("the sender's retry of a processed event (new signature) gets 200 duplicate, not processed again", function()
    local before = #events()
    local r = post("/hooks/ugen", delivered.body, signed(secret_new, delivered.body, os.time() + 1))
    assert.equal(200, r.status, r.body)
    assert.is_true(r.json.ok); assert.is_true(r.json.duplicate)
    assert.equal(before, #events())
  end)

  it("a tampered body is 401 SIGNATURE_MISMATCH", function()
    local body = synthetic()
    local h = signed(secret_new, body)
    local r = post("/hooks/ugen", (body:gsub("completed", "failed")), h)
    assert.equal(401, r.status); assert.equal("SIGNATURE_MISMATCH", r.json.error)
    assert.is_false(r.json.ok)
  end)

  it("stale and future timestamps are 401 TIMESTAMP_OUT_OF_TOLERANCE", function()
    for _, off in ipairs({ -1000, 1000 }) do
      local body = synthetic()
      local r = post("/hooks/ugen", body, signed(secret_new, body, os.time() + off))
      assert.equal(401, r.status, r.body); assert.equal("TIMESTAMP_OUT_OF_TOLERANCE", r.json.error)
    end
  end)

  it("a wrong secret or no signature is 401; garbled headers and a signed non-JSON body are 400", function()
    local body = synthetic()
    local r = post("/hooks/ugen", body, signed(ugen.webhook.new_secret(), body))
    assert.equal(401, r.status); assert.equal("SIGNATURE_MISMATCH", r.json.error)
    r = post("/hooks/ugen", body, { ["X-UGen-Timestamp"] = tostring(os.time()) })
    assert.equal(401, r.status); assert.equal("SIGNATURE_MISSING", r.json.error)
    r = post("/hooks/ugen", body, { ["X-UGen-Timestamp"] = "yesterday", ["X-UGen-Signature"] = string.rep("a", 64) })
    assert.equal(400, r.status); assert.equal("TIMESTAMP_INVALID", r.json.error)
    r = post("/hooks/ugen", "not json", signed(secret_new, "not json"))
    assert.equal(400, r.status); assert.equal("BODY_INVALID", r.json.error)
    -- no secret in any answer
    for _, s in ipairs({ secret_new, secret_old }) do assert.is_nil(r.body:find(s, 1, true)) end
  end)

  it("the same verdicts as webhook.verify: a signed JSON array is 400 BODY_INVALID, a signed timestamp of 2^63 "
    .. "or 20 digits is 400 TIMESTAMP_INVALID (not a 500); on_event never runs", function()
    local before, log0 = #events(), #srv.log()
    for _, body in ipairs({ "[1,2]", '[{"event":"job.completed","job_id":"j-arr"}]', "[]" }) do
      local r = post("/hooks/ugen", body, signed(secret_new, body))
      assert.equal(400, r.status, r.body); assert.equal("BODY_INVALID", r.json.error)
      assert.matches("not a JSON object", r.json.message)
    end
    for _, ts in ipairs({ "9223372036854775808", "12345678901234567890" }) do
      local body = synthetic()
      local r = post("/hooks/ugen", body, signed(secret_new, body, ts))
      assert.equal(400, r.status, r.body); assert.equal("TIMESTAMP_INVALID", r.json.error)
    end
    assert.equal(before, #events())
    local log = srv.log():sub(log0 + 1)
    assert.is_nil(log:find("webhook.lua", 1, true), log)   -- verify did not raise inside nginx
  end)

  it("only POST: 405 with Allow", function()
    local r = srv.request{ path = "/hooks/ugen" }
    assert.equal(405, r.status); assert.equal("POST", r.headers.allow)
  end)

  it("a body nginx spilled to a temp file (client_body_buffer_size 1k) still verifies", function()
    local body, e = synthetic{ padding = string.rep("p", 20000) }
    local r = post("/hooks/small", body, signed(secret_new, body))
    assert.equal(200, r.status, r.body)
    local got = event_for(e.job_id, 2)
    assert.is_table(got)
    assert.is_true(got.in_file)
    assert.equal(#body, got.body_len)
    assert.truthy(srv.log():find("buffered to a temporary file", 1, true))
  end)

  it("a body over max_body is 413, from memory or from the temp file", function()
    local body = synthetic{ padding = string.rep("p", 70000) }     -- /hooks/small: max_body 65536
    local r = post("/hooks/small", body, signed(secret_new, body))
    assert.equal(413, r.status); assert.equal("BODY_TOO_LARGE", r.json.error)
  end)

  it("a failing on_event answers 500 and releases the replay keys, so the retry is processed", function()
    local body = synthetic{ fail_handler = true }
    local h = signed(secret_new, body)
    local before = #events()
    local r = post("/hooks/ugen", body, h)
    assert.equal(500, r.status); assert.equal("HANDLER_REFUSED", r.json.error)
    r = post("/hooks/ugen", body, h)              -- not "replayed": the first attempt did not count
    assert.equal(500, r.status)
    assert.equal(before + 2, #events())           -- on_event ran both times
  end)

  it("handler options are checked when it is built", function()
    local uw = require "ugen.webhook"
    assert.is_function(uw.verify)
    local ok, e = pcall(function() return require("ugen.ngx") end)
    -- outside nginx the module loads (it needs ngx only when used), options raise with the argument named
    assert.is_true(ok, tostring(e))
    local h = require("ugen.ngx")
    assert.has_error(function() h.webhook_handler{ on_event = print } end,
      "bad argument #1 to 'webhook_handler' (secret must be a string or a non-empty list of strings, got nil)")
    assert.has_error(function() h.webhook_handler{ secret = "s", on_event = 1 } end,
      "bad argument #1 to 'webhook_handler' (on_event must be a function, got number)")
    assert.has_error(function() h.webhook_handler{ secret = { "a", "" }, on_event = print } end,
      "bad argument #1 to 'webhook_handler' (secret #2 must be a non-empty string)")
    -- the tolerance rule of webhook.verify, checked here: never a raise per request
    for _, tol in ipairs({ math.huge, -math.huge, 0 / 0, -1, "300" }) do
      assert.has_error(function() h.webhook_handler{ secret = "s", on_event = print, tolerance = tol } end,
        "bad argument #1 to 'webhook_handler' (tolerance must be a finite number >= 0 or false)", tostring(tol))
    end
    assert.is_function(h.webhook_handler{ secret = "s", on_event = print, tolerance = false })
    assert.is_function(h.webhook_handler{ secret = "s", on_event = print, tolerance = 0 })
    -- max_body is a byte count: not NaN, not infinite (math.huge would turn the limit off)
    for _, mb in ipairs({ math.huge, 0 / 0, 0, 1.5, "1024" }) do
      assert.has_error(function() h.webhook_handler{ secret = "s", on_event = print, max_body = mb } end,
        "bad argument #1 to 'webhook_handler' (max_body must be a positive integer (bytes))", tostring(mb))
    end
    assert.has_error(function() h.webhook_handler{ secret = "s", on_event = print, bogus = 1 } end,
      "bad argument #1 to 'webhook_handler' (unknown option 'bogus')")
  end)

  it("dedupe options are checked against the real lua_shared_dict when the handler is built", function()
    -- inside nginx: ngx.shared is real. A NaN or infinite dedupe_ttl is refused like 0 and -1
    -- (a NaN TTL would be handed to every shdict:add), and the message names the option.
    local probe = N.start{ http = [[
      lua_shared_dict hooks 1m;
      server {
        listen 127.0.0.1:${PORT1};
        location / { content_by_lua_block {
          local h = require "ugen.ngx"
          local out = {}
          for _, ttl in ipairs({ 0 / 0, math.huge, -math.huge, 0, -1, "60", 60 }) do
            local ok, e = pcall(h.webhook_handler, { secret = "s", on_event = print, dedupe = "hooks",
                                                    dedupe_ttl = ttl })
            out[#out + 1] = tostring(ttl) .. " -> " .. (ok and type(e) or tostring(e):gsub("^.-: bad", "bad"))
          end
          local ok, e = pcall(h.webhook_handler, { secret = "s", on_event = print, dedupe = "nope" })
          out[#out + 1] = tostring(ok) .. " " .. tostring(e):gsub("^.-: bad", "bad")
          ngx.say(table.concat(out, "\n"))
        } }
      } ]] }
    local r = probe.request{ path = "/" }
    probe.stop()
    assert.equal(200, r.status)
    local lines = {}
    for l in r.body:gmatch("[^\n]+") do lines[#lines + 1] = l end
    local refused = "bad argument #1 to 'webhook_handler' (dedupe_ttl must be a positive number)"
    for i = 1, 6 do assert.matches(" -> " .. refused, lines[i], 1, true) end
    assert.equal("60 -> function", lines[7])
    assert.equal("false bad argument #1 to 'webhook_handler' (dedupe: no lua_shared_dict named 'nope' "
      .. "(add `lua_shared_dict nope 1m;` to the http block))", lines[8])
  end)
end)
