-- Plain libuv (Debian lua-luv): a luv program hands its loop to the SDK with
-- require("ugen.runtime.luv").new(uv), spawns 10 main jobs (create, wait,
-- final_video_url) against the sandbox at speed 5 (~4 s a job) and calls
-- uv.run(): the loop alone drives them (the runtime has no step), uv.run()
-- returns when they are done, and the process's CPU time over the ~4 s wait
-- stays small and the loop wakes only for the SDK's events (no fixed-rate
-- polling). spec/hosts/luv_job.lua is the program.
local tools = require "support.tools"
local host = require "hosts.luv_host"

local N = 10
local SUBS = { ["lua5.1"] = "5.1", ["lua5.3"] = "5.3", ["lua5.4"] = "5.4", luajit = "luajit" }

local function check(res, log, lua)
  assert(res, lua .. " wrote no results:\n" .. log)
  assert.equal("luv", res.runtime)
  assert.same({}, res.errors)
  assert.is_nil(res.guard, lua .. ": the jobs did not end within 30 s")
  assert.equal(N, res.finished)
  assert.equal(N, host.completed(res))
  assert.matches("client:step needs a runtime with 'step'", res.step_error, 1, true)
  -- uv.run() returned by itself once the last job ended: the SDK holds no handle
  assert.is_true(res.after_last_ms < 200, ("%s: uv.run() returned %.1f ms after the last job"):format(
    lua, res.after_last_ms))
  assert.is_true(res.elapsed > 2 and res.elapsed < 20, ("%s: jobs took %.2f s"):format(lua, res.elapsed))
  assert.is_true(res.cpu < 0.3, ("%s: %.3f s CPU for a %.2f s wait"):format(lua, res.cpu, res.elapsed))
  -- event driven: the ~100 requests add at most ~10 loop iterations each to the
  -- 10 ms observer's (a 1 ms fixed-rate client:step adds ~4000 in 4 s)
  assert.is_true(res.iterations < res.ticks + 1000, ("%s: %d loop iterations, %d observer ticks"):format(
    lua, res.iterations, res.ticks))
  return res
end

local function job(lua)
  return { sub = SUBS[lua], jobs = N, cmd = tools.need(lua) .. " spec/hosts/luv_job.lua" }
end

describe("plain luv (lua-luv): uv.run() drives client:spawn", function()
  it("lua5.4: 10 jobs complete, < 0.3 s CPU over the wait, the loop never late over 50 ms", function()
    finally(host.restore)
    local res, log = host.run(job("lua5.4"))
    check(res, log, "lua5.4")
    assert.is_true(res.max_late_ms <= 50, ("observer %.1f ms late"):format(res.max_late_ms))
  end)

  it("the same on Lua 5.1, 5.3 and LuaJIT (all three at once)", function()
    finally(host.restore)
    local luas = { "lua5.1", "lua5.3", "luajit" }
    local list = {}
    for i, lua in ipairs(luas) do list[i] = job(lua) end
    for i, r in ipairs(host.run_all(list)) do check(r[1], r[2], luas[i]) end
  end)
end)
