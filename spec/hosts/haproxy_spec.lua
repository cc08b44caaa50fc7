-- The SDK inside HAProxy 2.6 (Debian's haproxy, Lua 5.3): the real haproxy
-- binary, started here with this tree's lua/ and build/5.3/ on its Lua paths,
-- against the sandbox at --speed 5 (a job takes ~4 s).
--
-- While 10 of the docs' main jobs (create, wait, final_video_url) run inside
-- HAProxy -- 3 as tasks registered by a service request, 3 as service requests
-- that wait inline, 4 in one service request through jobs:wait_all (spawned
-- tasks and join_any) -- this process polls a static path (`http-request
-- return`) and a trivial Lua service every 10 ms over loopback (luasocket):
-- no answer may take over 100 ms. Five setups: default tuning (nbthread 1,
-- lua-load), `tune.lua.forced-yield 200`, forced-yield 1, nbthread 2 with
-- lua-load, and nbthread 2 with lua-load-per-thread (and forced-yield 200). Also: the
-- transport's rules and spawn/join_any/cancel checked inside HAProxy, and
-- https through httpclient against a TLS sandbox. A blocking runtime fails
-- it: UGEN_HAPROXY_SPEC_RUNTIME=curl makes the app pass runtime = "curl" (the
-- whole proxy then stalls for seconds: "static path answered in 2010 ms").
local S = require "support.sandbox"
local tools = require "support.tools"
local socket = require "socket"

local q, write_file, read_file = S.q, S.write_file, S.read_file
local ROOT = (function()
  local p = io.popen("pwd")
  local d = p:read("*l")
  p:close()
  return d
end)()

-- the app HAProxy loads: what docs/hosts.md shows, plus spec-only endpoints
local APP = [=[
local ugen = require "ugen"

local BASE, KEY = os.getenv("UGEN_BASE_URL"), os.getenv("UGEN_API_KEY")
local RESULTS, RUNTIME = os.getenv("UGEN_RESULTS"), os.getenv("UGEN_HAPROXY_SPEC_RUNTIME")
local JOB = {
  product_name = "Premium Wireless Headphones", product_image_url = "https://example.com/headphones.jpg",
  persona_id = "09d3a33a-3eb0-480a-80df-0c64dbf7c98f", video_model = "veo3_fast", segment_count = 3,
  interaction_mode = "holdable", caption_style = "tiktok_karaoke", music_enabled = true,
}

local function new_client()
  return ugen.new{ base_url = BASE, api_key = KEY, runtime = RUNTIME ~= "" and RUNTIME or nil }
end
local client = new_client()   -- one per Lua state (per thread with lua-load-per-thread)
-- while the file loads HAProxy cannot send: a plain call raises, saying where it can run
local load_ok, load_err = pcall(function() return client.jobs:list() end)

-- the docs' main job, plain calls: create, wait, final_video_url
local function main_job()
  local job, err = client.jobs:create(JOB)
  if not job then return nil, err end
  local done, werr = client.jobs:wait(job.job_id, { interval = 0.5, timeout = 120 })
  if not done then return nil, werr end
  return done.final_video_url, job.job_id
end

local function reply(applet, status, body)
  applet:set_status(status)
  applet:add_header("content-type", "text/plain")
  applet:add_header("content-length", tostring(#body))
  applet:start_response()
  applet:send(body)
end

local function record(line)
  local f = assert(io.open(RESULTS, "a"))
  f:write(line, "\n")
  f:close()
end

-- N jobs as HAProxy tasks; each appends "task <url>" (or "task ERR ...") to RESULTS
core.register_service("ugen_start", "http", function(applet)
  local n = tonumber(applet.qs:match("n=(%d+)") or "1")
  for _ = 1, n do
    core.register_task(function()
      local url, err = main_job()
      record(url and ("task " .. url) or ("task ERR " .. tostring(err)))
    end)
  end
  reply(applet, 200, "started " .. n .. "\n")
end)

-- one job inside this request: "<url> <job_id>"
core.register_service("ugen_job", "http", function(applet)
  local url, id = main_job()
  if not url then return reply(applet, 500, "ERR " .. tostring(id) .. "\n") end
  reply(applet, 200, url .. " " .. id .. "\n")
end)

-- n jobs created here, waited for together (jobs:wait_all: spawned tasks, join_any)
core.register_service("ugen_batch", "http", function(applet)
  local n = tonumber(applet.qs:match("n=(%d+)") or "1")
  local ids = {}
  for i = 1, n do
    local job, err = client.jobs:create(JOB)
    if not job then return reply(applet, 500, "ERR " .. tostring(err) .. "\n") end
    ids[i] = job.job_id
  end
  local jobs, errs = client.jobs:wait_all(ids, { interval = 0.5, timeout = 120 })
  local out = {}
  for i = 1, n do
    out[i] = jobs[i] and jobs[i].final_video_url or ("ERR " .. tostring(errs and errs[i]))
  end
  reply(applet, 200, table.concat(out, "\n") .. "\n")
end)

-- a download to a file and a multipart upload (core.tcp), from a service
core.register_service("ugen_files", "http", function(applet)
  local url = applet.qs:match("url=([^&]+)")
  local path = os.getenv("UGEN_OUT") .. "/video-" .. core.thread .. ".mp4"
  local info, err = client.jobs:download({ job_id = "x", final_video_url = url }, path)
  if not info then return reply(applet, 500, "ERR download " .. tostring(err) .. "\n") end
  local png = "\137PNG\r\n\26\n\0\0\0\rIHDR\0\0\0\1\0\0\0\1\8\6\0\0\0\31\21\196\137\0\0\0\rIDATx\156c\248\15" ..
    "\4\0\9\251\3\253\227U\242\156\0\0\0\0IEND\174B`\130"
  local up, uerr = client.uploads:product_image{ file = { data = png, filename = "p.png" } }
  if not up then return reply(applet, 500, "ERR upload " .. tostring(uerr) .. "\n") end
  reply(applet, 200, path .. " " .. info.size .. " " .. up.url .. "\n")
end)

-- an action: a plain call from http-request, its answer in a variable
core.register_action("ugen_status", { "http-req" }, function(txn)
  local id = txn.f:url_param("id")
  local job, err = client.jobs:get(id)
  txn:set_var("txn.ugen_status", job and job.status or ("ERR " .. tostring(err)))
end)

-- the transport's and the runtime's rules, checked where they run: "name value" lines
core.register_service("ugen_rules", "http", function(applet)
  local t = require "ugen.transport.haproxy"
  local rt = client.runtime or require("ugen.runtime.haproxy").get()
  local out = {}
  local function put(name, v) out[#out + 1] = name .. " " .. tostring(v) end
  local function err_of(res, err) return res and ("status " .. res.status) or (err.kind .. " " .. err.code .. " " ..
    tostring(err.sent)) end
  local key = { ["X-API-Key"] = KEY }
  -- httpclient: HAProxy's own 503 for a refused connection is an error, nothing sent
  put("refused", err_of(t.request{ method = "POST", url = "http://127.0.0.1:1/x", body = "{}", headers = {} }))
  -- a name HAProxy's resolvers do not resolve (they read no /etc/hosts): HAProxy's bare 503
  put("unresolved", err_of(t.request{ method = "GET", url = "http://localhost:1/x", headers = {}, timeout = 20 }))
  -- a body cut short under its Content-Length
  put("truncated", err_of(t.request{ method = "GET", url = BASE .. "/jobs", headers = { ["X-API-Key"] = KEY,
    ["X-Sandbox-Fault"] = "truncate" } }))
  -- the request's deadline holds through httpclient (the sandbox answers after 3 s)
  local t0 = client.runtime.now()
  put("deadline", err_of(t.request{ method = "GET", url = BASE .. "/jobs", timeout = 0.5, headers = {
    ["X-API-Key"] = KEY, ["X-Sandbox-Fault"] = "delay=3" } }))
  put("deadline_s", client.runtime.now() - t0)
  -- a server's own 503 stays an answer
  put("server503", err_of(t.request{ method = "GET", url = BASE .. "/jobs", headers = { ["X-API-Key"] = KEY,
    ["X-Sandbox-Fault"] = "status=503" } }))
  -- core.tcp for a method httpclient lacks (http, IPv4)
  put("patch", err_of(t.request{ method = "PATCH", url = BASE .. "/jobs", body = "{}", headers = key }))
  -- refused, never sent unverified or by name
  put("patch_https", err_of(t.request{ method = "PATCH", url = "https://127.0.0.1:1/x", headers = {} }))
  put("patch_name", err_of(t.request{ method = "PATCH", url = "http://localhost:1/x", headers = {} }))
  put("cainfo", err_of(t.request{ method = "GET", url = "https://127.0.0.1:1/x", headers = {}, cainfo = "/x.pem" }))
  -- spawn / join_any / cancel
  local ran = false
  local h1 = rt.spawn(function() rt.sleep(0.2); ran = true end)
  local h2 = rt.spawn(function() error("boom", 0) end)
  local h3 = rt.spawn(function() rt.sleep(0.05); return 7 end)
  rt.cancel(h1)
  local first, ok, v = rt.join_any({ h2, h3 })
  put("join1", (first == h2 and "h2" or "h3") .. " " .. tostring(ok) .. " " .. tostring(v))
  first, ok, v = rt.join_any({ h2, h3 })
  put("join2", (first == h2 and "h2" or "h3") .. " " .. tostring(ok) .. " " .. tostring(v))
  local h4 = rt.spawn(function() rt.sleep(1) end)
  put("join_timeout", rt.join_any({ h4 }, 0.05) == nil)
  rt.sleep(0.4)
  put("cancelled_ran", ran)
  put("runtime", rt.name)
  -- resolve inside HAProxy: a user transport keeps the haproxy runtime; a built-in name is obeyed
  put("with_function", tostring(ugen.new{ base_url = BASE, api_key = KEY, transport = function() end })
    :match("transport=(%w+), runtime=(%w+)") .. "/" .. ugen.new{ base_url = BASE, api_key = KEY,
    transport = function() end }.runtime.name)
  put("with_curl", ugen.new{ base_url = BASE, api_key = KEY, transport = "curl" }.runtime.name)
  put("at_load", (not load_ok and tostring(load_err):find("only in a task, a service or an action", 1, true))
    and "raised" or tostring(load_err))
  reply(applet, 200, table.concat(out, "\n") .. "\n")
end)

-- the trivial Lua service the spec polls
core.register_service("ping", "http", function(applet) reply(applet, 200, "pong\n") end)
]=]

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local CFG = [[
global
  ${NBTHREAD}
  ${TUNE}
  ${GLOBAL}
  ${LOAD} ${DIR}/app.lua
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 120s
frontend main
  bind 127.0.0.1:${PORT}
  http-request use-service lua.ping if { path /ping }
  http-request use-service lua.ugen_start if { path /start }
  http-request use-service lua.ugen_job if { path /job }
  http-request use-service lua.ugen_batch if { path /batch }
  http-request use-service lua.ugen_files if { path /files }
  http-request use-service lua.ugen_rules if { path /rules }
  http-request lua.ugen_status if { path /status }
  http-request return status 200 content-type text/plain lf-string "%[var(txn.ugen_status)]\n" if { path /status }
  http-request return status 200 content-type text/plain string "static\n"
]]

local running = {}

local function stop(h)
  if h.pid then
    os.execute("kill " .. h.pid .. " 2>/dev/null")
    for _ = 1, 50 do
      if not os.execute("kill -0 " .. h.pid .. " 2>/dev/null") then break end
      socket.sleep(0.1)
    end
    os.execute("kill -9 " .. h.pid .. " 2>/dev/null")
    running[h.pid] = nil
    h.pid = nil
  end
end

-- start haproxy -db -f <dir>/haproxy.cfg; -> handle { pid, port, dir, log() }
local function start(o)
  local haproxy = tools.need("haproxy")
  local info = S.info()
  local dir = S.tmpdir()
  local port = free_port()
  local vars = {
    NBTHREAD = "nbthread " .. (o.nbthread or 1), TUNE = o.tune or "", GLOBAL = o.global or "", DIR = dir,
    PORT = tostring(port),
    LOAD = o.per_thread and "lua-load-per-thread" or "lua-load",
  }
  write_file(dir .. "/haproxy.cfg", (CFG:gsub("%${(%w+)}", vars)))
  write_file(dir .. "/app.lua", APP)
  write_file(dir .. "/results", "")
  local env = {
    "LUA_PATH_5_3=" .. q(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;"),
    "LUA_CPATH_5_3=" .. q(ROOT .. "/build/5.3/?.so;;"),
    "UGEN_BASE_URL=" .. q(o.base_url or info.base_url), "UGEN_API_KEY=" .. q(S.tenant.default.api_key),
    "UGEN_RESULTS=" .. q(dir .. "/results"), "UGEN_OUT=" .. q(dir),
    "UGEN_HAPROXY_SPEC_RUNTIME=" .. q(os.getenv("UGEN_HAPROXY_SPEC_RUNTIME") or ""),
  }
  local p = io.popen("env " .. table.concat(env, " ") .. " " .. q(haproxy) .. " -db -f " .. q(dir .. "/haproxy.cfg")
    .. " > " .. q(dir .. "/haproxy.log") .. " 2>&1 & echo $!")
  local pid = tonumber(p:read("*a"):match("%d+"))
  p:close()
  local h = { pid = pid, port = port, dir = dir }
  running[pid] = h
  function h.log() return read_file(dir .. "/haproxy.log") or "" end
  -- ready when the static path answers
  local t0 = socket.gettime()
  while true do
    local c = socket.tcp()
    c:settimeout(0.5)
    if c:connect("127.0.0.1", port) then
      c:close()
      break
    end
    c:close()
    if socket.gettime() - t0 > 10 then
      stop(h)
      error("haproxy did not start: " .. h.log())
    end
    socket.sleep(0.05)
  end
  return h
end

-- one GET with a fresh connection; -> seconds, status, body (nil, nil when
-- nothing came back within timeout: the time counts all the same)
local function get(port, path, timeout)
  local t0 = socket.gettime()
  local c = socket.tcp()
  c:settimeout(timeout or 10)
  local data = ""
  if c:connect("127.0.0.1", port) and c:send("GET " .. path .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
  then
    data = c:receive("*a") or ""
  end
  c:close()
  local status = tonumber(data:match("^HTTP/1%.%d (%d+)"))
  return socket.gettime() - t0, status, data:match("\r\n\r\n(.*)$")
end

-- a request answered later (a service that waits for jobs): read without blocking
local function open_request(port, path)
  local c = socket.tcp()
  c:settimeout(5)
  assert(c:connect("127.0.0.1", port))
  assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
  c:settimeout(0)
  local r = { parts = {} }
  function r.poll()
    if r.done then return true end
    local data, err, partial = c:receive("*a")
    local got = data or partial
    if got and got ~= "" then r.parts[#r.parts + 1] = got end
    if data or err == "closed" then
      c:close()
      r.done = true
      local all = table.concat(r.parts)
      r.status = tonumber(all:match("^HTTP/1%.%d (%d+)"))
      r.body = all:match("\r\n\r\n(.*)$") or ""
    end
    return r.done
  end
  return r
end

local function stats(list)
  table.sort(list)
  local n = #list
  if n == 0 then return { n = 0, max = 0, p50 = 0, p99 = 0 } end
  return { n = n, max = list[n], p50 = list[math.ceil(n * 0.5)], p99 = list[math.ceil(n * 0.99)] }
end

local URL = "^http://127%.0%.0%.1:%d+/.+%.mp4$"

-- Start 10 jobs inside h and poll the static path and /ping every 10 ms until
-- they are done. -> { static = stats, lua = stats, urls = { ... }, ids, errors }
local function run_jobs(h, limit)
  local pending = {}
  local t_start = socket.gettime()
  for i = 1, 3 do pending[i] = open_request(h.port, "/job") end
  pending[4] = open_request(h.port, "/batch?n=4")
  pending[5] = open_request(h.port, "/start?n=3")
  local static, lua = {}, {}
  local next_tick = socket.gettime()
  local task_lines = {}
  local last_read = 0
  while true do
    static[#static + 1] = get(h.port, "/", 2)
    lua[#lua + 1] = get(h.port, "/ping", 2)
    local all = true
    for _, r in ipairs(pending) do all = r.poll() and all end
    local now = socket.gettime()
    if now - last_read > 0.2 then
      last_read = now
      task_lines = {}
      for line in (read_file(h.dir .. "/results") or ""):gmatch("[^\n]+") do task_lines[#task_lines + 1] = line end
    end
    if all and #task_lines >= 3 then break end
    if now - t_start > limit then break end
    next_tick = next_tick + 0.01
    local wait = next_tick - socket.gettime()
    if wait > 0 then socket.sleep(wait) else next_tick = socket.gettime() end
  end
  local urls, ids, errors = {}, {}, {}
  for _, line in ipairs(task_lines) do
    local u = line:match("^task (%S+)$")
    if u and u:match(URL) then urls[#urls + 1] = u else errors[#errors + 1] = line end
  end
  for i = 1, 5 do
    local r = pending[i]
    if not r.done then
      errors[#errors + 1] = "request " .. i .. " unanswered"
    elseif i <= 3 then
      local u, id = r.body:match("^(%S+) (%S+)\n$")
      if r.status == 200 and u and u:match(URL) then
        urls[#urls + 1] = u
        ids[#ids + 1] = id
      else
        errors[#errors + 1] = tostring(r.status) .. " " .. r.body
      end
    elseif i == 5 then
      if r.body ~= "started 3\n" then errors[#errors + 1] = "/start: " .. tostring(r.status) .. " " .. r.body end
    else
      for line in r.body:gmatch("[^\n]+") do
        if line:match(URL) then urls[#urls + 1] = line else errors[#errors + 1] = line end
      end
    end
  end
  return { static = stats(static), lua = stats(lua), urls = urls, ids = ids, errors = errors,
           seconds = socket.gettime() - t_start }
end

local function report(label, r)
  print(string.format("\n  [haproxy %s] 10 jobs in %.1f s; static path: %d polls, max %.1f ms, p99 %.1f ms, " ..
    "p50 %.1f ms; Lua service: %d polls, max %.1f ms, p99 %.1f ms, p50 %.1f ms", label, r.seconds,
    r.static.n, r.static.max * 1000, r.static.p99 * 1000, r.static.p50 * 1000,
    r.lua.n, r.lua.max * 1000, r.lua.p99 * 1000, r.lua.p50 * 1000))
end

local function check(r, h)
  assert.is_true(r.static.max <= 0.1, string.format("static path answered in %.1f ms", r.static.max * 1000))
  assert.is_true(r.lua.max <= 0.1, string.format("Lua service answered in %.1f ms", r.lua.max * 1000))
  assert.same({}, r.errors, h.log())
  assert.equal(10, #r.urls, h.log())
  -- the proxy was polled all along (about every 10 ms, two requests a round)
  assert.is_true(r.static.n >= r.seconds * 20, tostring(r.static.n))
end

describe("HAProxy 2.6 host (10 jobs inside, static path and Lua service polled every 10 ms)", function()
  setup(function()
    tools.need("haproxy")
    S.info()
    S.speed(5)
  end)
  teardown(function()
    for _, h in pairs(running) do stop(h) end
    S.speed()
  end)

  it("default tuning (nbthread 1, lua-load): no answer over 100 ms; all 10 jobs end with final_video_url; " ..
     "an action, a download to a file and an upload work", function()
    S.reset("default")
    local h = start{}
    finally(function() stop(h) end)
    local r = run_jobs(h, 90)
    report("default", r)
    check(r, h)
    -- an action's plain call (http-request lua.ugen_status)
    local _, st, body = get(h.port, "/status?id=" .. r.ids[1])
    assert.equal(200, st, h.log())
    assert.equal("completed\n", body)
    -- a download to a file (core.tcp, streamed) and a multipart upload, from a service
    local _, st2, body2 = get(h.port, "/files?url=" .. r.urls[1])
    assert.equal(200, st2, tostring(body2) .. h.log())
    local path, size, up = body2:match("^(%S+) (%d+) (%S+)\n$")
    assert.is_string(path, body2)
    local data = read_file(path)
    assert.equal(tonumber(size), #data)
    assert.is_true(#data > 0)
    assert.matches("^https?://", up)
    -- the same bytes as a request from outside HAProxy
    local res = S.request{ method = "GET", url = r.urls[1], tenant = false }
    assert.equal(200, res.status)
    assert.equal(res.body, data)
  end)

  it("inside HAProxy: transport errors (refused, truncated, unverified TLS), core.tcp for PATCH, " ..
     "spawn / join_any / cancel", function()
    local h = start{}
    finally(function() stop(h) end)
    local _, st, body = get(h.port, "/rules", 30)
    assert.equal(200, st, tostring(body) .. h.log())
    local r = {}
    for name, v in body:gmatch("(%S+) ([^\n]*)\n") do r[name] = v end
    assert.equal("network CONNECT_FAILED false", r.refused)
    assert.equal("network PARTIAL_BODY true", r.truncated)
    assert.equal("network CONNECT_FAILED false", r.unresolved)
    assert.equal("status 503", r.server503)
    assert.equal("timeout RECV_TIMEOUT true", r.deadline)
    local waited = tonumber(r.deadline_s)
    assert.is_true(waited >= 0.45 and waited < 2, r.deadline_s)   -- the deadline, not the server's 3 s
    assert.matches("^status 4%d%d$", r.patch)        -- the sandbox's answer: the request went out
    assert.equal("tls TLS_UNVERIFIED false", r.patch_https)
    assert.equal("network UNSUPPORTED false", r.patch_name)
    assert.equal("tls CAINFO_UNSUPPORTED false", r.cainfo)
    assert.equal("h2 false boom", r.join1)
    assert.equal("h3 true 7", r.join2)
    assert.equal("true", r.join_timeout)
    assert.equal("false", r.cancelled_ran)
    assert.equal("haproxy", r.runtime)
    assert.equal("raised", r.at_load)
    assert.equal("function/haproxy", r.with_function)
    assert.equal("curl", r.with_curl)
  end)

  it("https through httpclient: verified against httpclient.ssl.ca-file (job, download, upload); " ..
     "without that CA nothing is accepted", function()
    local sandbox = require "ugen.sandbox"
    local dir = S.tmpdir() .. "/tls-sandbox"
    local tinfo = assert(sandbox.start{ dir = dir, tls = true, speed = 5, seed = S.SEED })
    finally(function() sandbox.stop{ dir = dir } end)
    assert.matches("^https://", tinfo.base_url)
    local h = start{ base_url = tinfo.base_url, global = "httpclient.ssl.ca-file " .. tinfo.cainfo }
    finally(function() stop(h) end)
    local _, st, body = get(h.port, "/job", 60)
    assert.equal(200, st, tostring(body) .. h.log())
    local url = body:match("^(%S+) ")
    assert.matches("^https://127%.0%.0%.1:%d+/.+%.mp4$", url)
    local _, st2, body2 = get(h.port, "/files?url=" .. url, 30)
    assert.equal(200, st2, tostring(body2) .. h.log())
    local path, size = body2:match("^(%S+) (%d+) https?://")
    assert.is_string(path, body2)
    assert.equal(tonumber(size), #read_file(path))
    stop(h)
    -- the system CAs do not know the sandbox's CA: the request fails, unsent
    local h2 = start{ base_url = tinfo.base_url }
    finally(function() stop(h2) end)
    local _, st3, body3 = get(h2.port, "/job", 60)
    assert.equal(500, st3, tostring(body3) .. h2.log())
    assert.matches("CONNECT_FAILED", body3)
  end)

  it("tune.lua.forced-yield 200: the same, no answer over 100 ms, 10 of 10 jobs", function()
    S.reset("default")
    local h = start{ tune = "tune.lua.forced-yield 200" }
    finally(function() stop(h) end)
    local r = run_jobs(h, 90)
    report("forced-yield 200", r)
    check(r, h)
  end)

  it("tune.lua.forced-yield 1 (a switch after every Lua instruction): the same, every job delivered once",
     function()
    -- jobs:wait_all's workers share counters: before they were claimed with one
    -- C call, 2 of its 4 jobs came back as nil, nil here
    S.reset("default")
    local h = start{ tune = "tune.lua.forced-yield 1" }
    finally(function() stop(h) end)
    local r = run_jobs(h, 90)
    report("forced-yield 1", r)
    check(r, h)
  end)

  it("nbthread 2 with lua-load (one Lua state for both threads): the same", function()
    S.reset("default")
    local h = start{ nbthread = 2 }
    finally(function() stop(h) end)
    local r = run_jobs(h, 90)
    report("nbthread 2, lua-load", r)
    check(r, h)
  end)

  it("nbthread 2 with lua-load-per-thread (and forced-yield 200): the same", function()
    S.reset("default")
    local h = start{ nbthread = 2, per_thread = true, tune = "tune.lua.forced-yield 200" }
    finally(function() stop(h) end)
    local r = run_jobs(h, 90)
    report("nbthread 2, per-thread", r)
    check(r, h)
  end)
end)
