-- Issue 12, item 3: task:cancel() from inside a callback. Cancelling a task
-- from a download's on_progress (another task's, or its own) raised "cannot
-- close a transfer from inside a callback" after the scheduler had already
-- changed its state: the victim never woke and ugen.run ended in a deadlock
-- error. Real downloads over loopback (spec/support/deadline_httpd.lua drips
-- bodies slowly) and the sandbox for jobs:wait's on_progress.
local D = require "support.deadline_server"
local S = require "support.sandbox"
local ugen = require "ugen"
local scheduler = require("ugen").scheduler
local sched = require("ugen").scheduler
local errors = require "ugen.errors"

local SLOW = tonumber(os.getenv("UGEN_TIME_FACTOR")) or 1
local now = sched.now

local srv, dir

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

-- a job table whose video drips: n bytes, 64 every ms milliseconds
local function drip(n, ms, host)
  return { job_id = "drip", final_video_url = ("http://%s:%d/drip/%d/%d"):format(host or "127.0.0.1", srv.port, n, ms) }
end

-- Runs fn, raising if it is still running after `limit` seconds (a count hook
-- on this thread: before the fix, one case spun in the scheduler forever).
local function bounded(limit, fn)
  return function()
    local t0 = now()
    debug.sethook(function()
      if now() - t0 > limit * SLOW then
        debug.sethook()
        error("still running after " .. limit * SLOW .. " s (hang)", 2)
      end
    end, "", 10000)
    local ok, err = pcall(fn)
    debug.sethook()
    if not ok then error(err, 0) end
  end
end

local function assert_cancelled(task)
  assert.equal("cancelled", task:status())
  local ok, err = task:result()
  assert.is_false(ok)
  assert.is_true(errors.is(err, "cancelled"), tostring(err))
end

describe("task:cancel() from inside callbacks (issue 12 item 3)", function()
  local c
  lazy_setup(function()
    srv = D.start()
    dir = S.tmpdir()
    c = ugen.new{ base_url = srv.base, api_key = "k", timeout = 10 }
  end)
  lazy_teardown(function() if srv then srv.stop() end end)

  it("another task's download on_progress cancels a downloading task; joiners wake, the rest finishes",
     bounded(30, function()
    local victim, killer, joiner
    local joined
    local t0 = now()
    ugen.run(function()
      victim = c:spawn(function()
        return c.jobs:download(drip(24000, 50), dir .. "/victim.mp4")   -- ~19 s if not cancelled
      end)
      joiner = c:spawn(function()
        joined = { victim:join() }
        return "joined"
      end)
      killer = c:spawn(function()
        return c.jobs:download(drip(3000, 10), dir .. "/killer.mp4", { on_progress = function(done)
          if done >= 256 and not victim:done() then victim:cancel() end
        end })
      end)
    end)
    assert.is_true(now() - t0 < 5 * SLOW, "took " .. (now() - t0))
    assert_cancelled(victim)
    assert.equal("done", killer:status())
    local _, info = killer:result()
    assert.equal(3000, info.size)
    assert.equal(3000, file_size(dir .. "/killer.mp4"))
    assert.is_nil(file_size(dir .. "/victim.mp4"))
    assert.equal("done", joiner:status())
    assert.is_false(joined[1])
    assert.is_true(errors.is(joined[2], "cancelled"))
    -- nothing left behind: no transfer in flight, no easy handle in the engine
    local st = scheduler.default():stats()
    assert.equal(0, st.inflight)
    assert.equal(0, st.queued)
    assert.equal(0, sched.engine():running())
  end))

  it("a task cancelling itself inside its own download's on_progress ends as cancelled", bounded(30, function()
    local me, other, waiter
    local calls_after = 0
    ugen.run(function()
      me = c:spawn(function()
        local cancelled = false
        c.jobs:download(drip(24000, 50), dir .. "/self.mp4", { on_progress = function(done)
          if cancelled then calls_after = calls_after + 1 end
          if done >= 128 and not cancelled then cancelled = true; me:cancel() end
        end })
        error("download returned after its task was cancelled")
      end)
      other = c:spawn(function()
        return c.jobs:download(drip(1000, 10), dir .. "/other.mp4")
      end)
      waiter = c:spawn(function() return me:join() end)
    end)
    assert_cancelled(me)
    assert.equal(0, calls_after)
    assert.equal("done", other:status())
    assert.equal(1000, file_size(dir .. "/other.mp4"))
    local _, ok, err = waiter:result()
    assert.is_false(ok)
    assert.is_true(errors.is(err, "cancelled"))
    assert.equal(0, scheduler.default():stats().inflight)
    assert.equal(0, sched.engine():running())
  end))

  it("the slot a cancelled transfer frees goes to the next queued request (max_concurrency = 1)", bounded(30, function()
    local Sx = scheduler.new{ max_concurrency = 1, on_error = false }
    local victim, queued, killer
    local t0 = now()
    Sx:run(function()
      victim = Sx:spawn(function()
        return c.jobs:download(drip(24000, 50), dir .. "/q-victim.mp4")
      end)
      -- same origin as the victim: waits in the queue behind it
      queued = Sx:spawn(function()
        return c.jobs:download(drip(2000, 5), dir .. "/q-next.mp4")
      end)
      -- another origin (localhost): runs next to them and cancels the victim
      killer = Sx:spawn(function()
        return c.jobs:download(drip(2000, 20, "localhost"), dir .. "/q-killer.mp4", { on_progress = function(done)
          if done >= 128 and not victim:done() then victim:cancel() end
        end })
      end)
    end)
    assert.is_true(now() - t0 < 5 * SLOW, "took " .. (now() - t0))
    assert_cancelled(victim)
    assert.equal("done", queued:status(), tostring(select(2, queued:result())))
    assert.equal(2000, file_size(dir .. "/q-next.mp4"))
    assert.equal("done", killer:status())
    local st = Sx:stats()
    assert.equal(0, st.inflight)
    assert.equal(0, st.queued)
    assert.equal(1, st.peak_host_inflight)
    Sx:close()
  end))

  it("a blocking download's on_progress cancels a task of the default scheduler (shared engine)", bounded(30, function()
    local victim = c:spawn(function()
      return c.jobs:download(drip(24000, 50), dir .. "/shared-victim.mp4")
    end)
    local t0 = now()
    while sched.engine():running() == 0 and now() - t0 < 5 do c:step(0.05) end
    assert.equal(1, sched.engine():running())          -- the victim's transfer is in flight
    local info = assert(c.jobs:download(drip(1500, 10), dir .. "/blocking.mp4", { on_progress = function(done)
      if done >= 128 and not victim:done() then victim:cancel() end
    end }))
    assert.equal(1500, info.size)
    local ok, err = victim:join()
    assert.is_false(ok)
    assert.is_true(errors.is(err, "cancelled"))
    assert.equal("cancelled", victim:status())
    assert.equal(0, sched.engine():running())
    assert.equal(0, scheduler.default():stats().inflight)
  end))

  it("a callback cancels a task sleeping on a timer and one parked in join", bounded(30, function()
    local sleeper, parked, killer
    local t0 = now()
    ugen.run(function()
      sleeper = c:spawn(function() scheduler.sleep(30) end)
      parked = c:spawn(function() return sleeper:join() end)
      killer = c:spawn(function()
        return c.jobs:download(drip(1500, 10), dir .. "/timer-killer.mp4", { on_progress = function(done)
          if done >= 128 and not parked:done() then parked:cancel(); sleeper:cancel() end
        end })
      end)
    end)
    assert.is_true(now() - t0 < 5 * SLOW, "took " .. (now() - t0))
    assert_cancelled(sleeper)
    assert_cancelled(parked)
    assert.equal("done", killer:status())
    assert.equal(0, scheduler.default():stats().timers)
  end))
end)

describe("task:cancel() from jobs:wait's on_progress (sandbox)", function()
  setup(function()
    S.info()
    S.reset("default")
  end)

  it("wait_all's on_progress cancels a task waiting in a slow request, and its own caller", bounded(30, function()
    local c = ugen.new{ base_url = S.info().base_url, api_key = S.tenant.default.api_key, timeout = 15 }
    local id = assert(c.jobs:create{ product_name = "Cancel Mug", product_image_url = "https://example.com/m.jpg",
                                     segment_count = 1 }).job_id
    local slow, caller
    local t0 = now()
    ugen.run(function()
      slow = c:spawn(function()
        return c.credits:balance{ headers = { ["X-Sandbox-Fault"] = "delay=20" } }
      end)
      caller = c:spawn(function()
        c.jobs:wait_all({ id }, { interval = 0.05, timeout = 30, on_progress = function()
          slow:cancel()
          caller:cancel()
        end })
        error("wait_all returned after its task was cancelled")
      end)
    end)
    assert.is_true(now() - t0 < 5 * SLOW, "took " .. (now() - t0))
    assert_cancelled(slow)
    assert_cancelled(caller)
    local st = scheduler.default():stats()
    assert.equal(0, st.inflight)
    assert.equal(0, st.tasks)
    assert.equal(0, sched.engine():running())
  end))
end)
