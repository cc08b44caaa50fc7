-- ugen.scheduler without network: tasks, the timer heap, errors, cancellation,
-- step() bounds, joins, deadlocks, foreign coroutines. (Transfers, backpressure
-- and the jobs helpers run against the sandbox: spec/integration/scheduler_spec.lua.)
local scheduler = require("ugen").scheduler
local sched = require("ugen").scheduler
local timer_heap = require "ugen.runtime.timer_heap"
local transfers = require "ugen.runtime.transfers"
local errors = require "ugen.errors"

local now = sched.now

local function quiet() return scheduler.new{ on_error = false } end

describe("ugen.scheduler (unit)", function()
  it("run passes arguments and returns the function's results", function()
    local S = quiet()
    local a, b, c = S:run(function(x, y) return x + y, "two", nil end, 40, 2)
    assert.equal(42, a)
    assert.equal("two", b)
    assert.is_nil(c)
    assert.equal(0, S:tasks())
  end)

  it("the module run uses the default scheduler and waits for spawned tasks", function()
    local done = {}
    local r = scheduler.run(function()
      for i = 1, 5 do scheduler.spawn(function() scheduler.sleep(0.01 * i); done[#done + 1] = i end) end
      return "main"
    end)
    assert.equal("main", r)
    assert.same({ 1, 2, 3, 4, 5 }, done)
    assert.equal(0, scheduler.default():tasks())
  end)

  it("timers fire in deadline order, equal deadlines in FIFO order, concurrently", function()
    local S = quiet()
    local order = {}
    local t0 = now()
    S:run(function()
      local delays = { 0.30, 0.10, 0.20, 0.10, 0.05, 0.20 }
      for i, d in ipairs(delays) do
        S:spawn(function() scheduler.sleep(d); order[#order + 1] = i end)
      end
    end)
    local wall = now() - t0
    assert.same({ 5, 2, 4, 3, 6, 1 }, order)
    -- concurrent: about the longest sleep (0.3), far below the sum (0.95)
    assert.is_true(wall >= 0.29, tostring(wall))
    assert.is_true(wall < 0.8, tostring(wall))
  end)

  it("the timer heap pops in (time, sequence) order", function()
    local h = { n = 0 }
    local rnd = 12345
    local items = {}
    for i = 1, 500 do
      rnd = (rnd * 1103515245 + 12345) % 2147483648
      local e = { at = rnd % 37, seq = i }
      items[#items + 1] = e
      timer_heap.push(h, e)
    end
    table.sort(items, function(a, b) return a.at < b.at or (a.at == b.at and a.seq < b.seq) end)
    for i = 1, #items do assert.equal(items[i], timer_heap.pop(h)) end
    assert.is_nil(timer_heap.pop(h))
  end)

  it("timer_heap.add numbers entries: equal deadlines pop in the order they were added", function()
    local h = timer_heap.new()
    local a = timer_heap.add(h, { name = "a" }, 5)
    local b = timer_heap.add(h, { name = "b" }, 2)
    local c = timer_heap.add(h, { name = "c" }, 5)
    local d = timer_heap.add(h, { name = "d" }, 2)
    assert.equal(b, h[1])
    assert.same({ b, d, a, c }, { timer_heap.pop(h), timer_heap.pop(h), timer_heap.pop(h), timer_heap.pop(h) })
    assert.equal(0, h.n)
    assert.is_nil(h[1])
  end)

  it("tasks start in spawn order; a bare coroutine.yield() passes the turn", function()
    local S = quiet()
    local log = {}
    S:run(function()
      for _, name in ipairs{ "a", "b", "c" } do
        S:spawn(function()
          for round = 1, 3 do
            log[#log + 1] = name .. round
            coroutine.yield()
          end
        end)
      end
    end)
    assert.equal("a1 b1 c1 a2 b2 c2 a3 b3 c3", table.concat(log, " "))
  end)

  it("an error in one task is reported with a traceback and does not stop the others", function()
    local seen = {}
    local S = scheduler.new{ on_error = function(err, task, tb)
      seen[#seen + 1] = { err = err, task = task, tb = tb }
    end }
    local finished = 0
    local bad
    local function explode() error("kaboom in task") end
    S:run(function()
      for _ = 1, 3 do S:spawn(function() scheduler.sleep(0.05); finished = finished + 1 end) end
      bad = S:spawn(function() scheduler.sleep(0.01); explode() end)
    end)
    assert.equal(3, finished)
    assert.equal(1, #seen)
    assert.equal(bad, seen[1].task)
    assert.matches("kaboom in task", seen[1].err)
    assert.matches("stack traceback", seen[1].tb)
    assert.matches("explode", seen[1].tb)
    assert.equal("failed", bad:status())
    local ok, err, tb = bad:result()
    assert.is_false(ok)
    assert.matches("kaboom", err)
    assert.equal(seen[1].tb, tb)
  end)

  it("the default on_error prints the traceback to stderr", function()
    local S = scheduler.new()
    local real = io.stderr
    local out = {}
    io.stderr = { -- luacheck: ignore 122
      write = function(_, ...) for _, s in ipairs{ ... } do out[#out + 1] = tostring(s) end end }
    local ok, perr = pcall(S.run, S, function()
      S:spawn(function() error("printed failure") end)
    end)
    io.stderr = real -- luacheck: ignore 122
    assert.is_true(ok, tostring(perr))
    local text = table.concat(out)
    assert.matches("printed failure", text)
    assert.matches("stack traceback", text)
  end)

  it("an error in the main function cancels the others and is raised by run", function()
    local S = quiet()
    local sibling
    local t0 = now()
    local ok, err = pcall(S.run, S, function()
      sibling = S:spawn(function() scheduler.sleep(30) end)
      scheduler.sleep(0.02)
      error("main broke")
    end)
    assert.is_false(ok)
    assert.matches("main broke", err)
    assert.equal("cancelled", sibling:status())
    assert.is_true(now() - t0 < 5)
    assert.equal(0, S:tasks())
  end)

  it("cancel wakes a sleeping task with an error of kind cancelled", function()
    local S = quiet()
    local victim, after
    local t0 = now()
    S:run(function()
      victim = S:spawn(function() scheduler.sleep(30); after = true end)
      scheduler.sleep(0.05)
      assert.equal("waiting", victim:status())
      assert.is_true(victim:cancel())
      assert.is_true(victim:cancel())   -- idempotent while it unwinds
    end)
    assert.is_nil(after)
    assert.equal("cancelled", victim:status())
    local ok, err = victim:result()
    assert.is_false(ok)
    assert.is_true(errors.is(err, "cancelled"))
    assert.equal("CANCELLED", err.code)
    assert.is_false(victim:cancel())     -- finished
    assert.is_true(now() - t0 < 5)       -- its 30 s timer did not hold the scheduler
  end)

  it("a task that was never started is cancelled without running", function()
    local S = quiet()
    local ran = false
    local t = S:spawn(function() ran = true end)
    assert.equal("ready", t:status())
    assert.is_true(t:cancel())
    assert.equal("cancelled", t:status())
    assert.equal(0, S:tasks())
    S:run(function() end)
    assert.is_false(ran)
  end)

  if _VERSION == "Lua 5.1" and type(jit) ~= "table" then
    pending("a cancelled task that catches the error gets it again at its next wait")  -- spec/allowed_pending.lua
  else
    it("a cancelled task that catches the error gets it again at its next wait", function()
      local S = quiet()
      local caught = {}
      local t
      S:run(function()
        t = S:spawn(function()
          local ok, e = pcall(scheduler.sleep, 30)
          caught[1] = (not ok) and e.kind
          ok, e = pcall(scheduler.sleep, 30)
          caught[2] = (not ok) and e.kind
          return "survived"
        end)
        scheduler.sleep(0.02)
        t:cancel()
      end)
      assert.same({ "cancelled", "cancelled" }, caught)
      assert.equal("done", t:status())
      assert.same({ true, "survived" }, { t:result() })
    end)
  end

  it("step(0) never blocks, step(t) waits at most t, and both advance timers", function()
    local S = quiet()
    local woke = false
    S:spawn(function() scheduler.sleep(0.4); woke = true end)
    local worst, n = 0, 0
    local t0 = now()
    while now() - t0 < 0.15 do
      local a = now()
      assert.equal(1, S:step(0))
      local d = now() - a
      if d > worst then worst = d end
      n = n + 1
    end
    assert.is_true(n > 10)
    -- blocking would mean waiting for the 0.4 s timer
    assert.is_true(worst < 0.2, "step(0) took " .. worst .. " s")
    -- step(0.05) returns after about 0.05 s while the timer is further away
    local a = now()
    S:step(0.05)
    local d = now() - a
    assert.is_true(d >= 0.04 and d < 0.3, tostring(d))
    assert.is_false(woke)
    -- a long step returns at the timer, not at its own timeout
    a = now()
    while S:step(5) > 0 do end
    d = now() - a
    assert.is_true(woke)
    assert.is_true(d < 1, tostring(d))
    assert.equal(0, S:step(0))
  end)

  it("a host's step spends a few ms on tasks and leaves the rest ready, in order: 40 tasks of 1 ms each "
     .. "do not make one 40 ms frame (issue 14 item 4)", function()
    local S = quiet()
    local c = require("ugen").new{ base_url = "http://127.0.0.1:9/api/v1", runtime = S:runtime() }
    local order = {}
    local function busy(s) local t = now() + s; while now() < t do end end
    for i = 1, 40 do
      c:spawn(function() busy(0.001); order[#order + 1] = i end)
    end
    local steps, worst, next_in = 0, 0, 0
    while next_in ~= nil do
      local a = now()
      next_in = c:step(0)
      local d = now() - a
      if d > worst then worst = d end
      steps = steps + 1
      -- tasks still ready: step says "at once"
      if next_in ~= nil and #order < 40 then assert.equal(0, next_in) end
      assert.is_true(steps < 100, "steps " .. steps)
    end
    assert.equal(40, #order)
    for i = 1, 40 do assert.equal(i, order[i]) end
    -- one step runs tasks for about its budget (plus the task that crosses it, and one more
    -- after its poll): with 1 ms tasks, about 6; a loaded VM may stretch one step, never to 40 ms
    assert.is_true(steps >= 5, "all 40 tasks ran in " .. steps .. " steps")
    assert.is_true(worst < 0.03, ("a step took %.1f ms"):format(worst * 1000))
    S:close()
  end)

  it("step() with nothing to do returns 0 at once", function()
    local S = quiet()
    local a = now()
    assert.equal(0, S:step(10))
    assert.is_true(now() - a < 0.5)
    assert.equal(0, scheduler.step(10) >= 0 and 0 or 1)
  end)

  it("join waits for a task from another task and from the main thread", function()
    local S = quiet()
    local r = S:run(function()
      local t = S:spawn(function(x) scheduler.sleep(0.02); return x * 3 end, 5)
      local ok, v = t:join()
      assert.is_true(ok)
      return v
    end)
    assert.equal(15, r)
    local t = S:spawn(function() scheduler.sleep(0.02); return "outside" end)
    assert.same({ true, "outside" }, { t:join() })
    local bad = S:spawn(function() error("joined failure") end)
    local ok, err = bad:join()
    assert.is_false(ok)
    assert.matches("joined failure", err)
  end)

  it("tasks waiting for each other are reported as a deadlock", function()
    local S = quiet()
    local ok, err = pcall(S.run, S, function()
      local a, b
      a = S:spawn(function() scheduler.sleep(0); b:join() end)
      b = S:spawn(function() a:join() end)
    end)
    assert.is_false(ok)
    assert.matches("deadlock", err)
    assert.equal(0, S:tasks())
  end)

  it("outside a scheduler sleep blocks, even in a plain coroutine, as before", function()
    local co = coroutine.create(function()
      local a = now()
      scheduler.sleep(0.05)
      return now() - a
    end)
    local ok, d = coroutine.resume(co)
    assert.is_true(ok)
    assert.equal("dead", coroutine.status(co))
    assert.is_true(d >= 0.045, tostring(d))
  end)

  it("inside a task, a coroutine the scheduler does not own blocks instead of yielding", function()
    local S = quiet()
    local r = S:run(function()
      local gen = coroutine.wrap(function()
        scheduler.sleep(0.03)       -- must not yield into the generator's resumer
        coroutine.yield("first")
        return "second"
      end)
      return gen() .. "," .. gen()
    end)
    assert.equal("first,second", r)
  end)

  it("a scheduler is current only while it steps; outside it the runtime blocks", function()
    local S = quiet()
    local inside
    S:run(function()
      inside = scheduler.current() == S
      return nil
    end)
    assert.is_true(inside)
    assert.is_nil(scheduler.current())
    -- outside its tasks the runtime blocks: sleep in a plain coroutine does not yield
    local co = coroutine.create(function() sched.sleep(0.001); return "blocked" end)
    assert.same({ true, "blocked" }, { coroutine.resume(co) })
  end)

  it("run inside a task just calls the function; step from a task is refused", function()
    local S = quiet()
    local r = S:run(function()
      local inner = S:run(function(x) scheduler.sleep(0.001); return x + 1 end, 1)
      local ok, err = pcall(S.step, S, 0)
      return inner, ok, err
    end)
    assert.equal(2, r)
    local _, ok, err = S:run(function()
      local ok2, err2 = pcall(S.step, S, 0)
      return 0, ok2, err2
    end)
    assert.is_false(ok)
    assert.matches("inside a task", err)
  end)

  it("raises on bad arguments, naming them", function()
    local S = quiet()
    assert.has_error(function() S:spawn(42) end, "bad argument #1 to 'spawn' (function expected, got number)")
    assert.has_error(function() scheduler.spawn() end, "bad argument #1 to 'spawn' (function expected, got nil)")
    assert.has_error(function() scheduler.run("x") end, "bad argument #1 to 'run' (function expected, got string)")
    assert.has_error(function() S:step(-1) end)
    assert.has_error(function() scheduler.step("soon") end)
    assert.has_error(function() scheduler.sleep("1") end, "bad argument #1 to 'sleep' (number expected, got string)")
    assert.has_error(function() scheduler.new{ max_concurrency = 0 } end)
    assert.has_error(function() scheduler.new{ max_concurrency = 1.5 } end)
    assert.has_error(function() scheduler.new{ bogus = 1 } end, "bad argument #1 to 'new' (unknown option 'bogus')")
    assert.has_error(function() scheduler.new{ on_error = "print" } end)
    assert.has_error(function() scheduler.new(5) end)
  end)

  it("origins are keyed by scheme, host and port", function()
    assert.equal("http://127.0.0.1:8080", transfers.origin_of("http://127.0.0.1:8080/api/v1/jobs?x=1"))
    assert.equal("https://api.u-gen.ai:443", transfers.origin_of("HTTPS://API.U-GEN.AI/api/v1"))
    assert.equal("https://api.u-gen.ai:443", transfers.origin_of("https://user:pw@api.u-gen.ai:443/x"))
    assert.equal("?", transfers.origin_of(nil))
  end)

  it("close cancels every task and is idempotent; a closed scheduler refuses tasks", function()
    local S = quiet()
    local t = S:spawn(function() scheduler.sleep(30) end)
    S:step(0)
    assert.equal("waiting", t:status())
    S:close()
    assert.equal("cancelled", t:status())
    S:close()
    assert.has_error(function() S:spawn(function() end) end, "ugen.scheduler: the scheduler is closed")
  end)

  it("stats count tasks and resumes", function()
    local S = quiet()
    S:run(function() for _ = 1, 4 do S:spawn(function() scheduler.sleep(0) end) end end)
    local st = S:stats()
    assert.equal(5, st.spawned)
    assert.equal(5, st.finished)
    assert.is_true(st.resumes >= 9)
    assert.equal(0, st.tasks)
    assert.equal("auto", st.max_concurrency)
    assert.matches("^ugen%.scheduler%(tasks=0, inflight=0, queued=0, max_concurrency=auto%)$", tostring(S))
  end)

  it("max_concurrency is a number or \"auto\" (by protocol: 64 over HTTP/1.1, 1024 over HTTP/2)", function()
    assert.equal(64, scheduler.DEFAULT_MAX_CONCURRENCY)
    assert.equal(1024, scheduler.DEFAULT_MAX_CONCURRENCY_H2)
    local S = scheduler.new{ max_concurrency = 8, on_error = false }
    assert.equal(8, S:stats().max_concurrency)
    assert.matches("max_concurrency=8%)$", tostring(S))
    S:configure{ max_concurrency = "auto" }
    assert.equal("auto", S:stats().max_concurrency)
    S:configure{ max_concurrency = 100 }
    assert.equal(100, S:stats().max_concurrency)
    assert.equal("auto", scheduler.new{ max_concurrency = "auto" }:stats().max_concurrency)
    assert.has_error(function() scheduler.new{ max_concurrency = "many" } end,
      "bad argument #1 to 'new' (max_concurrency must be an integer 1..100000 or \"auto\", got many)")
    S:close()
  end)
end)
