-- bench/wait_h2.lua: 1,000 jobs awaited at once over HTTPS + HTTP/2 with DEFAULT settings.
--
--   lua5.4 bench/wait_h2.lua [--jobs 1000] [--delay 0.2] [--interval 0.1] [--rounds 3] [--h1 1]
--   luajit bench/wait_h2.lua ...            (or: BENCH_ONLY=wait_h2 sh bench/run.sh)
--
-- Starts a private TLS sandbox (sandbox.start{ tls = true }: real nginx, `listen ssl http2`,
-- a private CA). Each round creates --jobs jobs on a stopped sandbox clock (speed 0.001), then a
-- FRESH process (this script with --child: a cold start, no pooled connection, no cached TLS
-- session) awaits them all with
--     ugen.run(function() return client.jobs:wait_all(ids, opts) end)
-- and nothing configured but base_url, api_key and cainfo. Every poll is delayed --delay s by
-- the sandbox (X-Sandbox-Fault: delay=S, answered after the job's state is read). Once every
-- job's first poll is on its way, a task of the same run starts the sandbox clock so that every
-- job ends --delay s later: each job takes 2 polls, its first one reaches the server before the
-- jobs end, its second one (delay + interval later) after. The floor is 2 x delay + interval
-- (0.5 s by default).
-- Connections are counted in the sandbox's access log (nginx's $connection of every poll,
-- and $ssl_session_reused: how many of them resumed a TLS session).
-- CPU is the awaiting process's CPU time (os.clock: user + system) over the wait alone.
-- Best of --rounds. With --h1 1 (default) the same wait also runs once against a plain-HTTP
-- sandbox (HTTP/1.1), the behaviour HTTP/1.1 origins keep: at most max_concurrency (64)
-- requests, so as many connections.
--
-- Pass criteria (#15 item 1; exit status 1 otherwise), over HTTPS/h2:
--   every job completes; best wall <= 1.0 s (the floor is 0.5 s); at most 8 connections
--   carried the polls of any round; best CPU <= 0.6 s.

local function here()
  local src = debug.getinfo(1, "S").source
  return (src:sub(1, 1) == "@" and src:sub(2) or "bench/wait_h2.lua"):match("^(.*)/bench/[^/]+$") or "."
end
local root = here()
local sub = (type(jit) == "table" and "luajit") or _VERSION:match("%d+%.%d+")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/bench/?.lua;" .. package.path
package.cpath = root .. "/build/" .. sub .. "/?.so;" .. package.cpath

local ugen = require "ugen"
local scheduler = require("ugen").scheduler

local B = require "lib"   -- bench/lib.lua: the shared helpers
local q, read_file, write_file = B.q, B.read_file, B.write_file

---------------------------------------------------------------------------
-- the child: one cold process awaiting every job (default settings)

if arg and arg[1] == "--child" then
  local cfg = dofile(arg[2])
  local ids = cfg.ids
  local c = ugen.new{ base_url = cfg.base_url, api_key = cfg.api_key, cainfo = cfg.cainfo }
  -- the clock is moved through another origin (localhost, the same server): its connection
  -- is not one of the polls

  local admin = ugen.new{ base_url = cfg.admin_url, api_key = cfg.api_key, cainfo = cfg.cainfo }
  local opts = { headers = { ["X-Sandbox-Fault"] = "delay=" .. cfg.delay }, interval = cfg.interval, timeout = 20 }
  assert(admin:request("GET", "/_sandbox/clock")) -- its connection is up before the wait starts
  local now = scheduler.now
  local st0 = scheduler.default():stats()
  local c0, w0 = os.clock(), now()
  local jobs, errs = ugen.run(function()
    -- The jobs were made on a stopped clock (speed 0.001). Once every job's first poll is on
    -- its way, the clock runs at speed 1 from `finish_in` s short of the end of every job's
    -- pipeline (20 s): the first polls reach the server before that (unfinished), the second
    -- ones (delay + interval later) after it (completed).
    scheduler.spawn(function()
      repeat
        coroutine.yield()
        local st = scheduler.default():stats()
      until st.inflight + st.queued >= #ids
      assert(admin:request("POST", "/_sandbox/clock", { speed = 1, advance = 20 - cfg.finish_in }))
    end)
    return c.jobs:wait_all(ids, opts)
  end)
  local wall, cpu = now() - w0, os.clock() - c0
  local st1 = scheduler.default():stats()
  local completed, first_err = 0, nil
  for i = 1, #ids do
    if jobs[i] and jobs[i].status == "completed" then completed = completed + 1 end
    if errs[i] and not first_err then first_err = tostring(errs[i]) end
  end
  io.write(("RESULT wall=%.4f cpu=%.4f completed=%d polls=%d peak=%d\n"):format(wall, cpu, completed,
    st1.requests - st0.requests - 1, st1.peak_host_inflight))
  if first_err then io.write("ERROR ", first_err, "\n") end
  os.exit(0)
end

---------------------------------------------------------------------------
-- the parent

local sandbox = require "ugen.sandbox"

local opts = { jobs = 1000, delay = 0.2, interval = 0.1, rounds = 3, h1 = 1 }
do
  local i = 1
  while arg and arg[i] do
    local k = arg[i]:match("^%-%-(%w+)$")
    local v = tonumber(arg[i + 1] or "")
    if not k or opts[k] == nil or not v or v < 0 then
      io.stderr:write("usage: bench/wait_h2.lua [--jobs N] [--delay S] [--interval S] [--rounds N] [--h1 0|1]\n")
      os.exit(2)
    end
    opts[k] = v
    i = i + 2
  end
end
local N, ROUNDS = math.floor(opts.jobs), math.max(1, math.floor(opts.rounds))
local FLOOR = 2 * opts.delay + opts.interval
local interp = arg and arg[-1] or "lua"
local script = root .. "/bench/wait_h2.lua"

local function start(tls, tag)
  local dir = os.tmpname()
  os.remove(dir)
  dir = dir .. ".ugen-bench-" .. tag
  local info, err = sandbox.start{ port = 0, dir = dir, speed = 0.001, seed = "bench", tls = tls }
  if not info then error("cannot start the sandbox: " .. tostring(err), 0) end
  return info
end

-- polls (GET /api/v1/jobs/<id>) logged after byte `from` of the access log:
-- -> distinct connections that carried them, how many of those resumed a TLS session
local function connections(info, from)
  local log = read_file(info.dir .. "/access.log") or ""
  local conns, n, resumed = {}, 0, 0
  for line in log:sub(from + 1):gmatch("[^\n]+") do
    if line:find('"GET /api/v1/jobs/[%w-]+ HTTP/') then
      local conn, reused = line:match("conn=(%d+) reqs=%d+ tls_reused=(%S+)")
      if conn and not conns[conn] then
        conns[conn] = true
        n = n + 1
        if reused == "r" then resumed = resumed + 1 end
      end
    end
  end
  return n, resumed
end

local function log_size(info)
  return #(read_file(info.dir .. "/access.log") or "")
end

-- one round: create N jobs, await them from a fresh process -> figures
local function round(info, admin_url)
  local c = ugen.new{ base_url = info.base_url, api_key = info.api_key, cainfo = info.cainfo, timeout = 30 }
  local admin = ugen.new{ base_url = info.origin, api_key = info.api_key, cainfo = info.cainfo, timeout = 30 }
  assert(admin:request("POST", "/_sandbox/clock", { speed = 0.001 }))   -- stopped (the child starts it)
  local ids = {}
  ugen.run(function()
    for i = 1, N do
      c:spawn(function()
        local job, err = c.jobs:create{ product_name = "Bench mug " .. i,
          product_image_url = "https://example.com/mug.jpg", segment_count = 1 }
        ids[i] = assert(job, tostring(err)).job_id
      end)
    end
  end)
  local cfgfile = info.dir .. "/child-config.lua"
  local parts = {}
  for i = 1, N do parts[i] = ("%q"):format(ids[i]) end
  write_file(cfgfile, ("return { base_url = %q, admin_url = %q, api_key = %q, cainfo = %s, delay = %.17g, "
    .. "interval = %.17g, finish_in = %.17g, ids = { %s } }\n"):format(info.base_url, admin_url, info.api_key,
    info.cainfo and ("%q"):format(info.cainfo) or "nil", opts.delay, opts.interval,
    opts.delay, table.concat(parts, ", ")))
  local from = log_size(info)
  local p = assert(io.popen(q(interp) .. " " .. q(script) .. " --child " .. q(cfgfile) .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  local r = {}
  r.wall, r.cpu, r.completed, r.polls, r.peak = out:match(
    "RESULT wall=([%d.]+) cpu=([%d.]+) completed=(%d+) polls=(%d+) peak=(%d+)")
  if not r.wall then error("the awaiting process failed:\n" .. out, 0) end
  for k, v in pairs(r) do r[k] = tonumber(v) end
  r.err = out:match("ERROR ([^\n]*)")
  if r.completed ~= N then r.err = (r.err or "") .. "\n" .. out:sub(1, 2000) end
  r.conns, r.resumed = connections(info, from)
  return r
end

local function prepare(info)
  local admin = ugen.new{ base_url = info.origin, api_key = info.api_key, cainfo = info.cainfo, timeout = 30 }
  local total = N * (ROUNDS + 1)
  assert(admin:request("PUT", "/_sandbox/limits", { concurrent_limit = total + 10, daily_limit = total * 2 + 100 }))
  assert(admin:request("POST", "/_sandbox/credits", { amount = total * 1000 }))
end

local function fmt(label, r)
  return ("  %-26s %6.3f s wall %6.3f s CPU  %5d polls (%4d at once)  %3d connections (%d resumed TLS)  "
    .. "%d/%d completed"):format(label, r.wall, r.cpu, r.polls, r.peak, r.conns, r.resumed, r.completed, N)
end

local started = {}
local function main()
  local lua = type(jit) == "table" and jit.version or _VERSION
  print(("wait_h2: %s, %d jobs awaited at once, default settings (max_concurrency %s), every poll "
    .. "delayed %.2f s, interval %.2f s: floor %.2f s"):format(lua, N,
    tostring(scheduler.default():stats().max_concurrency), opts.delay, opts.interval, FLOOR))
  local info = start(true, "h2")
  started[#started + 1] = info
  prepare(info)
  local admin_url = info.origin:gsub("127%.0%.0%.1", "localhost")
  local best, rs, max_conns = nil, {}, 0
  for i = 1, ROUNDS do
    local r = round(info, admin_url)
    rs[i] = r
    print(fmt(("HTTPS/h2 round %d"):format(i), r))
    if r.err then print("    first error: " .. r.err) end
    if r.conns > max_conns then max_conns = r.conns end
    if not best or r.wall < best.wall then best = r end
  end
  local best_cpu = math.huge
  for i = 1, ROUNDS do best_cpu = math.min(best_cpu, rs[i].cpu) end
  print(("  HTTPS/h2 best of %d: %.3f s wall (%.2fx the floor), %.3f s CPU, at most %d connections")
    :format(ROUNDS, best.wall, best.wall / FLOOR, best_cpu, max_conns))

  if opts.h1 ~= 0 then
    local plain = start(false, "h1")
    started[#started + 1] = plain
    prepare(plain)
    local r = round(plain, (plain.origin:gsub("127%.0%.0%.1", "localhost")))
    print(fmt("HTTP/1.1 (plain sandbox)", r))
    if r.err then print("    first error: " .. r.err) end
  end

  local ok = true
  for i = 1, ROUNDS do
    if rs[i].completed ~= N then print(("FAIL: round %d: not every job completed"):format(i)); ok = false end
  end
  if best.wall > 1.0 then print("FAIL: best wall > 1.0 s"); ok = false end
  if max_conns > 8 then print("FAIL: more than 8 connections carried the polls"); ok = false end
  if best_cpu > 0.6 then print("FAIL: best CPU > 0.6 s"); ok = false end
  print(ok and "PASS" or "FAIL")
  return ok
end

local okrun, res = xpcall(main, debug.traceback)
for _, info in ipairs(started) do
  sandbox.stop{ dir = info.dir }
  os.execute("rm -rf " .. q(info.dir))
end
if not okrun then
  io.stderr:write(tostring(res), "\n")
  os.exit(1)
end
os.exit(res and 0 or 1)
