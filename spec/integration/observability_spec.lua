-- Observability (issue 16, items 10 and 11) against the real sandbox over real libcurl:
-- the logger's lines (one per attempt, the retry with its reason), the hooks' info tables
-- (client's then the call's), meta.timing (libcurl's timings, reuse over keep-alive),
-- UGEN_LOG's default logger on stderr (a real subprocess), no secret in any line or info
-- table (grepped for), a raising logger/hook not breaking the call, and every Lua
-- snippet of docs/observability.md run as written.
local S = require "support.sandbox"
local util = require "support.util"
local ugen = require "ugen"
local crypto = require "ugen.crypto"

local q, read_file, write_file = util.q, util.read_file, util.write_file

local INTERP = (type(jit) == "table") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
local BUILD = (type(jit) == "table") and "luajit" or _VERSION:match("%d+%.%d+")
-- what `eval "$(make -s env)"` gives a clone: ./lua and the matching C core on the paths
local PATHS = ("package.path = './lua/?.lua;./lua/?/init.lua;' .. package.path; "
  .. "package.cpath = './build/%s/?.so;' .. package.cpath"):format(BUILD)

local function zero() return 0 end

-- every string in v (keys and values, any depth), for grepping
local function texts(v, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) == "table" then
    if seen[v] then return out end
    seen[v] = true
    for k, x in pairs(v) do
      texts(k, out, seen)
      texts(x, out, seen)
    end
  elseif v ~= nil then
    out[#out + 1] = tostring(v)
  end
  return out
end

local function assert_no_secret(what, text, secrets)
  for _, s in ipairs(secrets) do
    assert(#s >= 8, "a secret to grep for must be long enough to be one")
    assert.is_nil(text:find(s, 1, true), what .. " holds a secret: " .. text)
  end
end

local function fault(spec) return spec .. ";key=obs-" .. crypto.uuid4() end

-- run a Lua file in a subprocess with env -> code, stdout, stderr
local function run_lua(file, env)
  local dir = S.tmpdir()
  local parts = {}
  for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. q(v) end
  local cmd = ("env -u UGEN_LOG -u UGEN_JWT %s %s -e %s %s >%s 2>%s; echo $? >%s"):format(table.concat(parts, " "),
    INTERP, q(PATHS), q(file), q(dir .. "/out"), q(dir .. "/err"), q(dir .. "/rc"))
  assert(util.run(cmd))
  return tonumber(read_file(dir .. "/rc")), read_file(dir .. "/out") or "", read_file(dir .. "/err") or ""
end

local function lua_file(src)
  local f = S.tmpdir() .. "/script.lua"
  write_file(f, src)
  return f
end

describe("observability (sandbox, libcurl)", function()
  local info, base, key, path_base
  setup(function()
    info = S.info()
    base, key = info.base_url, S.tenant.default.api_key
    path_base = base:match("^https?://[^/]+(/.*)$")
  end)

  local function env()
    return { UGEN_BASE_URL = base, UGEN_API_KEY = key }
  end

  it("logger: one line per attempt (method, path, status, attempt, duration, request id) and the retry with "
    .. "its reason and wait; no secret in any line or fields table", function()
    local lines, fields = {}, {}
    local c = ugen.new{ base_url = base, api_key = key, rng = zero, log_level = "debug",
      logger = function(level, msg, f)
        lines[#lines + 1] = level .. " " .. msg
        fields[#fields + 1] = f
      end }
    local cookie = "session=obs-cookie-" .. crypto.uuid4()
    local r, meta = c.credits:balance{ headers = { ["X-Sandbox-Fault"] = fault("status=429;retry_after=1;count=1"),
                                                   Cookie = cookie } }
    assert.is_table(r, tostring(meta))
    assert.equal(5, #lines, table.concat(lines, "\n"))
    local p = path_base .. "/credits/balance"
    assert.equal("debug event=request method=GET path=" .. p .. " attempt=1", lines[1])
    assert.truthy(lines[2]:match("^info event=response method=GET path=" .. p:gsub("%p", "%%%0")
      .. " status=429 attempt=1 duration_ms=[%d.]+ error=rate_limit code=RATE_LIMIT_EXCEEDED request_id=%x+ "
      .. "connect_ms=[%d.]+ tls_ms=[%d.]+ ttfb_ms=[%d.]+ total_ms=[%d.]+ reused=%a+$"), lines[2])
    assert.truthy(lines[3]:match("^info event=retry method=GET path=%S+ status=429 attempt=1 retry=1 max_retries=2 "
      .. "wait_s=1 reason=rate_limited error=rate_limit code=RATE_LIMIT_EXCEEDED request_id=%x+$"), lines[3])
    assert.equal("debug event=request method=GET path=" .. p .. " attempt=2", lines[4])
    assert.truthy(lines[5]:match("^info event=response method=GET path=%S+ status=200 attempt=2 duration_ms=[%d.]+ "
      .. "request_id=" .. meta.request_id .. " connect_ms=0 tls_ms=[%d.]+ ttfb_ms=[%d.]+ total_ms=[%d.]+ "
      .. "reused=true$"), lines[5])
    -- the fields table: the same values, numbers as numbers
    assert.equal(200, fields[5].status)
    assert.equal(2, fields[5].attempt)
    assert.is_true(fields[5].duration_ms > 0)
    assert.equal(1, fields[3].wait_s)
    assert.equal("rate_limited", fields[3].reason)
    local all = table.concat(lines, "\n") .. "\n" .. table.concat(texts(fields), "\n")
    assert_no_secret("a log line", all, { key, cookie })
  end)

  it("hooks: on_request / on_response / on_retry from the client, then the call's; info fields; credential "
    .. "headers redacted", function()
    local order, seen = {}, {}
    local function hook(name)
      return function(i)
        order[#order + 1] = name .. ":" .. i.attempt
        seen[#seen + 1] = i
      end
    end
    local c = ugen.new{ base_url = base, api_key = key, rng = zero, on_request = hook("c.req"),
                        on_response = hook("c.resp"), on_retry = hook("c.retry") }
    local r, meta = c.credits:balance{ headers = { ["X-Sandbox-Fault"] = fault("status=503;count=1") },
      on_request = hook("call.req"), on_response = hook("call.resp"), on_retry = hook("call.retry") }
    assert.is_table(r, tostring(meta))
    assert.same({ "c.req:1", "call.req:1", "c.resp:1", "call.resp:1", "c.retry:1", "call.retry:1",
                  "c.req:2", "call.req:2", "c.resp:2", "call.resp:2" }, order)
    local req1, resp1, retry1, resp2 = seen[1], seen[3], seen[5], seen[9]
    assert.equal("GET", req1.method)
    assert.equal(base .. "/credits/balance", req1.url)
    assert.equal(path_base .. "/credits/balance", req1.path)
    assert.equal("<redacted>", req1.headers["X-API-Key"])
    assert.is_true(req1.idempotent)
    assert.equal(503, resp1.status)
    assert.equal("api", resp1.error.kind)
    assert.equal("SERVICE_UNAVAILABLE", resp1.error.code)
    assert.truthy(resp1.request_id)
    assert.is_true(resp1.duration > 0)
    assert.equal(1, retry1.retry)
    assert.equal(2, retry1.max_retries)
    assert.equal("server_error", retry1.reason)
    assert.is_true(retry1.wait > 0)
    assert.equal(503, retry1.status)
    assert.equal(200, resp2.status)
    assert.is_nil(resp2.error)
    assert.equal(meta.request_id, resp2.request_id)
    assert.is_true(resp2.timing.total > 0)
    assert.is_true(resp2.timing.reused)
    -- each event has its own table (the client's and the call's hook share it)
    assert.equal(seen[1], seen[2])
    assert.are_not.equal(seen[1], seen[7])
    assert_no_secret("hook info", table.concat(texts(seen), "\n"), { key })
  end)

  it("no secret reaches a hook or the log: JWT (Authorization), api key, webhook_secret, Cookie", function()
    local secret = ugen.webhook.new_secret()
    local jwt = info.jwt
    local lines, infos, fields = {}, {}, {}
    local function keep(i) infos[#infos + 1] = i end
    local c = ugen.new{ base_url = base, jwt = jwt, log_level = "debug", rng = zero,
      logger = function(level, msg, f) lines[#lines + 1] = level .. " " .. msg; fields[#fields + 1] = f end,
      on_request = keep, on_response = keep, on_retry = keep }
    local cookie = "obs-cookie-" .. crypto.uuid4()
    -- (PUT: retried after the 503; the retry's info is checked too)
    local r, err = c.webhooks:set({ webhook_url = "http://127.0.0.1:9/obs-hook", webhook_secret = secret },
      { headers = { Cookie = cookie, ["X-Sandbox-Fault"] = fault("status=503;count=1") } })
    assert.truthy(r, tostring(err))
    local retried = false
    for _, i in ipairs(infos) do if i.retry == 1 then retried = true end end
    assert.is_true(retried)
    assert(c.webhooks:delete())
    assert.is_true(#lines >= 6)
    assert.equal("<redacted>", infos[1].headers.Authorization)
    assert.equal("<redacted>", infos[1].headers.Cookie)
    local all = table.concat(lines, "\n") .. "\n" .. table.concat(texts(infos), "\n") .. "\n"
      .. table.concat(texts(fields), "\n")
    assert_no_secret("a log line or hook info", all, { jwt, secret, cookie, key })
  end)

  it("a network error: on_response gets the error and no status, the retry says reason network", function()
    local lines, resp, retry = {}, {}, nil
    -- a private scheduler: a new connection (libcurl itself re-sends a GET whose reused connection dies)
    local sched = ugen.scheduler.new{}
    finally(function() sched:close() end)
    local c = ugen.new{ base_url = base, api_key = key, rng = zero, runtime = sched:runtime(),
      logger = function(_, msg) lines[#lines + 1] = msg end,
      on_response = function(i) resp[#resp + 1] = i end, on_retry = function(i) retry = i end }
    assert(c.credits:balance{ headers = { ["X-Sandbox-Fault"] = fault("reset;count=1") } })
    assert.is_nil(resp[1].status)
    assert.equal("network", resp[1].error.kind)
    assert.equal("network", retry.reason)
    assert.equal(200, resp[2].status)
    assert.truthy(lines[1]:match("^event=response method=GET path=%S+ attempt=1 duration_ms=[%d.]+ error=network "
      .. "code=%S+$"), lines[1])
    assert.truthy(lines[2]:match("^event=retry .* reason=network error=network"), lines[2])
  end)

  it("meta.timing: libcurl's timings on a new connection, reused = true on the next request over keep-alive; "
    .. "absent unless asked", function()
    -- a private scheduler: its own engine, so its own connection cache (the first request connects)
    local sched = ugen.scheduler.new{}
    finally(function() sched:close() end)
    local c = ugen.new{ base_url = base, api_key = key, runtime = sched:runtime(), timings = true }
    local _, m1 = assert(c.credits:balance())
    local t1 = m1.timing
    assert.is_false(t1.reused)
    assert.is_true(t1.connect > 0)
    assert.equal(0, t1.appconnect)    -- http://: no TLS
    assert.is_true(t1.starttransfer >= t1.connect)
    assert.is_true(t1.total >= t1.starttransfer and t1.total > 0)
    local _, m2 = assert(c.credits:balance())
    local t2 = m2.timing
    assert.is_true(t2.reused)
    assert.equal(0, t2.connect)
    assert.is_true(t2.starttransfer > 0 and t2.total >= t2.starttransfer)
    -- not asked: not measured
    local plain = ugen.new{ base_url = base, api_key = key, runtime = sched:runtime() }
    local _, m3 = assert(plain.credits:balance())
    assert.is_nil(m3.timing)
    -- asked for one call
    local _, m4 = assert(plain.credits:balance{ timings = true })
    assert.is_true(m4.timing.reused)
    assert.is_true(m4.timing.total > 0)
  end)

  it("a logger or hook that raises does not break the call; each is reported once on stderr, without secrets",
    function()
    local real = io.stderr
    local got = {}
    -- (ugen.observe writes to whatever io.stderr is when it reports)
    local fake = { write = function(_, ...) for _, s in ipairs({ ... }) do got[#got + 1] = s end end }
    io.stderr = fake -- luacheck: ignore 122
    local ok, a, b = pcall(function()
      local c = ugen.new{ base_url = base, api_key = key, rng = zero,
        logger = function() error("logger boom " .. key) end,
        on_response = function() error("hook boom") end }
      local r1 = c.credits:balance()
      local r2 = c.credits:balance{ headers = { ["X-Sandbox-Fault"] = fault("status=503;count=1") } }
      return r1, r2
    end)
    io.stderr = real -- luacheck: ignore 122
    assert.is_true(ok, tostring(a))
    assert.is_table(a)
    assert.is_table(b)
    local text = table.concat(got)
    local _, nlog = text:gsub("ugen: logger raised %(ignored; reported once%): [^\n]*logger boom <redacted>\n", "")
    local _, nhook = text:gsub("ugen: on_response raised %(ignored; reported once%): [^\n]*hook boom\n", "")
    assert.equal(1, nlog, text)
    assert.equal(1, nhook, text)
    assert_no_secret("stderr", text, { key })
  end)

  it("UGEN_LOG=info / debug: the default logger writes one line per event on stderr; UGEN_LOG=warn is an error "
    .. "at ugen.new", function()
    local f = lua_file(([[
      local ugen = require "ugen"
      local c = ugen.new{ rng = function() return 0 end }
      assert(c.credits:balance{ headers = { ["X-Sandbox-Fault"] = %q } })
      print("ok")
    ]]):format(fault("status=503;count=1")))
    local e = env()
    e.UGEN_LOG = "info"
    local code, out, err = run_lua(f, e)
    assert.equal(0, code, err)
    assert.equal("ok\n", out)
    local lines = {}
    for l in err:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(3, #lines, err)
    local p = (path_base .. "/credits/balance"):gsub("%p", "%%%0")
    assert.truthy(lines[1]:match("^ugen level=info event=response method=GET path=" .. p .. " status=503 attempt=1 "
      .. "duration_ms=[%d.]+ error=api code=SERVICE_UNAVAILABLE request_id=%x+$"), lines[1])
    assert.truthy(lines[2]:match("^ugen level=info event=retry method=GET path=" .. p .. " status=503 attempt=1 "
      .. "retry=1 max_retries=2 wait_s=0%.250 reason=server_error error=api code=SERVICE_UNAVAILABLE "
      .. "request_id=%x+$"), lines[2])
    assert.truthy(lines[3]:match("^ugen level=info event=response method=GET path=" .. p .. " status=200 attempt=2 "
      .. "duration_ms=[%d.]+ request_id=%x+$"), lines[3])
    assert_no_secret("stderr", err, { key })

    e.UGEN_LOG = "debug"
    local f2 = lua_file([[
      local ugen = require "ugen"
      assert(ugen.new{}.credits:balance())
    ]])
    code, out, err = run_lua(f2, e)
    assert.equal(0, code, err)
    assert.equal("", out)
    assert.truthy(err:match("^ugen level=debug event=request method=GET path=" .. p .. " attempt=1\n"
      .. "ugen level=info event=response method=GET path=" .. p .. " status=200 attempt=1 duration_ms=[%d.]+ "
      .. "request_id=%x+ connect_ms=[%d.]+ tls_ms=0 ttfb_ms=[%d.]+ total_ms=[%d.]+ reused=false\n$"), err)
    assert_no_secret("stderr", err, { key })

    e.UGEN_LOG = "warn"
    code, out, err = run_lua(f2, e)
    assert.equal(1, code)
    assert.equal("", out)
    assert.truthy(err:find("ugen.new: environment variable UGEN_LOG must be 'debug' or 'info' (got 'warn')", 1, true),
      err)
  end)

  it("docs/observability.md: every Lua snippet runs as written", function()
    local doc = assert(read_file("docs/observability.md"))
    local p = (path_base .. "/credits/balance"):gsub("%p", "%%%0")
    local expect = {
      { out = "^info event=response method=GET path=" .. p .. " status=200 attempt=1 duration_ms=[%d.]+ "
        .. "request_id=%x+\n$" },
      { out = "^GET " .. p .. " %-> 200 in [%d.]+ ms %(attempt 1, reused connection: %a+%)\n"
        .. "GET " .. p .. " %-> 200 in [%d.]+ ms %(attempt 1, reused connection: true%)\n$" },
      { out = "^sending\tGET\t" .. (base .. "/jobs?page_size=1"):gsub("%p", "%%%0") .. "\tX%-API%-Key: <redacted>\n$" },
      { out = "^connect [%d.]+ ms, TLS 0%.00 ms, first byte [%d.]+ ms, total [%d.]+ ms, reused false\n"
        .. "connect 0%.00 ms, TLS 0%.00 ms, first byte [%d.]+ ms, total [%d.]+ ms, reused true\n$" },
    }
    local n = 0
    for code in doc:gmatch("```lua\n(.-)```") do
      n = n + 1
      local rc, out, err = run_lua(lua_file(code), env())
      assert.equal(0, rc, "snippet " .. n .. ": " .. err)
      assert.equal("", err, "snippet " .. n)
      assert(expect[n], "snippet " .. n .. " has no expectation here: add one")
      assert.truthy(out:match(expect[n].out), "snippet " .. n .. ": " .. out)
    end
    assert.equal(#expect, n)
  end)
end)
