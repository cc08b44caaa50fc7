-- The request pipeline (client.lua), observed through a user-function
-- transport: a public SDK feature (ugen.new{transport = function(req) ... end}),
-- so these specs see exactly what would go on the wire and how retries behave.
local ugen = require "ugen"
local sched = require("ugen").scheduler

local KEY = "ugen_sk_test_ABCDEFGHIJKLMNOP"
local JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXNlY3JldA"
local BASE = "http://api.test.invalid/api/v1"

local function json_res(status, body, headers)
  return { status = status, body = body and require("ugen.json").encode(body) or "", headers = headers or {} }
end

-- scripted transport: answers from a list (tables = responses, {err=...} =
-- transport failures, functions = called with req); records every request.
local function scripted(list)
  local calls = {}
  local function fn(req)
    calls[#calls + 1] = req
    local r = list[#calls] or list[#list]
    if type(r) == "function" then return r(req) end
    if r.err then return nil, r.err end
    return r
  end
  return fn, calls
end

local function client(transport, extra)
  local opts = { api_key = KEY, base_url = BASE, transport = transport, rng = function() return 0 end }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return ugen.new(opts)
end

local function interp()
  if type(jit) == "table" then return "luajit" end
  return "lua" .. _VERSION:match("%d+%.%d+")
end

describe("ugen.new", function()
  it("defaults: production base URL, 60 s, 5 s, 2 retries", function()
    local c = ugen.new{ transport = function() end, base_url = nil }
    if not os.getenv("UGEN_BASE_URL") then assert.equal("https://api.u-gen.ai/api/v1", c.base_url) end
    assert.equal(60, c.timeout); assert.equal(5, c.connect_timeout); assert.equal(2, c.max_retries)
  end)

  it("takes UGEN_BASE_URL from the environment, and the option wins over it", function()
    local code = [[package.path="./lua/?.lua;./lua/?/init.lua;"..package.path;]]
      .. [[package.cpath="./build/]] .. (type(jit) == "table" and "luajit" or _VERSION:match("%d+%.%d+"))
      .. [[/?.so;"..package.cpath;local u=require"ugen";]]
      .. [[io.write(u.new{}.base_url," ",u.new{base_url="http://opt.example/v1/"}.base_url)]]
    local p = io.popen("UGEN_BASE_URL=http://env.example:8080/api/v1 " .. interp() .. " -e '" .. code .. "'")
    local out = p:read("*a"); p:close()
    assert.equal("http://env.example:8080/api/v1 http://opt.example/v1", out)
    p = io.popen("env -u UGEN_BASE_URL " .. interp() .. " -e '" .. code .. "'")
    out = p:read("*a"); p:close()
    assert.equal("https://api.u-gen.ai/api/v1 http://opt.example/v1", out)
  end)

  it("validates option types, naming the option", function()
    local bad = {
      { { timeout = "60" }, "option 'timeout' must be a positive number" },
      { { timeout = 0 }, "option 'timeout' must be a positive number" },
      { { connect_timeout = -1 }, "option 'connect_timeout' must be a positive number" },
      { { max_retries = 1.5 }, "option 'max_retries' must be an integer >= 0" },
      { { api_key = 42 }, "option 'api_key' must be a string" },
      { { jwt = "a\nb" }, "option 'jwt' must be a non-empty string without line breaks" },
      { { keep_null = 1 }, "option 'keep_null' must be a boolean" },
      { { headers = "x" }, "option 'headers' must be a table" },
      { { headers = { ["X-A"] = "a\r\nInjected: 1" } }, "header 'X-A' contains a line break" },
      { { apikey = "x" }, "unknown option 'apikey'" },
      { { base_url = "ftp://x" }, "base_url must be an http:// or https:// URL" },
      { { transport = "carrier-pigeon" }, "unknown transport 'carrier-pigeon'" },
      { { transport = 5 }, "option 'transport' must be" },
    }
    for _, b in ipairs(bad) do
      local ok, err = pcall(ugen.new, b[1])
      assert.is_false(ok)
      assert.matches(b[2], err, 1, true)
    end
    assert.has_error(function() ugen.new("x") end, "bad argument #1 to 'new' (table expected, got string)")
  end)

  it("never shows a secret in tostring(client) or in the client table", function()
    local c = ugen.new{ api_key = KEY, jwt = JWT, transport = function() end }
    local s = tostring(c)
    assert.matches("^ugen.client%(", s)
    assert.matches("auth=jwt", s)
    assert.is_nil(s:find(KEY, 1, true)); assert.is_nil(s:find(JWT, 1, true))
    local function scan(t, depth, seen)
      if depth > 4 or seen[t] then return end
      seen[t] = true
      for k, v in pairs(t) do
        assert.not_equal(KEY, v); assert.not_equal(JWT, v)
        if type(v) == "table" then scan(v, depth + 1, seen) end
        if type(k) == "table" then scan(k, depth + 1, seen) end
      end
    end
    scan(c, 0, {})
  end)
end)

describe("the pipeline sends", function()
  it("X-API-Key, Accept, User-Agent and no Content-Type without a body", function()
    local t, calls = scripted({ json_res(200, { credit_balance = 5 }) })
    local c = client(t)
    local r, meta = c.credits:balance()
    assert.equal(5, r.credit_balance)
    assert.equal(200, meta.status)
    local req = calls[1]
    assert.equal("GET", req.method)
    assert.equal(BASE .. "/credits/balance", req.url)
    assert.equal(KEY, req.headers["X-API-Key"])
    assert.is_nil(req.headers.Authorization)
    assert.equal("application/json", req.headers.Accept)
    assert.is_nil(req.headers["Content-Type"])
    assert.is_nil(req.body)
    local lua = type(jit) == "table" and jit.version or _VERSION
    local native = require "ugen.native"
    assert.equal(("lua-ugen/%s (%s; libcurl/%s)"):format(ugen._VERSION, lua, native.curl_version),
      req.headers["User-Agent"])
    assert.equal(60, req.timeout); assert.equal(5, req.connect_timeout)
  end)

  it("only Authorization: Bearer when a JWT is given (JWT wins over the key)", function()
    local t, calls = scripted({ json_res(200, {}) })
    local c = client(t, { jwt = JWT })
    c.credits:balance()
    assert.equal("Bearer " .. JWT, calls[1].headers.Authorization)
    assert.is_nil(calls[1].headers["X-API-Key"])
    c = ugen.new{ jwt = JWT, base_url = BASE, transport = t }
    c.credits:balance()
    assert.is_nil(calls[2].headers["X-API-Key"])
    assert.equal("Bearer " .. JWT, calls[2].headers.Authorization)
  end)

  it("JSON bodies with Content-Type, null and empty arrays", function()
    local t, calls = scripted({ json_res(201, { job_id = "j" }) })
    local c = client(t)
    assert.truthy(c.jobs:create{ product_name = "Mug", product_image_url = "https://x/y.png", segment_count = 1,
      key_selling_points = ugen.array(), persona_id = ugen.null })
    local req = calls[1]
    assert.equal("application/json", req.headers["Content-Type"])
    local body = require("cjson").decode(req.body)
    assert.equal("Mug", body.product_name)
    assert.matches('"key_selling_points":%[%]', req.body)
    assert.matches('"persona_id":null', req.body)
    assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", body.idempotency_key)
  end)

  it("user_agent suffix, default headers and per-call headers and timeouts", function()
    local t, calls = scripted({ json_res(200, {}) })
    local c = client(t, { user_agent = "myapp/1.2", headers = { ["X-Team"] = "blue" }, timeout = 9 })
    c.credits:balance({ headers = { ["X-Sandbox-Fault"] = "count=1" }, timeout = 3, connect_timeout = 1 })
    local req = calls[1]
    assert.matches(" myapp/1%.2$", req.headers["User-Agent"])
    assert.equal("blue", req.headers["X-Team"])
    assert.equal("count=1", req.headers["X-Sandbox-Fault"])
    assert.equal(3, req.timeout); assert.equal(1, req.connect_timeout)
    c.credits:balance()
    assert.equal(9, calls[2].timeout)
  end)

  it("URL-encodes path parameters and builds sorted queries", function()
    local t, calls = scripted({ json_res(200, {}) })
    local c = client(t)
    c.jobs:get("a b/c?d")
    assert.equal(BASE .. "/jobs/a%20b%2Fc%3Fd", calls[1].url)
    c.jobs:list{ page = 2, page_size = 5 }
    assert.equal(BASE .. "/jobs?page=2&page_size=5", calls[2].url)
    c.credits:transactions{ job_id = "x&y=z" }
    assert.equal(BASE .. "/credits/transactions?job_id=x%26y%3Dz", calls[3].url)
    c.music:catalog{ mood = "upbeat", limit = 3 }
    assert.equal(BASE .. "/music/catalog?limit=3&mood=upbeat", calls[4].url)
  end)

  it("client:request: raw escape hatch with path params, query and body", function()
    local t, calls = scripted({ json_res(200, { ok = true }, { "X-Request-Id", "rid-1" }) })
    local c = client(t)
    local r, meta = c:request("get", "/jobs/{job_id}", { job_id = "j 1", verbose = true })
    assert.is_true(r.ok)
    assert.equal("rid-1", meta.request_id)
    assert.equal("GET", calls[1].method)
    assert.equal(BASE .. "/jobs/j%201?verbose=true", calls[1].url)
    c:request("PATCH", "/templates/{id}", { id = "t1", name = "n" })
    assert.equal('{"name":"n"}', calls[2].body)
    c:request("POST", "/jobs", { product_name = "x" })
    assert.matches('"idempotency_key":"%x+%-', calls[3].body)
    c:request("POST", "/things", {}, { idempotency_key = "k-1" })
    assert.equal('{"idempotency_key":"k-1"}', calls[4].body)
  end)

  it("per-call headers replace default ones whatever their case", function()
    local t, calls = scripted({ json_res(200, {}) })
    local c = client(t, { headers = { ["x-team"] = "blue" } })
    c.credits:balance({ headers = { ["X-TEAM"] = "red", ["x-api-key"] = "other-key-123" } })
    local n, key = 0, nil
    for k, v in pairs(calls[1].headers) do
      if k:lower() == "x-team" then n = n + 1; assert.equal("red", v) end
      if k:lower() == "x-api-key" then key = v end
    end
    assert.equal(1, n); assert.equal("other-key-123", key)
    c:request("GET", "/jobs?status=x", { page = 2 })
    assert.equal(BASE .. "/jobs?status=x&page=2", calls[2].url)
  end)

  it("tostring(client) hides credentials in the base URL", function()
    local c = ugen.new{ base_url = "https://user:pa55word@api.example/v1", transport = function() end }
    assert.is_nil(tostring(c):find("pa55word", 1, true))
  end)

  it("decodes null to nil, or keeps it with keep_null", function()
    local t = scripted({ { status = 200, headers = {}, body = '{"a":null,"b":[1]}' } })
    local r = client(t):request("GET", "/x")
    assert.is_nil(r.a)
    r = client(t, { keep_null = true }):request("GET", "/x")
    assert.equal(ugen.null, r.a)
  end)

  it("accepts any 2xx; an empty body is an empty table", function()
    for _, st in ipairs({ 200, 201, 202, 204 }) do
      local t = scripted({ { status = st, headers = {}, body = "" } })
      local r, meta = client(t).webhooks:delete()
      assert.same({}, r)
      assert.equal(st, meta.status)
    end
  end)
end)

describe("the pipeline's errors", function()
  it("maps a non-JSON 200 body to kind decode with the status kept, no retry", function()
    local t, calls = scripted({ { status = 200, headers = {}, body = '{"job_id": "tru' } })
    local r, err = client(t).jobs:get("j")
    assert.is_nil(r)
    assert.equal("decode", err.kind); assert.equal(200, err.status); assert.equal(1, #calls)
  end)

  it("takes request_id from X-Request-Id / X-Request-ID", function()
    local t = scripted({ json_res(404, { error = { code = "NOT_FOUND", message = "no job" } },
                                 { "X-Request-ID", "req-42" }) })
    local _, err = client(t).jobs:get("j")
    assert.equal("not_found", err.kind); assert.equal("req-42", err.request_id)
    assert.equal("NOT_FOUND", err.code)
  end)

  it("never puts the API key, JWT or a webhook secret in an error", function()
    local secret = "whsec_0123456789abcdef0123"
    local t = scripted({ json_res(401, { error = { code = "UNAUTHORIZED", message = "bad key " .. KEY } }),
                         json_res(422, { detail = { { type = "value_error", loc = { "body", "webhook_url" },
                           msg = "bad", input = { webhook_url = "x", webhook_secret = secret } } } }) })
    local c = client(t)
    local _, err = c.credits:balance()
    assert.equal("auth", err.kind)
    assert.is_nil(tostring(err):find(KEY, 1, true))
    assert.is_nil(err.message:find(KEY, 1, true))
    local _, err2 = c.webhooks:set{ webhook_url = "x", webhook_secret = secret }
    assert.equal("validation", err2.kind)
    assert.equal("<redacted>", err2.fields[1].input.webhook_secret)
    assert.is_nil(tostring(err2):find(secret, 1, true))
  end)
end)

describe("retries", function()
  it("retry GET on 503 then succeed, with backoff sleeps 0.25 s and 0.5 s (rng = 0)", function()
    local t, calls = scripted({ json_res(503, {}), { status = 502, headers = {}, body = "<html>bad gw</html>" },
                                json_res(200, { job_id = "j" }) })
    local t0 = sched.now()
    local r = client(t).jobs:get("j")
    local dt = sched.now() - t0
    assert.equal("j", r.job_id)
    assert.equal(3, #calls)
    assert.is_true(dt >= 0.74 and dt < 1.5, tostring(dt))
  end)

  it("gives up after max_retries with the last error and the attempt count", function()
    local t, calls = scripted({ json_res(500, { error = { code = "BOOM", message = "boom" } }) })
    local _, err = client(t, { max_retries = 1 }).jobs:get("j")
    assert.equal(2, #calls); assert.equal("api", err.kind); assert.equal(500, err.status)
    assert.equal(2, err.attempts); assert.is_true(err.retryable)
    t, calls = scripted({ json_res(503, {}) })
    client(t, { max_retries = 0 }).jobs:get("j")
    assert.equal(1, #calls)
    t, calls = scripted({ json_res(503, {}) })
    client(t).jobs:get("j", { max_retries = 0 })
    assert.equal(1, #calls)
  end)

  it("retries network errors and timeouts on GET; never tls", function()
    local t, calls = scripted({ { err = { kind = "network", message = "reset", sent = true } },
                                { err = { kind = "timeout", message = "slow", sent = true } },
                                json_res(200, {}) })
    assert.truthy(client(t).credits:balance())
    assert.equal(3, #calls)
    t, calls = scripted({ { err = { kind = "tls", message = "bad cert", sent = false } } })
    local _, err = client(t).credits:balance()
    assert.equal("tls", err.kind); assert.equal(1, #calls)
  end)

  it("does not retry 4xx other than 408/429", function()
    for _, st in ipairs({ 400, 401, 402, 403, 404, 409, 422 }) do
      local t, calls = scripted({ json_res(st, { error = { code = "X", message = "x" } }) })
      local _, err = client(t).jobs:get("j")
      assert.equal(1, #calls); assert.equal(st, err.status)
    end
    local t, calls = scripted({ json_res(408, {}), json_res(200, {}) })
    assert.truthy(client(t).jobs:get("j")); assert.equal(2, #calls)
  end)

  it("POST /jobs: retries reuse one idempotency key, also after the request was sent", function()
    local t, calls = scripted({ { err = { kind = "network", message = "reset", sent = true } },
                                json_res(503, {}), json_res(201, { job_id = "j1" }) })
    local job, meta = client(t).jobs:create{ product_name = "Mug", product_image_url = "https://x/y.png",
                                             segment_count = 2 }
    assert.equal("j1", job.job_id)
    assert.equal(3, #calls)
    local keys = {}
    for i, req in ipairs(calls) do keys[i] = require("cjson").decode(req.body).idempotency_key end
    assert.equal(keys[1], keys[2]); assert.equal(keys[1], keys[3])
    assert.equal(keys[1], meta.idempotency_key)
  end)

  it("POST /jobs keeps the caller's key (params or opts) and reports it on failure", function()
    local t, calls = scripted({ json_res(402, { error = { code = "INSUFFICIENT_CREDITS", message = "short" } }) })
    local c = client(t)
    local p = { product_name = "Mug", product_image_url = "https://x/y.png", segment_count = 2 }
    local _, err = c.jobs:create(p, { idempotency_key = "my-key-1" })
    assert.equal("insufficient_credits", err.kind)
    assert.equal("my-key-1", err.idempotency_key)
    assert.matches('"idempotency_key":"my%-key%-1"', calls[1].body)
    assert.is_nil(p.idempotency_key)                    -- the caller's table is not modified
    p.idempotency_key = "my-key-2"
    c.jobs:create(p)
    assert.matches('"idempotency_key":"my%-key%-2"', calls[2].body)
    assert.has_error(function() c.jobs:create(p, { idempotency_key = "other" }) end,
      "bad argument #2 to 'create' (opts.idempotency_key differs from params.idempotency_key)")
  end)

  it("other POSTs are retried only when the request was never sent", function()
    local est = { segment_count = 3, model_id = "veo3_fast" }
    local t, calls = scripted({ json_res(503, {}), json_res(200, {}) })
    local _, err = client(t).credits:estimate(est)
    assert.equal(1, #calls); assert.equal(503, err.status)
    t, calls = scripted({ { err = { kind = "network", message = "reset", sent = true } }, json_res(200, {}) })
    _, err = client(t).credits:estimate(est)
    assert.equal(1, #calls); assert.equal("network", err.kind)
    t, calls = scripted({ { err = { kind = "network", message = "refused", sent = false } },
                          json_res(200, { total_credits = 1 }) })
    local r = client(t).credits:estimate(est)
    assert.equal(2, #calls); assert.equal(1, r.total_credits)
    t, calls = scripted({ { err = { kind = "network", message = "?" } }, json_res(200, {}) })   -- unknown: assume sent
    client(t).credits:estimate(est)
    assert.equal(1, #calls)
  end)

  it("PUT and DELETE are idempotent and retried", function()
    local t, calls = scripted({ json_res(503, {}), json_res(200, {}) })
    assert.truthy(client(t).webhooks:set{ webhook_url = "https://h.example/x" })
    assert.equal(2, #calls)
    t, calls = scripted({ { err = { kind = "network", message = "x", sent = true } }, json_res(204) })
    assert.truthy(client(t).webhooks:delete())
    assert.equal(2, #calls)
  end)
end)

describe("Retry-After", function()
  local create = { product_name = "Mug", product_image_url = "https://x/y.png", segment_count = 1 }

  it("is honoured from the header (seconds)", function()
    local t, calls = scripted({ json_res(429, { error = { code = "RATE_LIMITED", message = "slow" } },
                                         { "retry-after", "1" }), json_res(201, { job_id = "j" }) })
    local t0 = sched.now()
    assert.truthy(client(t).jobs:create(create))
    local dt = sched.now() - t0
    assert.equal(2, #calls)
    assert.is_true(dt >= 0.95 and dt < 1.6, tostring(dt))
  end)

  it("is honoured as an HTTP date and from error.details.retry_after", function()
    -- a past date / 0 still waits the backoff (0.25 s with rng = 0), never less (issue 12 item 13)
    local past = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() - 10)
    local t, calls = scripted({ json_res(429, {}, { "Retry-After", past }), json_res(201, { job_id = "j" }) })
    local t0 = sched.now()
    assert.truthy(client(t).jobs:create(create))
    local dt = sched.now() - t0
    assert.equal(2, #calls); assert.is_true(dt >= 0.24 and dt < 0.6, tostring(dt))
    t, calls = scripted({ json_res(429, { error = { code = "R", message = "r", details = { retry_after = 0 } } }),
                          json_res(201, { job_id = "j" }) })
    t0 = sched.now()
    assert.truthy(client(t).jobs:create(create))
    dt = sched.now() - t0
    assert.equal(2, #calls); assert.is_true(dt >= 0.24 and dt < 0.6, tostring(dt))
  end)

  it("the header wins over error.details.retry_after", function()
    local t = scripted({ json_res(429, { error = { code = "R", message = "r", details = { retry_after = 99 } } },
                                  { "Retry-After", "0" }), json_res(201, {}) })
    local c = client(t, { max_retries = 0 })
    local _, err = c.jobs:create(create)
    assert.equal(0, err.retry_after)
  end)

  it("over 60 s: no sleep, no retry, a rate_limit error carrying retry_after", function()
    local t, calls = scripted({ json_res(429, { error = { code = "RATE_LIMITED", message = "daily" } },
                                         { "Retry-After", "3600" }), json_res(201, {}) })
    local t0 = sched.now()
    local job, err = client(t).jobs:create(create)
    assert.is_nil(job)
    -- no 3600 s sleep; the bound scales with UGEN_TIME_FACTOR (valgrind, ASan)
    assert.is_true(sched.now() - t0 < 0.2 * (tonumber(os.getenv("UGEN_TIME_FACTOR")) or 1))
    assert.equal(1, #calls)
    assert.equal("rate_limit", err.kind); assert.equal(3600, err.retry_after); assert.equal(429, err.status)
    assert.matches("retry after 3600s", tostring(err))
  end)

  it("garbage Retry-After falls back to backoff", function()
    local t, calls = scripted({ json_res(503, {}, { "Retry-After", "whenever" }), json_res(200, {}) })
    local t0 = sched.now()
    assert.truthy(client(t).jobs:get("j"))
    local dt = sched.now() - t0
    assert.equal(2, #calls); assert.is_true(dt >= 0.24 and dt < 0.6, tostring(dt))
  end)
end)

describe("arguments", function()
  local c = client(scripted({ json_res(200, {}) }))

  local function raises(fn, pattern)
    local ok, err = pcall(fn)
    assert.is_false(ok)
    assert.matches("client_spec%.lua:%d+: " .. pattern, err)
  end

  it("raise at the call site, naming the argument", function()
    raises(function() c.jobs:get(nil) end, "bad argument #1 to 'get' %(string expected, got nil%)")
    raises(function() c.jobs:create("x") end, "bad argument #1 to 'create' %(table expected, got string%)")
    raises(function() c.jobs:list(5) end, "bad argument #1 to 'list' %(table expected, got number%)")
    raises(function() c.credits:balance({ timeout = "x" }) end,
      "bad argument #1 to 'balance' %(opts.timeout must be a positive number%)")
    raises(function() c.jobs:get("j", { retries = 1 }) end, "bad argument #2 to 'get' %(unknown option 'retries'%)")
    raises(function() c:request("GET", "jobs") end, "bad argument #2 to 'request'")
    raises(function() c:request("GET", "/jobs/{job_id}", {}) end,
      "bad argument #3 to 'request' %(params.job_id is required by the path%)")
    raises(function() c.jobs:create{ product_name = "x", product_image_url = "y", segment_count = 1,
                                     custom_caption_options = { f = print } } end,
      "bad argument #1 to 'create' %(cannot encode as JSON")
    raises(function() c.jobs.get("j") end, "ugen: call jobs:get%(...%) with a colon")
    raises(function() c.templates:create({ name = "t", config = {} }, { idempotency_key = "k" }) end,
      "bad argument #2 to 'create' %(opts.idempotency_key: the API takes an idempotency key only on jobs:create%)")
  end)

  it("missing or invalid API fields: kind validation in the 422 shape, nothing sent", function()
    local t, calls = scripted({ json_res(200, {}) })
    local cc = client(t)
    local job, err = cc.jobs:create{ product_name = "Mug", segment_count = 11 }
    assert.is_nil(job)
    assert.equal(0, #calls)
    assert.equal("validation", err.kind)
    assert.is_nil(err.status)
    assert.is_false(err.retryable)
    local by = {}
    for _, f in ipairs(err.fields) do by[f.loc[2]] = f end
    assert.equal("missing", by.product_image_url.type)
    assert.same({ "body", "product_image_url" }, by.product_image_url.loc)
    assert.equal("Field required", by.product_image_url.msg)
    assert.equal("less_than_equal", by.segment_count.type)
    local _, e2 = cc.jobs:list{ page_size = 500 }
    assert.same({ "query", "page_size" }, e2.fields[1].loc)
    local _, e3 = cc.jobs:get("")
    assert.same({ "path", "job_id" }, e3.fields[1].loc)
    local _, e4 = cc.webhooks:set{}
    assert.equal("missing", e4.fields[1].type)
    assert.equal(0, #calls)
  end)
end)
