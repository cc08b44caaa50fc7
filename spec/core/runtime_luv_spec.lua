-- ugen.runtime.luv: a real libuv loop (lua-luv) drives the libcurl scheduler's
-- tasks: uv poll handles on the engine's sockets and one uv timer, real
-- transfers to the loopback server spec/support/httpd.lua. Nothing calls step:
-- uv.run() returns when the tasks are done and the SDK holds no handle.
-- Timing bounds are multiplied by UGEN_TIME_FACTOR (as in engine_loop_spec).
local SLOW = tonumber(os.getenv("UGEN_TIME_FACTOR")) or 1
local uv = require "luv"
local ugen = require "ugen"
local luv = require "ugen.runtime.luv"
local httpd = require "support.httpd_ctl"

local now = ugen.scheduler.now

-- uv.run() with a guard: -> seconds it ran, true when the guard had to stop it
local function run(limit)
  local stopped = false
  local guard = uv.new_timer()
  guard:start(math.floor((limit or 10) * SLOW * 1000), 0, function()
    stopped = true
    uv.stop()
  end)
  guard:unref()
  local t0 = now()
  uv.run()
  guard:close()
  uv.run("nowait")
  return now() - t0, stopped
end

local function get(base, path)
  return { method = "GET", url = base .. path, headers = {}, idempotent = true, timeout = 10 }
end

describe("ugen.runtime.luv (lua-luv drives client:spawn)", function()
  local srv
  lazy_setup(function() srv = httpd.start() end)
  lazy_teardown(function() if srv then srv.stop() end end)

  it("5 tasks make their requests at once; uv.run() alone drives them and returns when they end", function()
    local rt = luv.new(uv)
    local results = {}
    for i = 1, 5 do
      rt.spawn(function() results[i] = assert(rt.perform(get(srv.base, "/slow?ms=300"))) end)
    end
    assert.same({}, results)                 -- spawn only queues: the loop runs them
    local cpu0 = os.clock()
    local elapsed, stopped = run()
    local cpu = os.clock() - cpu0
    assert.is_false(stopped, "uv.run() did not return by itself")
    for i = 1, 5 do
      assert.equal(200, results[i].status)
      assert.equal("slow", results[i].body)
    end
    assert.is_true(elapsed >= 0.29 and elapsed < 0.3 + 0.6 * SLOW, ("took %.3f s"):format(elapsed))
    assert.is_true(cpu < 0.1 * SLOW, ("%.3f s CPU for a 0.3 s wait"):format(cpu))
  end)

  it("sleep in a task is a uv timer; join_any waits in a task for the first of several", function()
    local rt = luv.new(uv)
    local order, first, slept = {}, nil, nil
    rt.spawn(function()
      local t0 = now()
      local a = rt.spawn(function() rt.sleep(0.3); order[#order + 1] = "a"; return "a" end)
      local b = rt.spawn(function() rt.sleep(0.1); order[#order + 1] = "b"; return "b" end)
      local h, ok, v = rt.join_any({ a, b })
      first = { h == b, ok, v }
      rt.sleep(0.05)
      slept = now() - t0
      assert(rt.join_any({ a }) == a)
    end)
    local elapsed, stopped = run()
    assert.is_false(stopped)
    assert.same({ true, true, "b" }, first)
    assert.same({ "b", "a" }, order)
    assert.is_true(slept >= 0.149 and slept < 0.15 + 0.2 * SLOW, ("%.3f s"):format(slept))
    assert.is_true(elapsed >= 0.29 and elapsed < 0.3 + 0.3 * SLOW, ("%.3f s"):format(elapsed))
  end)

  it("with opts.schedule every task body, a download's on_progress and a task it spawns run inside it", function()
    local inside, outside_runs, scheduled = false, 0, 0
    -- like vim.schedule: runs cb later from the loop, in a context of its own
    local function schedule(cb)
      scheduled = scheduled + 1
      local t = uv.new_timer()
      t:start(0, 0, function()
        t:close()
        inside = true
        cb()
        inside = false
      end)
    end
    local rt = luv.new(uv, { schedule = schedule })
    local function here() if not inside then outside_runs = outside_runs + 1 end end
    local progress, res, child, child_ran = 0, nil, nil, false
    rt.spawn(function()
      here()
      local req = get(srv.base, "/bytes?n=300000")
      req.on_progress = function()
        here()
        progress = progress + 1
        -- spawned from an engine callback (no task runs): the loop runs it too
        if not child then child = rt.spawn(function() here(); child_ran = true end) end
        return true
      end
      res = assert(rt.perform(req))
      here()
      rt.sleep(0.05)
      here()
    end)
    local _, stopped = run()
    assert.is_false(stopped)
    assert.equal(300000, #res.body)
    assert.is_true(progress > 0)
    assert.is_true(child_ran)
    assert.equal(0, outside_runs)
    assert.is_true(scheduled > 0)
  end)

  it("cancel from another task drops the transfer at once; uv.run() returns", function()
    local rt = luv.new(uv)
    local slow
    rt.spawn(function()
      slow = rt.spawn(function() rt.perform(get(srv.base, "/slow?ms=5000")) end)
      rt.sleep(0.1)
      rt.cancel(slow)
    end)
    local elapsed, stopped = run()
    assert.is_false(stopped)
    assert.equal("cancelled", slow:status())
    assert.is_true(elapsed < 0.1 + 0.5 * SLOW, ("%.3f s"):format(elapsed))
  end)

  it("a plain (blocking) call from a loop callback works, and the tasks it moved go on afterwards", function()
    local rt = luv.new(uv)
    local results, plain = {}, nil
    for i = 1, 3 do
      rt.spawn(function() results[i] = assert(rt.perform(get(srv.base, "/slow?ms=600"))) end)
    end
    -- outside any task, while the tasks wait for their answers (libcurl's early
    -- timers have passed: the loop's next wake is far away): blocks on the
    -- engine, which finishes the tasks' transfers meanwhile
    local t = uv.new_timer()
    uv.update_time()
    t:start(400, 0, function()
      t:close()
      plain = assert(rt.perform(get(srv.base, "/slow?ms=400")))
    end)
    local elapsed, stopped = run(5)
    assert.is_false(stopped, "the tasks never learnt that their transfers ended")
    assert.equal("slow", plain.body)
    for i = 1, 3 do assert.equal("slow", results[i].body) end
    assert.is_true(elapsed >= 0.79 and elapsed < 0.8 + 0.5 * SLOW, ("%.3f s"):format(elapsed))
  end)

  it("a pass gives the loop back after ~4 ms of task work; the tasks still ready run at its next iterations", function()
    local rt = luv.new(uv)
    local iteration = 0
    local check = uv.new_check()
    check:start(function() iteration = iteration + 1 end)
    check:unref()
    local ran_in = {}
    for i = 1, 20 do
      rt.spawn(function()
        ran_in[i] = iteration
        local t = now() + 0.002             -- 2 ms of work before the task's first wait
        repeat until now() >= t
        rt.sleep(0.01)
      end)
    end
    local _, stopped = run()
    check:close()
    assert.is_false(stopped)
    local per, iterations = {}, 0
    for i = 1, 20 do
      local it_ = ran_in[i]
      if not per[it_] then iterations = iterations + 1 end
      per[it_] = (per[it_] or 0) + 1
    end
    for it_, n in pairs(per) do assert.is_true(n <= 3, ("%d tasks ran in loop iteration %d"):format(n, it_)) end
    assert.is_true(iterations >= 7, ("the 20 tasks ran in %d loop iterations"):format(iterations))
    for i = 2, 20 do assert.is_true(ran_in[i] >= ran_in[i - 1], "tasks ran out of spawn order") end
  end)

  it("an error in a task goes to on_error, never into the loop", function()
    local seen
    local rt = luv.new(uv, { on_error = function(err) seen = tostring(err) end })
    rt.spawn(function() rt.sleep(0.01); error("boom", 0) end)
    local _, stopped = run()
    assert.is_false(stopped)
    assert.equal("boom", seen)
  end)

  it("a client on it: requests in tasks, no step, arguments checked", function()
    local client = ugen.new{ api_key = "k", base_url = srv.base, runtime = luv.new(uv) }
    assert.equal("luv", client.runtime.name)
    local echoed
    client:spawn(function() echoed = assert(client:request("GET", "/echo", { a = "1" })) end)
    local _, stopped = run()
    assert.is_false(stopped)
    assert.equal("GET", echoed.method)
    assert.has_error(function() client:step(0) end,
      "ugen: client:step needs a runtime with 'step' (this client's runtime 'luv' has none)")
    assert.has_error(function() luv.new() end,
      "bad argument #1 to 'new' (luv module expected (vim.loop, require \"luv\", luvit's require \"uv\"), got nil)")
    assert.has_error(function() luv.new(uv, { bogus = 1 }) end, "bad argument #2 to 'new' (unknown option 'bogus')")
    assert.has_error(function() luv.new(uv, { schedule = 1 }) end,
      "bad argument #2 to 'new' (schedule must be a function)")
    local ok, err = pcall(function() luv.new(uv, { max_concurrency = 0 }) end)
    assert.is_false(ok)
    assert.matches("^[^:]*runtime_luv_spec%.lua:%d+: bad argument #2 to 'new' %(max_concurrency must be", err)
    assert.has_error(function() luv.new(uv).spawn(1) end, "bad argument #1 to 'spawn' (function expected, got number)")
  end)

  it("ugen.new picks it in Neovim (a vim global with vim.loop), unless told otherwise", function()
    local saved_vim, saved_mod = rawget(_G, "vim"), package.loaded["ugen.runtime.luv"]
    finally(function()
      rawset(_G, "vim", saved_vim)
      package.loaded["ugen.runtime.luv"] = saved_mod
    end)
    package.loaded["ugen.runtime.luv"] = nil        -- a fresh module: its editor runtime is per process
    rawset(_G, "vim", { loop = uv, schedule = function(cb) uv.new_timer():start(0, 0, cb) end,
                        notify = function() end, log = { levels = { ERROR = 4 } } })
    local c = ugen.new{ api_key = "k", base_url = srv.base }
    assert.equal("luv", c.runtime.name)
    assert.equal(c.runtime, ugen.new{ api_key = "k" }.runtime)   -- one per editor
    assert.equal("curl", ugen.new{ api_key = "k", runtime = "curl" }.runtime.name)
    local own = function() return { status = 200, headers = {}, body = "{}" } end
    local t = ugen.new{ api_key = "k", base_url = srv.base, transport = own }
    assert.equal("luv", t.runtime.name)
    assert.equal(own, t.runtime.perform)
    local echoed
    c:spawn(function() echoed = assert(c:request("GET", "/echo")) end)
    local _, stopped = run()
    assert.is_false(stopped)
    assert.equal("GET", echoed.method)
  end)
end)
