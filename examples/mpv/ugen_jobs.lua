-- An mpv script (mpv 0.35, Lua 5.2) that runs U-Gen jobs without freezing mpv:
-- it creates `jobs` jobs, follows their progress on the OSD and logs each
-- final_video_url. The jobs run in tasks started with client:spawn; mpv's own
-- event loop drives them through client:step(0) from a timer re-armed with the
-- seconds step returns (0 while work is ready, at most 10 ms while a request is
-- in flight, up to the next poll when only waits are pending; nil: all done).
-- A plain SDK call here (client.jobs:wait outside a task) would block this
-- script's thread for the whole job: its timers, key bindings and property
-- observers would stall until it returned.
--
--   eval "$(bin/ugen sandbox start --speed 5)"      # or UGEN_BASE_URL / UGEN_API_KEY of your account
--   mpv --idle=yes --script=examples/mpv/ugen_jobs.lua --script-opts=ugen_jobs-jobs=3
--
-- Options (--script-opts=ugen_jobs-NAME=VALUE,...): jobs (default 1), interval
-- (seconds between polls of one job, 1), timeout (seconds per job, 600),
-- results (a file: a JSON summary is written there at the end), quit (yes:
-- quit mpv at the end). The script also measures its own event loop: a 10 ms
-- periodic timer records how late it fires ("max lateness" in the summary).
--
-- From a clone, the script puts the clone's lua/ and build/5.2/ (build/luajit/
-- for an mpv built with LuaJIT) on its module paths; `make build` builds them.
-- With the rock installed for Lua 5.2 (luarocks --lua-version 5.2) it needs no
-- paths at all.

local here = debug.getinfo(1, "S").source
here = here:sub(1, 1) == "@" and here:sub(2) or ""
if here ~= "" and here:sub(1, 1) ~= "/" then here = (os.getenv("PWD") or ".") .. "/" .. here end
local root = here:match("^(.*)/examples/mpv/[^/]+$")
if root then
  local f = io.open(root .. "/lua/ugen/init.lua", "r")
  if f then
    f:close()
    local sub = (type(rawget(_G, "jit")) == "table" and "luajit") or _VERSION:match("%d+%.%d+")
    package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
    package.cpath = root .. "/build/" .. sub .. "/?.so;" .. package.cpath
  end
end

local mp = require "mp"
local msg = require "mp.msg"
local ugen = require "ugen"
local json = require "ugen.json"

local o = { jobs = 1, interval = 1, timeout = 600, results = "", quit = false }
require("mp.options").read_options(o, "ugen_jobs")

local now = ugen.scheduler.now
local client = ugen.new{}                 -- UGEN_BASE_URL, UGEN_API_KEY (or UGEN_JWT) from the environment
local N = math.floor(o.jobs)

-- one row per job, written by the tasks, shown on the OSD
local rows = {}
for i = 1, N do rows[i] = { state = "creating", stage = "", pct = 0 } end

for i = 1, N do
  client:spawn(function()
    local row, t0 = rows[i], now()
    local job, err = client.jobs:create{
      product_name = ("mpv job #%02d"):format(i),
      product_image_url = "https://example.com/headphones.jpg",
      segment_count = 1,
    }
    if not job then
      row.state, row.err = "failed", tostring(err)
      return
    end
    row.id, row.state = job.job_id, "running"
    local final, werr = client.jobs:wait(job.job_id, { interval = o.interval, timeout = o.timeout,
      on_progress = function(j)
        row.stage, row.pct = tostring(j.current_stage or ""), tonumber(j.progress_percent) or 0
      end })
    if final then
      row.state, row.pct, row.url, row.seconds = "completed", 100, final.final_video_url, now() - t0
      msg.info(("job %d done: %s"):format(i, tostring(final.final_video_url)))
    else
      row.state, row.err = "failed", tostring(werr)
      msg.error(("job %d failed: %s"):format(i, row.err))
    end
  end)
end

-- this script's own event loop, measured: a 10 ms periodic timer and how late it fires
local TICK = 0.01
local ticks, max_late, last_tick = 0, 0, now()
local observer = mp.add_periodic_timer(TICK, function()
  local t = now()
  local late = t - last_tick - TICK
  if late > max_late then max_late = late end
  ticks, last_tick = ticks + 1, t
end)

local t_start, steps, worst_step = now(), 0, 0

local function show()
  local done, lines = 0, {}
  for i = 1, N do
    local r = rows[i]
    if r.state == "completed" then done = done + 1 end
    if i <= 12 then
      lines[#lines + 1] = ("%2d %3d%% %-10s %s"):format(i, r.pct, r.stage, r.state == "failed" and r.err or r.state)
    end
  end
  mp.osd_message(("U-Gen: %d/%d jobs done, max timer lateness %.1f ms\n%s")
    :format(done, N, max_late * 1000, table.concat(lines, "\n")), 1)
  return done
end

local function finish()
  observer:kill()
  local done = show()
  local out = { jobs = {}, completed = done, max_lateness_ms = max_late * 1000, ticks = ticks,
                steps = steps, worst_step_ms = worst_step * 1000, seconds = now() - t_start, lua = _VERSION }
  for i = 1, N do
    local r = rows[i]
    out.jobs[i] = { id = r.id or json.null, state = r.state, final_video_url = r.url or json.null,
                    seconds = r.seconds or json.null, error = r.err or json.null }
  end
  msg.info(("%d/%d jobs completed in %.1f s; max timer lateness %.1f ms over %d ticks")
    :format(done, N, out.seconds, out.max_lateness_ms, ticks))
  if o.results ~= "" then
    local f = assert(io.open(o.results, "w"))
    f:write(assert(json.encode(out)), "\n")
    f:close()
  end
  if o.quit then mp.commandv("quit", done == N and "0" or "1") end
end

-- the pump: step(0) never blocks; the timer is re-armed with what it returns
local last_show = 0
local function pump()
  local a = now()
  local next_in = client:step(0)
  local spent = now() - a
  steps = steps + 1
  if spent > worst_step then worst_step = spent end
  if a - last_show > 0.5 then last_show = a; show() end
  if next_in == nil then return finish() end
  mp.add_timeout(next_in, pump)
end
mp.add_timeout(0, pump)
