-- ugen.core engine driven by a foreign event loop: a real libuv loop (lua-luv)
-- watches the engine's sockets (e:changes) with poll handles and its timer
-- (e:timeout) with a uv timer and calls e:act; real transfers go to the
-- loopback server spec/support/httpd.lua. Also: e:run over the same socket
-- API (waits without spinning), mixing e:run / e:request / e:act.
-- Timing bounds are multiplied by UGEN_TIME_FACTOR (scripts/check.sh sets it
-- for the sanitizer and valgrind runs).
local SLOW = tonumber(os.getenv("UGEN_TIME_FACTOR")) or 1
local core = require "ugen.core"
local uv = require "luv"
local httpd = require "support.httpd_ctl"

-- same byte pattern as httpd.lua: byte i (0-based) is (i * 7 + 3) % 251
local function pattern(n)
  local base = {}
  for i = 0, 250 do base[#base + 1] = string.char((i * 7 + 3) % 251) end
  base = table.concat(base)
  return (base:rep(math.ceil(n / 251) + 1)):sub(1, n)
end

local math_type = rawget(math, "type") -- Lua 5.3+; nil on 5.1/LuaJIT (one number type)

local POLL_EVENTS = { ["in"] = "r", out = "w", inout = "rw" }

-- A minimal host adapter, as a libuv application would write it: one poll
-- handle per socket, kept in step with e:changes(); one timer re-armed from
-- e:timeout() after every call into the engine. Everything the engine hands
-- out goes through take(), which counts how often each transfer is reported.
local function host(e)
  local h = { acts = 0, timer_acts = 0, socket_acts = 0, log = {}, reported = {}, order = {} }
  local polls, watching = {}, {}
  local timer = uv.new_timer()

  function h.take(done, how)
    for _, t in ipairs(done) do
      h.reported[t] = (h.reported[t] or 0) + 1
      h.order[#h.order + 1] = { t = t, how = how, at = core.now() }
    end
  end

  local sync
  local function act(fd, events)
    h.acts = h.acts + 1
    h.log[#h.log + 1] = core.now()
    if fd then
      h.socket_acts = h.socket_acts + 1
      h.take(e:act(fd, events), "socket")
    else
      h.timer_acts = h.timer_acts + 1
      h.take(e:act(), "timer")
    end
    sync()
  end

  function sync()
    for _, c in ipairs(e:changes()) do
      local fd, what = c[1], c[2]
      assert(math_type == nil or math_type(fd) == "integer", "fd is not an integer")
      local p = polls[fd]
      if what == "remove" then
        assert(p, "remove for a socket the host does not watch")
        p:stop()
        p:close()
        polls[fd], watching[fd] = nil, nil
      else
        assert(POLL_EVENTS[what], "unknown interest " .. tostring(what))
        if not p then
          p = assert(uv.new_socket_poll(fd))
          polls[fd] = p
        end
        assert(p:start(POLL_EVENTS[what], function(err, events)
          act(fd, err and "e" or events)
        end))
        watching[fd] = what
      end
    end
    -- after applying the changes, the host watches exactly e:sockets()
    local want = e:sockets()
    for fd, what in pairs(want) do assert(watching[fd] == what, "watch set out of step") end
    for fd in pairs(watching) do assert(want[fd], "watching a dropped socket") end
    local tmo = e:timeout()
    timer:stop()
    if tmo then timer:start(math.ceil(tmo * 1000), 0, function() act() end) end
  end
  h.sync = sync

  -- runs the libuv loop until cond() holds; counts the loop iterations
  function h.loop(cond, limit)
    local expired = false
    local guard = uv.new_timer()
    guard:start(math.floor((limit or 10) * SLOW * 1000), 0, function() expired = true end)
    local iterations = 0
    while not cond() and not expired do
      uv.run("once")
      iterations = iterations + 1
    end
    guard:close()
    return cond(), iterations
  end

  function h.watched()
    local n = 0
    for _ in pairs(watching) do n = n + 1 end
    return n
  end

  function h.close()
    timer:close()
    for fd, p in pairs(polls) do
      p:close()
      polls[fd] = nil
    end
    uv.run("nowait") -- lets libuv finish the closes
  end
  return h
end

describe("ugen.core engine on a foreign event loop (libuv)", function()
  local srv

  lazy_setup(function() srv = httpd.start() end)
  lazy_teardown(function() if srv then srv.stop() end end)

  it("an idle engine has no timer, no sockets and no changes", function()
    local e = core.engine()
    assert.is_nil(e:timeout())
    assert.same({}, e:sockets())
    assert.same({}, e:changes())
    local done, running = e:act()
    assert.same({}, done)
    assert.equal(0, running)
    e:close()
  end)

  it("20 concurrent GETs complete with the right bodies, without polling at a fixed rate", function()
    local e = core.engine()
    local h = host(e)
    local want, total = {}, 0
    for i = 1, 20 do
      local n = 1000 * i + i
      want[e:submit { url = srv.base .. "/bytes?n=" .. n }] = n
      total = total + n
    end
    -- a submit sets libcurl's timer to "now": the host learns it from e:timeout()
    assert.equal(0, e:timeout())
    h.sync()
    local ok, iterations = h.loop(function() return #h.order == 20 end)
    assert.is_true(ok, "transfers did not complete")
    for t, n in pairs(want) do
      assert.equal(1, h.reported[t])
      local res, err = t:result()
      assert.is_nil(err)
      assert.equal(200, res.status)
      assert.equal(n, #res.body)
      assert.is_true(res.body == pattern(n), "body differs")
    end
    -- event driven: about one call per connect, request and response chunk of
    -- each transfer (16 KiB reads), never one per tick of a clock
    local bound = 20 * 4 + math.ceil(total / 16384) * 2
    assert.is_true(h.acts <= bound, ("%d act calls for 20 transfers (bound %d)"):format(h.acts, bound))
    assert.is_true(iterations <= bound, ("%d loop iterations (bound %d)"):format(iterations, bound))
    -- finished: libcurl watches nothing, the host holds no watcher
    assert.same({}, e:sockets())
    assert.equal(0, h.watched())
    assert.equal(0, e:running())
    assert.is_nil(e:timeout())          -- libcurl cancelled its timer (-1)
    h.close()
    e:close()
  end)

  it("a slow response completes with the loop idle while the server thinks", function()
    local e = core.engine()
    local h = host(e)
    local t = e:submit { url = srv.base .. "/slow?ms=300" }
    local t0, cpu0 = core.now(), os.clock()
    h.sync()
    local ok = h.loop(function() return t:done() end)
    local elapsed, cpu = core.now() - t0, os.clock() - cpu0
    assert.is_true(ok)
    assert.equal("slow", t:result().body)
    assert.is_true(elapsed >= 0.29, "finished before the server answered")
    -- connect, send, response (and a timer or two): no calls while waiting
    assert.is_true(h.acts <= 8, ("%d act calls"):format(h.acts))
    local during = 0
    for _, at in ipairs(h.log) do
      if at > t0 + 0.05 * SLOW and at < t0 + 0.25 then during = during + 1 end
    end
    -- (libcurl's connect-phase timer is due once in there; libuv's 1 ms clock
    -- may fire it a hair early, which costs one more e:act(), twice on a loaded
    -- machine: a fixed-rate poll would make 20 (10 ms) to 200 (1 ms) calls here)
    assert.is_true(during <= 4, ("%d act calls while the server waited"):format(during))
    assert.is_true(cpu < 0.1 * SLOW, ("%.3f s CPU for a 0.3 s wait"):format(cpu))
    h.close()
    e:close()
  end)

  it("a request timeout fires through the timer: e:act() alone finishes the transfer", function()
    local e = core.engine()
    local h = host(e)
    local t = e:submit { url = srv.base .. "/slow?ms=5000", timeout = 0.5 }
    local t0 = core.now()
    h.sync()
    local ok = h.loop(function() return t:done() end)
    local elapsed = core.now() - t0
    assert.is_true(ok)
    local res, err = t:result()
    assert.is_nil(res)
    assert.equal("timeout", err.kind)
    assert.equal(1, #h.order)
    assert.equal("timer", h.order[1].how)
    assert.is_true(elapsed >= 0.49 and elapsed < 0.5 + 1.0 * SLOW, ("elapsed %.3f"):format(elapsed))
    assert.is_true(h.acts <= 8, ("%d act calls"):format(h.acts))
    assert.equal(0, h.watched())
    h.close()
    e:close()
  end)

  it("mixing e:run, e:request and e:act reports each transfer exactly once", function()
    local e = core.engine()
    local h = host(e)
    local mine = {}
    for i = 1, 6 do mine[#mine + 1] = e:submit { url = srv.base .. "/slow?ms=" .. (i * 40) } end
    h.sync()
    -- alternate one loop iteration and one e:run
    local deadline = core.now() + 10 * SLOW
    local function all_reported()
      for _, t in ipairs(mine) do if not h.reported[t] then return false end end
      return true
    end
    local runs = 0
    while not all_reported() and core.now() < deadline do
      uv.run("once")
      h.take(e:run(0.01), "run")
      runs = runs + 1
      h.sync()
    end
    assert.is_true(all_reported())
    local hows = {}
    for _, o in ipairs(h.order) do hows[o.how] = true end

    -- e:request while a transfer of the host is in flight: the request drives it
    -- too; whatever finishes meanwhile is handed out by the next act or run
    local slow = e:submit { url = srv.base .. "/slow?ms=150" }
    mine[#mine + 1] = slow
    h.sync()
    uv.run("nowait")
    local res = assert(e:request { url = srv.base .. "/slow?ms=300" })
    assert.equal("slow", res.body)
    assert.is_true(slow:done(), "e:request did not drive the other transfer")
    h.sync()
    h.take(e:act(), "timer")
    h.take(e:run(0), "run")
    h.sync()
    assert.is_true(h.loop(all_reported))
    for _, t in ipairs(mine) do
      assert.equal(1, h.reported[t])
      assert.equal(200, t:result().status)
    end
    assert.equal(#mine, #h.order)
    assert.same({}, (e:run(0)))
    assert.same({}, (e:act()))
    assert.is_true(runs > 0 and (hows.run or hows.socket or hows.timer))
    h.close()
    e:close()
  end)

  it("e:changes reports removals first, then the current interest, once", function()
    local e = core.engine()
    local t = e:submit { url = srv.base .. "/slow?ms=200" }
    e:act()
    local first = e:changes()
    assert.is_true(#first >= 1)
    local fd = first[1][1]
    assert.equal("number", type(fd))
    assert.is_truthy(({ ["in"] = 1, out = 1, inout = 1 })[first[1][2]])
    assert.equal(first[1][2], e:sockets()[fd])
    assert.same({}, e:changes())       -- nothing new since
    while not t:done() do e:run(0.2) end
    local last = e:changes()
    assert.same({ { fd, "remove" } }, last)
    assert.same({}, e:changes())
    -- a host that never calls e:changes() does not make the engine keep state
    local e2 = core.engine()
    for _ = 1, 3 do
      local t2 = e2:submit { url = srv.base .. "/bytes?n=10" }
      while not t2:done() do e2:run(0.2) end
    end
    assert.same({}, e2:changes())
    e2:close()
    e:close()
  end)

  it("e:changes reports a reused socket number as remove, then its new interest", function()
    local e = core.engine()
    local t1 = e:submit { url = srv.base .. "/slow?ms=100" }
    e:act()
    local fd
    for _ = 1, 20 do
      e:run(0.02)
      local c = e:changes()
      if #c > 0 then fd = c[#c][1] end
      if e:sockets()[fd] == "in" then break end
    end
    assert.equal("in", e:sockets()[fd], "request never sent")
    while not t1:done() do e:run(0.2) end
    assert.same({}, e:sockets())
    -- the next transfer reuses the pooled connection: the same socket number
    local t2 = e:submit { url = srv.base .. "/slow?ms=100" }
    for _ = 1, 20 do
      e:act()
      if e:sockets()[fd] == "in" then break end
      e:run(0.02)
    end
    assert.equal("in", e:sockets()[fd])
    assert.same({ { fd, "remove" }, { fd, "in" } }, e:changes())
    while not t2:done() do e:run(0.2) end
    assert.equal(200, t2:result().status)
    e:close()
  end)

  it("transfers queued by max_host_connections start from the host's loop", function()
    local e = core.engine { max_host_connections = 1 }
    local h = host(e)
    local ts = {}
    for i = 1, 4 do ts[i] = e:submit { url = srv.base .. "/slow?ms=60" } end
    local t0 = core.now()
    h.sync()
    assert.is_true(h.loop(function() return #h.order == 4 end))
    assert.is_true(core.now() - t0 >= 0.24, "the transfers did not wait for the one connection")
    for _, t in ipairs(ts) do
      assert.equal(1, h.reported[t])
      assert.equal("slow", t:result().body)
    end
    assert.is_true(h.acts <= 4 * 8, ("%d act calls"):format(h.acts))
    h.close()
    e:close()
  end)

  it("e:act on a socket libcurl does not watch is harmless", function()
    local e = core.engine()
    local done, running = e:act(0, "r")  -- stdin: not a libcurl socket
    assert.same({}, done)
    assert.equal(0, running)
    local t = e:submit { url = srv.base .. "/bytes?n=5" }
    done, running = e:act(1000, "rw")
    assert.same({}, done)
    assert.equal(1, running)
    while not t:done() do e:run(0.2) end
    assert.equal(5, #t:result().body)
    e:close()
  end)

  it("checks its arguments and refuses a closed engine or a call from a callback", function()
    local e = core.engine()
    for _, case in ipairs({
      { function() e:act("3") end, "bad argument #1 to 'act' %(fd: number expected, got string%)" },
      { function() e:act(1.5) end, "fd: must be an integer >= 0" },
      { function() e:act(-1) end, "fd: must be an integer >= 0" },
      { function() e:act(3, 1) end, "bad argument #2 to 'act' %(events: string expected, got number%)" },
      { function() e:act(nil, "r") end, "events given without fd" },
      { function() e.act(nil) end, "ugen.engine expected" },
      { function() e.timeout({}) end, "ugen.engine expected" },
    }) do
      local ok, err = pcall(case[1])
      assert.is_false(ok)
      assert.matches(case[2], err)
    end
    -- from inside a progress callback: act raises (the transfer fails "callback")
    local t = e:submit { url = srv.base .. "/bytes?n=100000", on_progress = function() e:act() end }
    while not t:done() do e:run(0.2) end
    local _, err = t:result()
    assert.equal("callback", err.kind)
    assert.matches("engine is busy", tostring(err.cause))
    e:close()
    for _, m in ipairs({ "timeout", "sockets", "changes", "act" }) do
      local ok, msg = pcall(e[m], e)
      assert.is_false(ok)
      assert.matches("ugen.engine: handle is closed", msg, 1, true)
    end
  end)
end)

describe("ugen.core e:run over the socket API", function()
  local srv

  lazy_setup(function() srv = httpd.start() end)
  lazy_teardown(function() if srv then srv.stop() end end)

  it("returns at once on an idle engine", function()
    local e = core.engine()
    local t0 = core.now()
    local done, running = e:run(5)
    assert.same({}, done)
    assert.equal(0, running)
    assert.is_true(core.now() - t0 < 0.05 * SLOW)
    e:close()
  end)

  it("run(0.2) with one slow transfer waits about that long without using the CPU", function()
    local e = core.engine()
    local t = e:submit { url = srv.base .. "/slow?ms=3000" }
    -- until the request is out and libcurl's early timers (connect phase)
    -- have passed, a run returns on progress or at the timer
    local settled = false
    for _ = 1, 40 do
      e:run(0.05)
      local tmo = e:timeout()
      if tmo == nil or tmo > 1 then settled = true break end
    end
    assert.is_true(settled, "the transfer never went quiet")
    local t0, cpu0 = core.now(), os.clock()
    local done, running = e:run(0.2)
    local elapsed, cpu = core.now() - t0, os.clock() - cpu0
    assert.same({}, done)
    assert.equal(1, running)
    assert.is_true(elapsed >= 0.195 and elapsed < 0.2 + 0.15 * SLOW, ("waited %.3f s"):format(elapsed))
    assert.is_true(cpu < 0.02 * SLOW, ("%.4f s CPU in run(0.2)"):format(cpu))
    assert.is_false(t:done())
    e:close()
  end)

  it("a signal (EINTR) neither cuts the wait short nor fails run or request", function()
    local e = core.engine()
    local caught = 0
    local sig = uv.new_signal()
    sig:start("sigusr1", function() caught = caught + 1 end)
    local function signal_in(seconds)
      os.execute(("(sleep %.2f; kill -USR1 %d) >/dev/null 2>&1 &"):format(seconds, uv.os_getpid()))
    end
    local t = e:submit { url = srv.base .. "/slow?ms=3000" }
    for _ = 1, 40 do
      e:run(0.05)
      local tmo = e:timeout()
      if tmo == nil or tmo > 1 then break end
    end
    signal_in(0.1)
    local t0 = core.now()
    local done = e:run(0.6)
    local elapsed = core.now() - t0
    assert.same({}, done)
    -- libuv's handler ran (the signal arrived during the wait) and poll resumed
    -- with the time left instead of returning at the signal
    local deadline = core.now() + 2 * SLOW
    while caught == 0 and core.now() < deadline do uv.run("nowait") core.sleep(0.01) end
    assert.equal(1, caught)
    assert.is_true(elapsed >= 0.59, ("run(0.6) returned after %.3f s"):format(elapsed))
    signal_in(0.1)
    local res, err = e:request { url = srv.base .. "/slow?ms=300" }
    assert.is_nil(err)
    assert.equal("slow", res.body)
    deadline = core.now() + 2 * SLOW
    while caught < 2 and core.now() < deadline do uv.run("nowait") core.sleep(0.01) end
    assert.equal(2, caught)
    sig:close()
    uv.run("nowait")
    t:close()
    e:close()
  end)
end)
