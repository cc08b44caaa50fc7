-- Issue #12, items 6 and 12: the sandbox against hostile input.
--   6. webhook URLs with CR/LF, spaces or other bytes that are not an absolute
--      http(s) URL are a 422 at the API boundary (POST /jobs, PUT
--      /tenants/me/webhook, template configs), no delivery carries injected
--      headers, and the delivery request builder refuses unchecked bytes itself.
--  12. non-finite, huge and negative numbers in every numeric field of every
--      endpoint (and of the admin endpoints) are 4xx with the documented shapes,
--      never a 500; so are URIs nginx refuses (over 8 KB, %00).
local S = require "support.sandbox"
local endpoints = require "ugen.endpoints"

local JOB = { product_name = "Mug", product_image_url = "https://example.com/mug.png", segment_count = 1 }

local function job(extra)
  local b = {}
  for k, v in pairs(JOB) do b[k] = v end
  for k, v in pairs(extra or {}) do b[k] = v end
  return b
end

-- The documented validation shape: {"detail": [{type, loc, msg, input}, ...]}.
local function assert_detail(r, loc_field, etype)
  assert.are.equal(422, r.status, r.body)
  assert.is_table(r.json, r.body)
  assert.is_table(r.json.detail, r.body)
  local d = r.json.detail[1]
  assert.is_string(d.type)
  assert.is_string(d.msg)
  assert.is_table(d.loc)
  if loc_field then assert.are.same({ "body", loc_field }, d.loc, r.body) end
  if etype then assert.are.equal(etype, d.type, r.body) end
  return d
end

-- The documented error shape: {"error": {"code", "message"}}.
local function assert_error(r, status, code)
  assert.are.equal(status, r.status, r.body)
  assert.truthy((r.headers["content-type"] or ""):find("application/json", 1, true), r.body)
  assert.is_table(r.json, r.body)
  assert.is_table(r.json.error, r.body)
  if code then assert.are.equal(code, r.json.error.code, r.body) end
  assert.is_string(r.json.error.message)
end

-- A 4xx with either documented JSON shape (the sweep below: any 4xx is fine, a 5xx or HTML is not).
local function assert_client_error(r, what)
  assert.is_true(r.status >= 400 and r.status < 500, what .. ": " .. r.status .. " " .. r.body)
  assert.truthy((r.headers["content-type"] or ""):find("application/json", 1, true), what .. ": " .. r.body)
  assert.is_table(r.json, what .. ": " .. r.body)
  assert.is_true(type(r.json.detail) == "table" or type(r.json.error) == "table", what .. ": " .. r.body)
end

describe("sandbox hardening: webhook URLs (#12 item 6)", function()
  local rx
  setup(function()
    S.info()
    S.reset("acme")
  end)
  after_each(function()
    if rx then rx.close(); rx = nil end
    S.request{ method = "DELETE", path = "/tenants/me/webhook", tenant = "acme" }
  end)

  -- URLs that are not one absolute http(s) URL of plain URL characters.
  local function bad_urls(base)
    return {
      base .. " HTTP/1.1\r\nX-Injected: yes\r\nX-Pad: x",   -- request-line / header injection
      base .. "\r\nX-Injected: yes",
      base .. "\nX-Injected: yes",
      base .. "\rX-Injected: yes",
      base .. " x",                                          -- space
      base .. "\tx",
      base .. "\0x",
      base .. "\127",
      base .. "/\195\169t\195\169",                          -- raw non-ASCII (must be %-escaped)
      base .. "%zz",                                         -- broken escape
      base:gsub("^http://", "http://user:pw@"),             -- credentials
      base:gsub("^http://127%.0%.0%.1", "http://127.0.0.1\r\nX-Injected: yes\r\n"),
      "http://127.0.0.1:/hook",                             -- empty port
      "http://127.0.0.1:99999/hook",
      "http:///hook",
      "//127.0.0.1/hook",
      "/hook",
      "ftp://127.0.0.1/hook",
      "",
    }
  end

  it("POST /jobs: a webhook_url with CR/LF, spaces or other non-URL bytes is a 422 on webhook_url", function()
    for _, url in ipairs(bad_urls("http://127.0.0.1:9/hook")) do
      local r = S.request{ method = "POST", path = "/jobs", tenant = "acme", json = job{ webhook_url = url } }
      local d = assert_detail(r, "webhook_url", "value_error")
      assert.are.equal(url, d.input, ("%q"):format(url))
    end
    -- nothing was created or reserved by the refused requests
    local list = S.request{ path = "/jobs", tenant = "acme" }
    assert.are.equal(0, list.json.total, list.body)
    -- good URLs still pass (query, escapes, https to any host, localhost)
    for _, url in ipairs({ "http://127.0.0.1:9/hook?x=1&y=%20", "https://example.com/h/%7Eu?a=b#frag",
                           "http://localhost:9/", "HTTP://127.0.0.1:9" }) do
      local r = S.request{ method = "POST", path = "/jobs", tenant = "acme",
                           json = job{ webhook_url = url, stop_at_stage = "prepare" } }
      assert.are.equal(201, r.status, url .. ": " .. r.body)
    end
  end)

  it("PUT /tenants/me/webhook and template configs: the same URLs are a 422 on webhook_url", function()
    for _, url in ipairs(bad_urls("http://127.0.0.1:9/hook")) do
      local r = S.request{ method = "PUT", path = "/tenants/me/webhook", tenant = "acme",
                           json = { webhook_url = url, webhook_secret = "s3cret" } }
      local d = assert_detail(r, "webhook_url", "value_error")
      assert.are.equal(url, d.input, ("%q"):format(url))
      local t = S.request{ method = "POST", path = "/templates", tenant = "acme",
                           json = { name = "t", config = { webhook_url = url } } }
      assert.are.equal(422, t.status, t.body)
      assert.are.same({ "body", "config", "webhook_url" }, t.json.detail[1].loc, t.body)
    end
    assert.is_false(S.request{ path = "/tenants/me/webhook", tenant = "acme" }.json.webhook_configured)
  end)

  it("no delivery carries injected headers: the hostile job is refused and nothing reaches the receiver", function()
    rx = S.receiver{}
    local url = rx.url .. " HTTP/1.1\r\nX-Injected: yes\r\nX-Pad: x"
    local r = S.request{ method = "POST", path = "/jobs", tenant = "acme", json = job{ webhook_url = url } }
    assert.are.equal(422, r.status, r.body)
    -- the tenant URL path too
    r = S.request{ method = "PUT", path = "/tenants/me/webhook", tenant = "acme",
                   json = { webhook_url = rx.url .. "\r\nX-Injected: yes" } }
    assert.are.equal(422, r.status, r.body)
    -- a clean job with the clean URL is delivered, without any injected header
    local c = S.request{ method = "POST", path = "/jobs", tenant = "acme", json = job{ webhook_url = rx.url } }
    assert.are.equal(201, c.status, c.body)
    assert.is_true(rx.wait(1, 10))
    rx.drain(0.5)
    assert.are.equal(1, #rx.requests)
    for _, req in ipairs(rx.requests) do
      assert.is_nil(req.headers["x-injected"])
      assert.are.equal("/hooks/ugen", req.path)
      assert.are.equal(c.json.job_id, (req.body:match('"job_id":"([^"]+)"')))
    end
  end)
end)

describe("sandbox hardening: the delivery request builder refuses unchecked bytes (#12 item 6)", function()
  -- The builder is plain Lua (no ngx): load the server module from sandbox/lib.
  local webhooks
  setup(function()
    local saved = package.path
    package.path = "./sandbox/lib/?.lua;" .. package.path
    webhooks = require "ugen_sandbox_server.webhooks"
    package.path = saved
  end)

  local H = { { "Content-Type", "application/json" }, { "X-UGen-Event", "job.completed" } }

  it("builds a request for a clean URL", function()
    local req = assert(webhooks.request_bytes("http://127.0.0.1:8080/hooks/x?a=1#frag", H, "{}"))
    assert.are.equal("POST /hooks/x?a=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
      .. "X-UGen-Event: job.completed\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", req)
  end)

  it("refuses a URL or a header that would put CR, LF, spaces or controls on the wire", function()
    for _, url in ipairs({ "http://127.0.0.1:8080/a HTTP/1.1\r\nX-Injected: 1", "http://127.0.0.1:8080/a\nb",
                           "http://127.0.0.1:8080/a b", "http://127.0.0.1\r\nX: y/a", "http://127.0.0.1:8080/\0" }) do
      local req, err = webhooks.request_bytes(url, H, "{}")
      assert.is_nil(req, ("%q"):format(url))
      assert.is_string(err)
    end
    for _, h in ipairs({ { "X-UGen-Event", "job.completed\r\nX-Injected: 1" }, { "X-UGen-Event", "a\nb" },
                         { "X-UGen-Event", "a\0b" }, { "X-Bad Name", "v" }, { "X-Bad:Name", "v" }, { "", "v" } }) do
      local req, err = webhooks.request_bytes("http://127.0.0.1:8080/a", { h }, "{}")
      assert.is_nil(req, ("%q: %q"):format(h[1], h[2]))
      assert.is_string(err)
    end
  end)
end)

describe("sandbox hardening: numbers and URIs never answer 500 (#12 item 12)", function()
  setup(function()
    S.info()
    S.reset("acme")
  end)
  teardown(function() S.reset("acme") end)

  local function raw(method, path, body, tenant)
    return S.request{ method = method, path = path, tenant = tenant or "acme", body = body,
                      headers = { "Content-Type: application/json" } }
  end

  it("/credits/estimate: segment_duration 1e308, negative, fractional or a string is a 422 on the field", function()
    for _, v in ipairs({ 1e308, -1e308, -50, 0, 2, 11, 8.5, "8", true }) do
      local r = S.request{ method = "POST", path = "/credits/estimate", tenant = "acme",
                           json = { segment_duration = v } }
      assert_detail(r, "segment_duration")
    end
    local ok = S.request{ method = "POST", path = "/credits/estimate", tenant = "acme",
                          json = { segment_duration = 5, segment_count = 2 } }
    assert.are.equal(200, ok.status, ok.body)
    assert.are.equal(5, ok.json.segment_duration)
  end)

  it("NaN, Infinity, -Infinity and out-of-range literals in a JSON body are 422 json_invalid", function()
    for _, lit in ipairs({ "NaN", "Infinity", "-Infinity", "nan", "inf", "-inf", "1e999", "-1e999" }) do
      for _, body in ipairs({ '{"segment_count":' .. lit .. '}', '{"segment_duration":' .. lit .. '}',
                              '{"voice_settings":{"speed":[1,' .. lit .. ']}}' }) do
        local r = raw("POST", "/credits/estimate", body)
        local d = assert_detail(r, nil, "json_invalid")
        assert.are.same({ "body", 0 }, d.loc, body)
      end
    end
    -- the same on an open body (passed through and echoed by the playground task)
    local r = raw("POST", "/models/veo3_fast/try", '{"prompt":"x","seed":NaN}')
    assert.are.equal("json_invalid", assert_detail(r).type)
    -- and on the admin endpoints
    r = S.request{ method = "POST", url = S.info().origin .. "/_sandbox/credits", tenant = "acme",
                   body = '{"amount":Infinity}', headers = { "Content-Type: application/json" } }
    assert.are.equal("json_invalid", assert_detail(r).type)
  end)

  -- Every integer/number parameter of every endpoint, with hostile values, next
  -- to otherwise valid required fields (so the value itself is what is judged).
  -- A huge value where the docs set no maximum may be accepted (2xx); anything
  -- refused is a 4xx in one of the documented JSON shapes; nothing is a 5xx.
  it("sweep: every numeric field of every endpoint answers hostile values without a 5xx", function()
    local json = require "ugen.json"
    local HOSTILE_BODY = { "1e308", "-1e308", "-1", "1e999", "NaN", "Infinity", "-Infinity", '"1e999"', "0.5" }
    local HOSTILE_QUERY = { "1e308", "-1", "NaN", "inf", "0x10", "1.5", string.rep("9", 400), "%00" }
    local BASE = { ["jobs.create"] = job{ stop_at_stage = "prepare" } }
    local function check(r, what)
      assert.is_true(r.status >= 200 and r.status < 500, what .. ": " .. r.status .. " " .. r.body)
      if r.status >= 400 then assert_client_error(r, what) else assert.is_table(r.json, what) end
    end
    local n = 0
    for _, ep in ipairs(endpoints.list) do
      local path = ep.path:gsub("{model_id}", "veo3_fast"):gsub("{[%w_]+}", "x")
      local base = BASE[ep.resource .. "." .. ep.name]
      for _, p in ipairs(ep.params) do
        if p.type == "integer" or p.type == "number" then
          local rest = "}"
          if base then
            local others = {}
            for k, v in pairs(base) do if k ~= p.name then others[k] = v end end
            rest = "," .. json.encode(others):sub(2)
          end
          if p["in"] == "body" then
            for _, v in ipairs(HOSTILE_BODY) do
              local r = raw(ep.method, path, '{"' .. p.name .. '":' .. v .. rest)
              check(r, ep.method .. " " .. path .. " " .. p.name .. "=" .. v)
              -- refused unless the value is a finite number inside the parameter's range
              local x = tonumber(v)
              if not (x and x == x and x > -math.huge and x < math.huge and (not p.min or x >= p.min)
                      and (not p.max or x <= p.max) and (p.type == "number" or x == math.floor(x))) then
                assert.are.equal(422, r.status, p.name .. "=" .. v .. ": " .. r.body)
              end
              n = n + 1
            end
          elseif p["in"] == "query" then
            for _, v in ipairs(HOSTILE_QUERY) do
              local r = S.request{ method = ep.method, path = path .. "?" .. p.name .. "=" .. v, tenant = "acme" }
              check(r, ep.method .. " " .. path .. "?" .. p.name .. "=" .. v)
              n = n + 1
            end
          end
        end
      end
    end
    -- the job fields that live inside template configs go through the same rules
    for _, v in ipairs(HOSTILE_BODY) do
      local r = raw("POST", "/templates", '{"name":"t","config":{"segment_duration":' .. v .. '}}')
      check(r, "template config segment_duration=" .. v)
      assert.are.equal(422, r.status, r.body)
      n = n + 1
    end
    assert.is_true(n > 100, tostring(n))
  end)

  it("admin endpoints: non-finite, huge and negative numbers are a 422 on the field", function()
    local origin = S.info().origin
    local cases = {
      { "/_sandbox/clock", "POST", "advance", { 1e308, -1, "5", 1e10 } },
      { "/_sandbox/clock", "POST", "speed", { 1e308, 0, -1, 1e7, "5" } },
      { "/_sandbox/credits", "POST", "amount", { 1e308, -1e308, 0, 1.5, "1e999", "100", 1e13 } },
      { "/_sandbox/limits", "PUT", "concurrent_limit", { 1e308, -1, 1.5, "3" } },
      { "/_sandbox/limits", "PUT", "daily_limit", { 1e308, -1, 1.5, "3" } },
    }
    for _, c in ipairs(cases) do
      for _, v in ipairs(c[4]) do
        local r = S.request{ method = c[2], url = origin .. c[1], tenant = "acme", json = { [c[3]] = v } }
        assert_detail(r, c[3], "value_error")
      end
    end
    -- the clock did not move to absurd values and still answers
    local clock = S.request{ url = origin .. "/_sandbox/clock", tenant = "acme" }
    assert.are.equal(200, clock.status, clock.body)
    assert.are.equal(S.SPEED, clock.json.speed)
    assert.is_true(clock.json.sim_time < 1e9, clock.body)
    -- sane values still work
    assert.are.equal(200, S.request{ method = "POST", url = origin .. "/_sandbox/credits", tenant = "acme",
                                     json = { amount = 5 } }.status)
    assert.are.equal(200, S.request{ method = "PUT", url = origin .. "/_sandbox/limits", tenant = "acme",
                                     json = { concurrent_limit = 10 } }.status)
  end)

  it("a URI over 8 KB is a 414 and a %00 in the path a 400, both in the JSON error shape", function()
    local origin = S.info().origin
    local long = S.request{ url = S.info().base_url .. "/jobs?x=" .. string.rep("a", 9000), tenant = "acme" }
    assert_error(long, 414, "URI_TOO_LONG")
    assert.truthy(long.headers["x-request-id"])
    local long_path = S.request{ url = S.info().base_url .. "/" .. string.rep("b", 9000), tenant = "acme" }
    assert_error(long_path, 414, "URI_TOO_LONG")
    for _, p in ipairs({ "/api/v1/jobs/%00", "/api/v1/%00", "/%00", "/api/v1/models/a%00b" }) do
      local r = S.request{ url = origin .. p, tenant = "acme" }
      assert_error(r, 400, "BAD_REQUEST")
    end
    -- request lines and headers nginx refuses itself, sent raw
    local socket = require "socket"
    for _, c in ipairs({ { "GARBAGE\r\n\r\n", 400 }, { "GET /api/v1/%00 HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                         { "GET /api/v1/jobs HTTP/1.1\r\nHost: a b\r\n\r\n", 400 },
                         { "GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n", 400 },
                         { "GET /api/v1/jobs HTTP/2.0\r\nHost: x\r\n\r\n", 505 },
                         { "GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo\r\n\r\n", 501 } }) do
      local sock = assert(socket.connect("127.0.0.1", S.info().port))
      sock:settimeout(5)
      sock:send(c[1])
      local all = sock:receive("*a") or ""
      sock:close()
      local status = tonumber(all:match("^HTTP/1%.1 (%d+)"))
      assert.are.equal(c[2], status, ("%q"):format(c[1]) .. " -> " .. all)
      assert.truthy(all:lower():find("\r\ncontent-type: application/json\r\n", 1, true), all)
      local body = require("ugen.json").decode(all:match("\r\n\r\n(.*)$") or "")
      assert.is_table(body, all)
      assert.is_string(body.error.code, all)
    end
    -- %00 in a query value is data, not a broken request line: an ordinary 4xx/2xx
    local q = S.request{ url = S.info().base_url .. "/jobs?page=%00", tenant = "acme" }
    assert_detail(q)
    -- the server is still fine
    assert.are.equal(200, S.request{ path = "/credits/balance", tenant = "acme" }.status)
  end)
end)
