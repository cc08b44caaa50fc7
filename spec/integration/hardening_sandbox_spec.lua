-- Issue #12: the sandbox against hostile input.
--   6. webhook URLs with CR/LF, spaces or other bytes that are not an absolute
--      http(s) URL are a 422 at the API boundary (POST /jobs, PUT
--      /tenants/me/webhook, template configs), no delivery carries injected
--      headers, and the delivery request builder refuses unchecked bytes itself.
local S = require "support.sandbox"

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
    webhooks = require "ugen_sandbox.webhooks"
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
