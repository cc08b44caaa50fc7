-- LÖVE 11.4 (Debian's love, LuaJIT) runs the example game examples/love/ for real under
-- xvfb-run, against the sandbox at --speed 5 (a job ~4 s): the game loads this tree's lua/ and
-- build/luajit/ core by itself, starts 20 jobs with client:spawn, calls client:step(0) once a
-- frame in love.update, draws a progress bar per job and the final URLs, writes a JSON summary
-- and quits. Asserted: all 20 jobs completed with their final_video_url, and the game's longest
-- frame (love.update to love.update, love.timer.getTime) was at most 50 ms. Not counted: the one
-- frame in which LÖVE draws its window for the first time (75-190 ms measured without the SDK
-- loaded at all: font atlas, GL state); the jobs start after it (issue 14 item 4).
local S = require "support.sandbox"
local tools = require "support.tools"
local util = require "support.util"
local json = require "ugen.json"

local q, run, read_file = util.q, util.run, util.read_file
local ROOT = (util.capture("pwd"):gsub("%s+$", ""))
local JOBS, MAX_FRAME_MS = 20, 50

local function run_love(dir, attempt)
  local results, log = dir .. "/results" .. attempt .. ".json", dir .. "/love" .. attempt .. ".log"
  local info = S.info()
  local cmd = table.concat({
    "cd /tmp && env -u LUA_PATH -u LUA_CPATH -u UGEN_JWT",
    "UGEN_BASE_URL=" .. q(info.base_url), "UGEN_API_KEY=" .. q(S.tenant.default.api_key),
    "UGEN_LOVE_JOBS=" .. JOBS, "UGEN_LOVE_RESULTS=" .. q(results), "UGEN_LOVE_QUIT=1",
    "timeout -k 5 120 xvfb-run -a -s '-screen 0 1024x768x24' love " .. q(ROOT .. "/examples/love"),
    "</dev/null >" .. q(log) .. " 2>&1",
  }, " ")
  local ok = run(cmd)
  local body = read_file(results)
  return ok, body and json.decode(body, true), read_file(log) or ""
end

-- the first ```lua block of a section of docs/hosts.md
local function doc_snippet(section)
  return require("support.docs").snippet(ROOT .. "/docs/hosts.md", section)
end

describe("LÖVE 11 (LuaJIT): examples/love", function()
  it(JOBS .. " jobs complete with their final_video_url while the game keeps drawing; no frame over "
     .. MAX_FRAME_MS .. " ms", function()
    tools.need("love")
    tools.need("xvfb-run")
    tools.need("timeout")
    assert(run("test -f " .. q(ROOT .. "/build/luajit/ugen/core.so")), "build/luajit/ugen/core.so missing: make build")
    S.info()
    S.speed(5)
    finally(function() S.speed() end)
    local dir = S.tmpdir()
    -- a loaded 2-vCPU VM (software GL under Xvfb) may preempt the game: the frame bound is judged
    -- on the best of three runs, the jobs on every run
    local best, seen = nil, {}
    for attempt = 1, 3 do
      S.reset("default")                     -- 20 jobs use most of the default tenant's credits
      local ok, out, log = run_love(dir, attempt)
      assert.is_table(out, "no results file from LÖVE; its output:\n" .. log)
      assert.is_true(ok, "love did not exit 0; its output:\n" .. log)
      assert.matches("^LuaJIT", out.lua)
      assert.equal(JOBS, #out.jobs)
      for i, j in ipairs(out.jobs) do
        assert.equal("completed", j.state, ("job %d: %s"):format(i, tostring(j.error)))
        assert.equal(S.info().origin .. "/static/videos/" .. j.id .. ".mp4", j.final_video_url)
      end
      assert.equal(JOBS, out.completed)
      assert.is_true(out.seconds > 3 and out.seconds < 30, tostring(out.seconds))
      -- the game kept running: a 60 Hz frame budget over ~4 s is well over 100 frames
      assert.is_true(out.frames > 100, "only " .. tostring(out.frames) .. " frames")
      seen[#seen + 1] = ("%.1f ms (in it: step(0) %.1f ms, update + draw %.1f ms; longest step(0) %.1f ms)")
        :format(out.max_frame_ms, out.max_frame_step_ms, out.max_frame_work_ms, out.max_step_ms)
      if not best or out.max_frame_ms < best.max_frame_ms then best = out end
      if best.max_frame_ms <= MAX_FRAME_MS then break end
    end
    assert.is_true(best.max_frame_ms <= MAX_FRAME_MS,
      "LÖVE's longest frame per run: " .. table.concat(seen, ", "))
  end)

  it("the snippet of docs/hosts.md runs as a LÖVE game: 20 jobs end with their final_video_url", function()
    tools.need("love")
    tools.need("xvfb-run")
    tools.need("timeout")
    S.info()
    S.reset("default")
    S.speed(5)
    finally(function() S.speed() end)
    local game = S.tmpdir()
    -- the snippet as written (with the example's conf.lua: no audio), then lines that print each
    -- row and quit once every task has ended; the paths come from LUA_PATH / LUA_CPATH (LuaJIT)
    util.write_file(game .. "/conf.lua", assert(read_file(ROOT .. "/examples/love/conf.lua")))
    util.write_file(game .. "/main.lua", doc_snippet("LÖVE and other frame-loop hosts") .. [[
local update = love.update
function love.update(dt)
  update(dt)
  if ugen.scheduler.default():tasks() == 0 then
    for i, r in ipairs(rows) do print("ROW", i, r.url) end
    love.event.quit(0)
  end
end
]])
    local log = game .. "/out.log"
    local info = S.info()
    local cmd = table.concat({
      "cd /tmp && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u UGEN_JWT",
      "LUA_PATH=" .. q(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;"),
      "LUA_CPATH=" .. q(ROOT .. "/build/luajit/?.so;;"),
      "UGEN_BASE_URL=" .. q(info.base_url), "UGEN_API_KEY=" .. q(S.tenant.default.api_key),
      "timeout -k 5 120 xvfb-run -a -s '-screen 0 1024x768x24' love " .. q(game),
      "</dev/null >" .. q(log) .. " 2>&1",
    }, " ")
    assert.is_true(run(cmd), "love failed; its output:\n" .. (read_file(log) or ""))
    local text = read_file(log) or ""
    local urls = {}
    for i, url in text:gmatch("ROW\t(%d+)\t(%S+)") do urls[tonumber(i)] = url end
    for i = 1, 20 do
      assert.matches("^" .. info.origin:gsub("%p", "%%%0") .. "/static/videos/[%x-]+%.mp4$", urls[i] or "",
        nil, false, "job " .. i .. ":\n" .. text)
    end
  end)
end)
