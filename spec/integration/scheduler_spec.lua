-- ugen.scheduler + the jobs helpers against the real sandbox (nginx): many
-- requests in flight on one multi handle, ordering, backpressure and connection
-- reuse, cancellation of an in-flight transfer, step(0) never blocking while
-- transfers run, retry backoff yielding, wait_all / wait_any / as_finished with
-- deadlines and progress, errors in one task, use outside ugen.run.
local S = require "support.sandbox"
local ugen = require "ugen"
local scheduler = require("ugen").scheduler
local sched = require("ugen").scheduler
local errors = require "ugen.errors"

local now = sched.now

local function client(slug, extra)
  local info = S.info()
  local o = { base_url = info.base_url, api_key = S.tenant[slug or "default"].api_key,
              rng = function() return 0 end, timeout = 15 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return ugen.new(o)
end

local function delay(s, extra)
  return { headers = { ["X-Sandbox-Fault"] = "delay=" .. s .. (extra or "") } }
end

local JOB = { product_name = "Mug", product_image_url = "https://example.com/mug.jpg", segment_count = 1 }
local function job_params(over)
  local p = {}
  for k, v in pairs(JOB) do p[k] = v end
  for k, v in pairs(over or {}) do p[k] = v end
  return p
end

-- established client-side TCP connections to `port` -> set of local ports
local function client_conns(port)
  local set, n = {}, 0
  for _, file in ipairs{ "/proc/net/tcp", "/proc/net/tcp6" } do
    local f = io.open(file)
    if f then
      for line in f:lines() do
        local lport, rport, st = line:match("^%s*%d+:%s+%x+:(%x+)%s+%x+:(%x+)%s+(%x+)")
        if lport and tonumber(rport, 16) == port and st == "01" then
          local lp = tonumber(lport, 16)
          if not set[lp] then set[lp] = true; n = n + 1 end
        end
      end
      f:close()
    end
  end
  return set, n
end

describe("ugen.scheduler (sandbox)", function()
  setup(function()
    S.info()
    S.reset(true)
  end)

  it("keeps many requests in flight on one engine and resumes in completion order", function()
    local c = client()
    local order = {}
    local Sx = scheduler.new{ on_error = false }
    local t0 = now()
    Sx:run(function()
      for i, d in ipairs{ 0.6, 0.2, 0.4 } do
        Sx:spawn(function()
          assert(c.credits:balance(delay(d)))
          order[#order + 1] = i
        end)
      end
    end)
    assert.same({ 2, 3, 1 }, order)
    local wall = now() - t0
    assert.is_true(wall < 1.1, "sum of delays is 1.2 s; took " .. wall)

    -- 60 slow requests at once: about one delay, not sixty
    local n, ok = 60, 0
    t0 = now()
    Sx:run(function()
      for _ = 1, n do
        Sx:spawn(function()
          local r, err = c.credits:balance(delay(0.3))
          assert(r, tostring(err))
          ok = ok + 1
        end)
      end
    end)
    wall = now() - t0
    assert.equal(n, ok)
    assert.is_true(wall < 0.3 * n / 6, "60 x 0.3 s requests took " .. wall .. " s")
    local st = Sx:stats()
    assert.is_true(st.peak_inflight >= 30, "peak in flight " .. st.peak_inflight)
    assert.equal(0, st.inflight)
    Sx:close()
  end)

  it("max_concurrency queues extra requests and reuses connections", function()
    local c = client()
    local port = S.info().port
    local before = client_conns(port)
    local Sx = scheduler.new{ max_concurrency = 4, on_error = false }
    local seen, max_open = {}, 0
    local function sample()
      local set, count = client_conns(port)
      local mine = 0
      for lp in pairs(set) do
        if not before[lp] then seen[lp] = true; mine = mine + 1 end
      end
      if mine > max_open then max_open = mine end
      return count
    end
    local t0 = now()
    local done = 0
    Sx:run(function()
      for _ = 1, 16 do
        Sx:spawn(function()
          assert(c.credits:balance(delay(0.15)))
          done = done + 1
        end)
      end
      -- a sampler task: every socket that carries a request is open for 0.15 s
      while done < 16 do
        sample()
        scheduler.sleep(0.02)
      end
    end)
    local wall = now() - t0
    assert.equal(16, done)
    local st = Sx:stats()
    assert.equal(4, st.peak_host_inflight)
    assert.is_true(st.peak_queued >= 8, "peak queued " .. st.peak_queued)
    -- 16 requests, 4 at a time, 0.15 s each: at least 4 rounds
    assert.is_true(wall >= 0.55, "took " .. wall)
    -- never more than 4 sockets, and the same few carried all 16 requests
    local distinct = 0
    for _ in pairs(seen) do distinct = distinct + 1 end
    assert.is_true(max_open <= 4, "open connections " .. max_open)
    assert.is_true(distinct >= 1 and distinct <= 4, "distinct client ports " .. distinct)
    Sx:close()
  end)

  it("cancel closes the in-flight transfer and wakes the task with kind cancelled", function()
    local c = client()
    local Sx = scheduler.new{ on_error = false }
    local victim, other_done
    local t0 = now()
    Sx:run(function()
      victim = Sx:spawn(function() return c.credits:balance(delay(5)) end)
      Sx:spawn(function() assert(c.credits:balance(delay(0.2))); other_done = now() - t0 end)
      scheduler.sleep(0.1)
      assert.equal(2, Sx:stats().inflight)
      assert.is_true(victim:cancel())
      assert.equal(1, Sx:stats().inflight)
    end)
    local wall = now() - t0
    assert.equal("cancelled", victim:status())
    local ok, err = victim:result()
    assert.is_false(ok)
    assert.is_true(errors.is(err, "cancelled"))
    assert.is_number(other_done)
    assert.is_true(wall < 2, "the 5 s request was not abandoned: " .. wall)
    assert.equal(0, Sx:stats().inflight)
    -- the engine is still good for new work
    assert.is_table(Sx:run(function() return c.credits:balance() end))
    Sx:close()
  end)

  it("an error in one task does not disturb the requests of the others", function()
    local c = client()
    local reported = {}
    local Sx = scheduler.new{ on_error = function(err) reported[#reported + 1] = err end }
    local okn = 0
    Sx:run(function()
      for i = 1, 6 do
        Sx:spawn(function()
          assert(c.credits:balance(delay(0.1 * (i % 3))))
          if i == 3 then error("task three failed after its request") end
          assert(c.credits:balance())
          okn = okn + 1
        end)
      end
    end)
    assert.equal(5, okn)
    assert.equal(1, #reported)
    assert.matches("task three failed", reported[1])
    Sx:close()
  end)

  it("client:step(0) never blocks while requests are in flight (host loop)", function()
    local c = client()
    local results = {}
    for i = 1, 10 do
      c:spawn(function() results[i] = assert(c.credits:balance(delay(0.5))) end)
    end
    local worst, steps, next_in = 0, 0, 0
    local t0 = now()
    while next_in ~= nil and now() - t0 < 10 do
      local a = now()
      next_in = c:step(0)     -- seconds until the SDK next needs to run, nil when idle
      local d = now() - a
      if d > worst then worst = d end
      steps = steps + 1
      if next_in then
        assert.is_true(next_in >= 0 and next_in <= 3600, tostring(next_in))
      end
      require("ugen.core").sleep(0.002)  -- the rest of the "frame"
    end
    local wall = now() - t0
    assert.equal(10, #results)
    assert.is_true(steps > 20, "steps " .. steps)
    -- blocking would mean waiting for a 0.5 s response
    assert.is_true(worst < 0.25, "step(0) took " .. worst .. " s with 0.5 s requests in flight")
    assert.is_true(wall < 3, tostring(wall))
    assert.is_nil(c:step(0))
  end)

  it("client:step returns at most 10 ms while a request is in flight: a host that waits what step returns "
     .. "(mpv's timer) reads a 0.1 s answer within ~10 ms of its arrival, not at libcurl's next deadline", function()
    local c = client()
    local core = require "ugen.core"
    assert(c.credits:balance())              -- a warm connection: the answer's time is the server's delay
    local got, t0 = nil, now()
    c:spawn(function() assert(c.credits:balance(delay(0.1))); got = now() - t0 end)
    local next_in, waits, longest = 0, 0, 0
    while next_in ~= nil and now() - t0 < 10 do
      next_in = c:step(0)
      if next_in then
        if got == nil and next_in > longest then longest = next_in end
        waits = waits + 1
        core.sleep(next_in)                  -- the host's timer, re-armed with what step returned
      end
    end
    assert.is_number(got)
    assert.is_true(longest <= 0.0101, "step returned " .. longest .. " s while the request was in flight")
    -- 0.1 s of server delay; step's bound keeps the host's lateness to one 10 ms wait (+ a loaded VM's slack)
    assert.is_true(got < 0.1 + 0.06, ("the answer was read after %.3f s (%d waits)"):format(got, waits))
  end)

  it("is wired into ugen and the client", function()
    local c = client()
    assert.equal(scheduler.run, ugen.run)
    assert.equal(scheduler, ugen.scheduler)
    assert.is_function(c.jobs.wait_all)
    assert.is_function(c.jobs.wait_any)
    assert.is_function(c.jobs.as_finished)
    assert.is_true(errors.is_kind("cancelled"))
    local r = ugen.run(function()
      local t = c:spawn(function(x) return c.credits:balance(), x end, "arg")
      local ok, bal, x = t:join()
      return ok and type(bal) == "table" and x
    end)
    assert.equal("arg", r)
    assert.has_error(function() c:spawn("nope") end, "bad argument #1 to 'spawn' (function expected, got string)")
    assert.has_error(function() c:step(-1) end)
    assert.has_error(function() c.step(nil, 0) end, "ugen: call client:step(...) with a colon")
  end)

  it("retry backoff (Retry-After) sleeps on the timer heap while other tasks work", function()
    local c = client()
    local Sx = scheduler.new{ on_error = false }
    local key = "sched-ra-" .. tostring(now())
    local log = {}
    local t0 = now()
    Sx:run(function()
      Sx:spawn(function()
        local r, err = c.credits:balance{ headers = {
          ["X-Sandbox-Fault"] = "status=503;retry_after=1;count=1;key=" .. key } }
        assert(r, tostring(err))
        log[#log + 1] = { "retried", now() - t0 }
      end)
      Sx:spawn(function()
        for i = 1, 3 do
          assert(c.credits:balance())
          log[#log + 1] = { "quick" .. i, now() - t0 }
        end
      end)
    end)
    assert.equal("quick1", log[1][1])
    assert.equal("quick3", log[3][1])
    assert.equal("retried", log[4][1])
    assert.is_true(log[3][2] < 0.9, "quick requests waited for the backoff: " .. log[3][2])
    assert.is_true(log[4][2] >= 0.95, "retry came before Retry-After: " .. log[4][2])
  end)

  it("jobs:wait_all awaits jobs together, with per-job progress and failures in errs", function()
    S.reset("acme")
    local c = client("acme")
    local ids = {}
    for i = 1, 6 do
      local name = i == 4 and "Mug [fail:generation]" or ("Mug " .. i)
      ids[i] = assert(c.jobs:create(job_params{ product_name = name })).job_id
    end
    local progress = {}
    local jobs, errs = ugen.run(function()
      return c.jobs:wait_all(ids, { interval = 0.05, timeout = 30, on_progress = function(job, id, i)
        assert.equal(ids[i], id)
        assert.equal(id, job.job_id)
        progress[i] = (progress[i] or 0) + 1
      end })
    end)
    for i = 1, 6 do
      assert.is_true((progress[i] or 0) >= 1, "no progress for job " .. i)
      if i == 4 then
        assert.is_nil(jobs[i])
        assert.equal("job_failed", errs[i].kind)
        assert.equal(4, errs[i].index)
        assert.equal(ids[4], errs[i].job_id)
      else
        assert.equal("completed", jobs[i].status)
        assert.is_nil(errs[i])
      end
    end
    assert.equal(0, scheduler.default():tasks())
  end)

  it("a deadline expires for one wait while the others keep going", function()
    local c = client()
    local early = assert(c.jobs:create(job_params{ product_name = "early" })).job_id
    assert(c.jobs:wait(early, { interval = 0.05, timeout = 30 }))
    local late = assert(c.jobs:create(job_params{ product_name = "late" })).job_id
    local fin = {}
    local t0 = now()
    ugen.run(function()
      -- a separate wait with a short deadline, next to a long one on the same job
      c:spawn(function()
        local j, err = c.jobs:wait(late, { interval = 0.05, timeout = 0.1 })
        fin[#fin + 1] = { "short", j, err, now() - t0 }
      end)
      c:spawn(function()
        local j, err = c.jobs:wait(late, { interval = 0.05, timeout = 30 })
        fin[#fin + 1] = { "long", j, err, now() - t0 }
      end)
      -- as_finished with one deadline: the finished job comes out, the other times out
      c:spawn(function()
        local got = {}
        for i, j, err in c.jobs:as_finished({ late, early }, { interval = 0.05, timeout = 0.15 }) do
          got[#got + 1] = { i, j, err }
        end
        fin[#fin + 1] = { "iter", got }
      end)
    end)
    local by = {}
    for _, f in ipairs(fin) do by[f[1]] = f end
    assert.is_nil(by.short[2])
    assert.equal("timeout", by.short[3].kind)
    assert.equal("WAIT_TIMEOUT", by.short[3].code)
    assert.equal("completed", by.long[2].status)
    assert.is_true(by.long[4] > by.short[4])
    local got = by.iter[2]
    assert.equal(2, #got)
    assert.equal(2, got[1][1])                    -- the early job first
    assert.equal("completed", got[1][2].status)
    assert.equal(1, got[2][1])
    assert.equal("timeout", got[2][3].kind)
  end)

  it("wait_any returns the first job to finish and stops polling the rest", function()
    local c = client()
    local done_id = assert(c.jobs:create(job_params{ product_name = "any-done" })).job_id
    assert(c.jobs:wait(done_id, { interval = 0.05, timeout = 30 }))
    local slow = {}
    for i = 1, 3 do slow[i] = assert(c.jobs:create(job_params{ product_name = "any-slow" .. i })).job_id end
    local ids = { slow[1], slow[2], done_id, slow[3] }
    local job, i = ugen.run(function()
      return c.jobs:wait_any(ids, { interval = 0.05, timeout = 30 })
    end)
    assert.equal(3, i)
    assert.equal(done_id, job.job_id)
    assert.equal(0, scheduler.default():tasks())
    -- blocking, outside ugen.run: a failing job first -> nil, err, i
    local bad = assert(c.jobs:create(job_params{ product_name = "any [fail:prepare]" })).job_id
    local j2, err, i2 = c.jobs:wait_any({ bad }, { interval = 0.05, timeout = 30 })
    assert.is_nil(j2)
    assert.equal("job_failed", err.kind)
    assert.equal(1, i2)
    assert.equal(bad, err.job_id)
    assert.equal(0, scheduler.default():tasks())
  end)

  it("as_finished yields every job once in finishing order; closing early stops the polls", function()
    local c = client()
    local ids = {}
    for i = 1, 4 do ids[i] = assert(c.jobs:create(job_params{ product_name = "iter" .. i })).job_id end
    local seen = {}
    for i, job, err in c.jobs:as_finished(ids, { interval = 0.05, timeout = 30 }) do
      assert.is_nil(err)
      assert.equal(ids[i], job.job_id)
      seen[#seen + 1] = i
    end
    table.sort(seen)
    assert.same({ 1, 2, 3, 4 }, seen)
    -- leave after the first one: close() cancels the other polls
    -- leave after the first one (an already finished job): the rest are still running
    local function mixed()
      local list = { ids[1] }
      for i = 2, 3 do list[i] = assert(c.jobs:create(job_params{ product_name = "iter-more" .. i })).job_id end
      return list
    end
    local it = c.jobs:as_finished(mixed(), { interval = 0.05, timeout = 30 })
    assert.equal(1, (it()))       -- one job out, then stop
    assert.is_true(scheduler.default():tasks() > 0)
    it:close()                    -- cancels the other polls
    assert.equal(0, scheduler.default():tasks())
    if _VERSION == "Lua 5.4" then   -- the generic for closes the iterator on break
      local first
      for i in c.jobs:as_finished(mixed(), { interval = 0.05, timeout = 30 }) do -- luacheck: ignore 512
        first = i
        break
      end
      assert.equal(1, first)
      assert.equal(0, scheduler.default():tasks())
    end
  end)

  it("cancelling a task parked in wait_all stops its polls", function()
    local c = client()
    local ids = {}
    for i = 1, 3 do ids[i] = assert(c.jobs:create(job_params{ product_name = "cancel-all" .. i })).job_id end
    local waiter, live_before
    local t0 = now()
    ugen.run(function()
      -- every poll takes 2 s: had they not been cancelled, run would last that long
      waiter = c:spawn(function()
        return c.jobs:wait_all(ids, { interval = 0.05, timeout = 30, headers = delay(2).headers })
      end)
      scheduler.sleep(0.05)
      live_before = scheduler.default():tasks()   -- main + waiter + 3 polls
      waiter:cancel()
    end)
    assert.equal(5, live_before)
    assert.equal("cancelled", waiter:status())
    assert.equal(0, scheduler.default():tasks())
    assert.is_true(now() - t0 < 1.5, "the polls went on after the cancel")
  end)

  it("an error raised by on_progress ends wait_all in the caller", function()
    local c = client()
    local ids = { assert(c.jobs:create(job_params())).job_id, assert(c.jobs:create(job_params())).job_id }
    local ok, err = pcall(c.jobs.wait_all, c.jobs, ids, { interval = 0.05, on_progress = function()
      error("progress bar exploded")
    end })
    assert.is_false(ok)
    assert.matches("progress bar exploded", err)
    assert.equal(0, scheduler.default():tasks())
  end)

  it("outside ugen.run the SDK blocks as before, also inside a plain coroutine", function()
    local c = client()
    local co = coroutine.create(function() return c.credits:balance(delay(0.05)) end)
    local ok, bal = coroutine.resume(co)
    assert.is_true(ok)
    assert.equal("dead", coroutine.status(co))
    assert.is_table(bal)
    -- inside a task, a coroutine the scheduler does not own blocks too, and works
    local r = ugen.run(function()
      local wrapped = coroutine.wrap(function() return c.credits:balance(delay(0.05)) end)
      return wrapped()
    end)
    assert.is_table(r)
  end)

  it("examples/game_loop.lua follows 50 jobs while rendering frames", function()
    S.reset("default")
    local info = S.info()
    local interp = type(jit) == "table" and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
    local cmd = ("UGEN_BASE_URL=%s UGEN_API_KEY=%s UGEN_POLL_INTERVAL=0.1 UGEN_MAX_SECONDS=60 "
      .. "%s examples/game_loop.lua 50 2>&1"):format(S.q(info.base_url), S.q(S.tenant.default.api_key), interp)
    local p = io.popen(cmd)
    local out = p:read("*a")
    p:close()
    local done, n, failed, frames, secs =
      out:match("finished: (%d+)/(%d+) completed, (%d+) failed; (%d+) frames in ([%d.]+) s")
    assert.is_not_nil(done, out)
    assert.equal("50", done)
    assert.equal("50", n)
    assert.equal("0", failed)
    -- it kept rendering: frames at about 60 fps while the jobs ran
    assert.is_true(tonumber(frames) >= tonumber(secs) * 20, out)
    assert.matches("frame%s+%d+%s+tick", out)
  end)

  it("rejects bad arguments to the jobs helpers at the call site", function()
    local c = client()
    assert.has_error(function() c.jobs:wait_all("x") end,
      "bad argument #1 to 'wait_all' (table of job ids expected, got string)")
    assert.has_error(function() c.jobs:wait_all({ "a", 5 }) end,
      "bad argument #1 to 'wait_all' (ids[2]: job id string expected, got number)")
    assert.has_error(function() c.jobs:wait_any({}) end,
      "bad argument #1 to 'wait_any' (at least one job id expected)")
    assert.has_error(function() c.jobs:as_finished({ "a" }, { timeout = -1 }) end,
      "bad argument #2 to 'as_finished' (opts.timeout must be a positive number)")
    assert.has_error(function() c.jobs:wait_all({ "a" }, { bogus = true }) end,
      "bad argument #2 to 'wait_all' (unknown option 'bogus')")
    assert.has_error(function() c.jobs.wait_all({ "a" }) end)
    local jobs, errs = c.jobs:wait_all({})
    assert.same({}, jobs)
    assert.same({}, errs)
  end)
end)
