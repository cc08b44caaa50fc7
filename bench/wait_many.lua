-- bench/wait_many.lua: 1,000 jobs awaited at once from one Lua thread.
--
--   lua5.4 bench/wait_many.lua [--jobs 1000] [--delay 0.2] [--concurrency 64] [--sample 20]
--   luajit bench/wait_many.lua ...
--
-- Starts a private sandbox (real nginx, loopback), creates the jobs (raising the
-- sandbox tenant's limits and credits first), finishes them on the sandbox
-- clock, then awaits them all with client.jobs:wait_all inside ugen.run while
-- the sandbox delays EVERY poll by --delay seconds (X-Sandbox-Fault: delay=S).
-- Baseline, measured in the same run: the same polls made sequentially
-- (blocking jobs:wait outside ugen.run) on a sample of --sample jobs.
--
-- Pass criteria (exit status 1 otherwise):
--   wall time of the concurrent wait < 5 s (1,000 jobs x 0.2 s: sequential ~200 s)
--   CPU per poll, concurrent / sequential <= 2
-- CPU is this process's CPU time (os.clock: user + system), nginx excluded.

local function here()
  local src = debug.getinfo(1, "S").source
  return (src:sub(1, 1) == "@" and src:sub(2) or "bench/wait_many.lua"):match("^(.*)/bench/[^/]+$") or "."
end
local root = here()
local sub = (type(jit) == "table" and "luajit") or _VERSION:match("%d+%.%d+")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/" .. sub .. "/?.so;" .. package.cpath

local ugen = require "ugen"
local sandbox = require "ugen.sandbox"
local scheduler = require("ugen").scheduler

local opts = { jobs = 1000, delay = 0.2, concurrency = 64, sample = 20 }
do
  local i = 1
  while arg and arg[i] do
    local k = arg[i]:match("^%-%-(%w+)$")
    local v = tonumber(arg[i + 1] or "")
    if not k or opts[k] == nil or not v or v <= 0 then
      io.stderr:write("usage: bench/wait_many.lua [--jobs N] [--delay S] [--concurrency N] [--sample N]\n")
      os.exit(2)
    end
    opts[k] = v
    i = i + 2
  end
end
local N, DELAY, SAMPLE = math.floor(opts.jobs), opts.delay, math.floor(math.min(opts.sample, opts.jobs))
scheduler.configure{ max_concurrency = math.floor(opts.concurrency) }

local now = scheduler.now

local dir = os.tmpname()
os.remove(dir)
dir = dir .. ".ugen-bench"
local info, serr = sandbox.start{ port = 0, dir = dir, speed = 50, seed = "bench" }
if not info then
  io.stderr:write("cannot start the sandbox: ", tostring(serr), "\n")
  os.exit(1)
end

local function main()
  local key = info.api_key
  local c = ugen.new{ base_url = info.base_url, api_key = key, timeout = 30, max_retries = 0 }
  local admin = ugen.new{ base_url = info.origin, api_key = key, timeout = 30 }
  assert(admin:request("PUT", "/_sandbox/limits", { concurrent_limit = N + 10, daily_limit = N * 10 + 100 }))
  assert(admin:request("POST", "/_sandbox/credits", { amount = N * 1000 }))

  -- create the jobs (concurrently too)
  local ids = {}
  local t0 = now()
  ugen.run(function()
    for i = 1, N do
      c:spawn(function()
        local job, err = c.jobs:create{ product_name = "Bench mug " .. i,
          product_image_url = "https://example.com/mug.jpg", segment_count = 1 }
        ids[i] = assert(job, tostring(err)).job_id
      end)
    end
  end)
  local t_create = now() - t0
  -- finish them all on the sandbox clock: from now on every poll answers "completed"
  assert(admin:request("POST", "/_sandbox/clock", { advance = 100 }))

  local slow = { headers = { ["X-Sandbox-Fault"] = "delay=" .. DELAY }, interval = 1, timeout = 120 }

  -- concurrent: every job awaited at once
  local st0 = scheduler.default():stats()
  local c0, w0 = os.clock(), now()
  local jobs, errs = ugen.run(function() return c.jobs:wait_all(ids, slow) end)
  local wall, cpu = now() - w0, os.clock() - c0
  local st1 = scheduler.default():stats()
  local polls = st1.requests - st0.requests
  local completed, failed = 0, 0
  for i = 1, N do
    if jobs[i] and jobs[i].status == "completed" then completed = completed + 1 end
    if errs[i] then failed = failed + 1 end
  end

  -- sequential baseline on a sample, in the same run: blocking waits outside ugen.run
  local sc0, sw0 = os.clock(), now()
  for i = 1, SAMPLE do
    assert(c.jobs:wait(ids[i], slow))
  end
  local swall, scpu = now() - sw0, os.clock() - sc0

  local seq_poll_wall, seq_poll_cpu = swall / SAMPLE, scpu / SAMPLE
  local conc_poll_cpu = cpu / polls
  local seq_total = seq_poll_wall * N
  local cpu_ratio = conc_poll_cpu / seq_poll_cpu

  local lua = type(jit) == "table" and jit.version or _VERSION
  print(("wait_many: %s, %d jobs, every poll delayed %.2f s, max_concurrency %d"):format(
    lua, N, DELAY, scheduler.default().max))
  print(("  create %d jobs (concurrent)     %7.2f s wall"):format(N, t_create))
  print(("  concurrent wait_all            %7.2f s wall  %6.3f s CPU  %d polls  peak in flight %d"):format(
    wall, cpu, polls, st1.peak_host_inflight))
  print(("  completed %d, failed %d"):format(completed, failed))
  print(("  sequential baseline (%d polls)  %7.3f s wall/poll  %8.5f s CPU/poll"):format(
    SAMPLE, seq_poll_wall, seq_poll_cpu))
  print(("  concurrent                      %7.4f s wall/poll  %8.5f s CPU/poll"):format(wall / polls,
    conc_poll_cpu))
  print(("  sequential estimate for %d jobs %7.1f s; speedup x%.1f"):format(N, seq_total, seq_total / wall))
  print(("  CPU per poll ratio (concurrent / sequential) %.2f"):format(cpu_ratio))

  local ok = true
  if completed ~= N then print("FAIL: not every job completed"); ok = false end
  if N >= 1000 and wall >= 5 then print("FAIL: wall time >= 5 s"); ok = false end
  if cpu_ratio > 2 then print("FAIL: CPU per poll more than 2x the sequential poll"); ok = false end
  print(ok and "PASS" or "FAIL")
  return ok
end

local okrun, res = xpcall(main, debug.traceback)
sandbox.stop{ dir = dir }
os.execute("rm -rf '" .. dir:gsub("'", "") .. "'")
if not okrun then
  io.stderr:write(tostring(res), "\n")
  os.exit(1)
end
os.exit(res and 0 or 1)
