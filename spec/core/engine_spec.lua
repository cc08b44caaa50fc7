-- ugen.core engine and transfer lifecycle: close/GC/callbacks, against the
-- loopback server spec/support/httpd.lua (a real libcurl transfer each time).
-- Timing bounds are multiplied by UGEN_TIME_FACTOR (scripts/check.sh sets it
-- for the sanitizer and valgrind runs).
local SLOW = tonumber(os.getenv("UGEN_TIME_FACTOR")) or 1
local core = require "ugen.core"
local httpd = require "support.httpd_ctl"

local srv

local function full_gc()
  for _ = 1, 4 do collectgarbage("collect") end
end

-- drives e until t is done (bounded)
local function wait_done(e, t, limit)
  local deadline = core.now() + (limit or 10) * SLOW
  while not t:done() and core.now() < deadline do e:run(0.2) end
  return t:done()
end

describe("ugen.core engine lifecycle", function()
  lazy_setup(function() srv = httpd.start() end)
  lazy_teardown(function() if srv then srv.stop() end end)

  it("tostring shows only the class and the address", function()
    local e = core.engine()
    assert.matches("^ugen%.engine: 0?x?%x+$", tostring(e))
    local t = e:submit { url = srv.base .. "/echo", headers = { "X-API-Key: secret-key-123" } }
    assert.matches("^ugen%.transfer: 0?x?%x+$", tostring(t))
    assert.is_nil(tostring(t):find("secret", 1, true))
    e:close()
  end)

  it("rejects bad engine options", function()
    assert.has_error(function() core.engine { max_host_connections = -1 } end)
    assert.has_error(function() core.engine { max_total_connections = "x" } end)
    assert.has_error(function() core.engine(5) end)
    local e = core.engine { max_host_connections = 4, max_total_connections = 8 }
    e:close()
  end)

  it("close is idempotent and methods on a closed engine raise", function()
    local e = core.engine()
    e:close()
    e:close()
    for _, call in ipairs({
      function() e:submit { url = srv.base .. "/echo" } end,
      function() e:run(0) end,
      function() e:request { url = srv.base .. "/echo" } end,
      function() e:running() end,
    }) do
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.matches("ugen.engine: handle is closed", err, 1, true)
    end
  end)

  it("transfer close is idempotent and a closed transfer raises", function()
    local e = core.engine()
    local t = e:submit { url = srv.base .. "/echo" }
    assert.is_true(wait_done(e, t))
    t:close()
    t:close()
    for _, m in ipairs({ "done", "result", "progress" }) do
      local ok, err = pcall(t[m], t)
      assert.is_false(ok)
      assert.matches("ugen.transfer: handle is closed", err, 1, true)
    end
    e:close()
  end)

  it("raises on bad request tables, naming the field", function()
    local e = core.engine()
    local cases = {
      { nil, "table expected" },
      { {}, "req.url" },
      { { url = 1 }, "req.url" },
      { { url = "http://x/", method = "GET X" }, "req.method" },
      { { url = "http://x/", headers = { 5 } }, "req.headers[1]" },
      { { url = "http://x/", headers = { "X: a\r\nY: b" } }, "req.headers[1]" },
      { { url = "http://x/", timeout = 0 }, "req.timeout" },
      { { url = "http://x/", connect_timeout = -1 }, "req.connect_timeout" },
      { { url = "http://x/", body = {} }, "req.body" },
      { { url = "http://x/", body = "a", mime = { { name = "a", data = "b" } } }, "exclusive" },
      { { url = "http://x/", mime = { { data = "b" } } }, "req.mime[1].name" },
      { { url = "http://x/", mime = { { name = "a" } } }, "req.mime[1]" },
      { { url = "http://x/", mime = { { name = "a", data = "b", path = "/c" } } }, "req.mime[1]" },
      { { url = "http://x/", resume_from = 10 }, "req.resume_from" },
      { { url = "http://x/", max_body = 1.5 }, "req.max_body" },
      { { url = "http://x/", on_progress = true }, "req.on_progress" },
    }
    for i, c in ipairs(cases) do
      local ok, err = pcall(e.submit, e, c[1])
      assert.is_false(ok, "case " .. i)
      assert.matches("bad argument", err, 1, true)
      assert.matches(c[2], err, 1, true)
    end
    -- nothing half-registered
    assert.equal(0, e:running())
    full_gc()
    local done, running = e:run(0)
    assert.same({}, done)
    assert.equal(0, running)
    e:close()
  end)

  it("result before completion is a pending error, and is stable once done", function()
    local e = core.engine()
    local t = e:submit { url = srv.base .. "/slow?ms=100" }
    local res, err = t:result()
    assert.is_nil(res)
    assert.equal("pending", err.kind)
    assert.is_false(t:done())
    assert.is_true(wait_done(e, t))
    local r1 = t:result()
    local r2 = t:result()
    assert.equal(200, r1.status)
    assert.equal(r1, r2)
    e:close()
  end)

  it("run(0) never blocks and run(timeout) returns at once when idle", function()
    local e = core.engine()
    local t0 = core.now()
    local done, running = e:run(5)
    assert.same({}, done)
    assert.equal(0, running)
    assert.is_true(core.now() - t0 < 0.5 * SLOW, "idle run(5) waited")
    for _ = 1, 5 do e:submit { url = srv.base .. "/slow?ms=400" } end
    t0 = core.now()
    for _ = 1, 10 do e:run(0) end
    assert.is_true(core.now() - t0 < 0.2 * SLOW, "run(0) blocked")
    assert.equal(5, e:running())
    e:close()
  end)

  it("closing the engine aborts its transfers", function()
    local e = core.engine()
    local t = e:submit { url = srv.base .. "/slow?ms=2000" }
    e:run(0.05)
    e:close()
    assert.is_true(t:done())
    local res, err = t:result()
    assert.is_nil(res)
    assert.equal("aborted", err.kind)
    assert.equal("engine closed", err.message)
    t:close()
  end)

  it("closing an in-flight transfer removes it from the engine", function()
    local e = core.engine()
    local t1 = e:submit { url = srv.base .. "/slow?ms=2000" }
    local t2 = e:submit { url = srv.base .. "/slow?ms=50" }
    e:run(0)
    assert.equal(2, e:running())
    t1:close()
    assert.equal(1, e:running())
    assert.is_true(wait_done(e, t2))
    assert.equal(200, t2:result().status)
    e:close()
  end)

  it("keeps a dropped in-flight transfer alive and hands it out from run", function()
    local e = core.engine()
    local weak = setmetatable({}, { __mode = "v" })
    do
      weak.t = e:submit { url = srv.base .. "/slow?ms=50" }
    end
    full_gc()
    assert.is_not_nil(weak.t, "in-flight transfer was collected")
    do
      local got = {}
      local deadline = core.now() + 5 * SLOW
      while #got == 0 and core.now() < deadline do
        for _, t in ipairs((e:run(0.2))) do got[#got + 1] = t end
      end
      assert.equal(1, #got)
      assert.equal(weak.t, got[1])
      assert.equal(200, got[1]:result().status)
    end
    full_gc()
    assert.is_nil(weak.t, "reported transfer not collectable")
    e:close()
  end)

  it("a transfer keeps its engine alive", function()
    local weak = setmetatable({}, { __mode = "v" })
    do
      local t
      do
        local e = core.engine()
        weak.e = e
        t = e:submit { url = srv.base .. "/slow?ms=30" }
      end
      full_gc()
      assert.is_not_nil(weak.e)
      assert.is_true(wait_done(weak.e, t))
      assert.equal(200, t:result().status)
    end
    full_gc()
    assert.is_nil(weak.e, "engine not collectable after its transfer")
  end)

  it("collects an unreachable engine with transfers in flight", function()
    local weak = setmetatable({}, { __mode = "v" })
    do
      local e = core.engine()
      weak.e = e
      for i = 1, 5 do weak[i] = e:submit { url = srv.base .. "/slow?ms=1000" } end
      e:run(0.05)
      assert.equal(5, e:running())
    end
    full_gc()
    assert.is_nil(weak.e, "engine leaked")
    for i = 1, 5 do assert.is_nil(weak[i], "transfer " .. i .. " leaked") end
  end)

  it("collects unreachable finished transfers and engines", function()
    local weak = setmetatable({}, { __mode = "v" })
    do
      local e = core.engine()
      weak.e = e
      local t = e:submit { url = srv.base .. "/bytes?n=1000" }
      weak.t = t
      wait_done(e, t)
      weak.res = t:result()
    end
    full_gc()
    assert.is_nil(weak.e)
    assert.is_nil(weak.t)
    assert.is_nil(weak.res)
  end)

  it("survives many engines created and dropped mid-transfer", function()
    for _ = 1, 20 do
      local e = core.engine()
      e:submit { url = srv.base .. "/slow?ms=500" }
      e:submit { url = srv.base .. "/bytes?n=100000" }
      e:run(0.01)
    end
    full_gc()
    local e = core.engine()
    assert.equal(200, e:request { url = srv.base .. "/echo" }.status)
    e:close()
  end)

  if _VERSION ~= "Lua 5.4" then
    pending("supports <close> variables on Lua 5.4")      -- listed in spec/allowed_pending.lua
  else
    it("supports <close> variables on Lua 5.4", function()
      local chunk = assert(load([[
        local core, url = ...
        local keep
        do
          local e <close> = core.engine()
          keep = e
          local t <close> = e:submit { url = url }
        end
        return keep
      ]]))
      local e = chunk(core, srv.base .. "/slow?ms=500")
      assert.has_error(function() e:running() end, "ugen.engine: handle is closed")
    end)
  end
end)

describe("ugen.core on_progress callbacks", function()
  lazy_setup(function() srv = httpd.start() end)
  lazy_teardown(function() if srv then srv.stop() end end)

  it("reports progress numbers", function()
    local e = core.engine()
    local calls, last = 0, nil
    local res = assert(e:request {
      url = srv.base .. "/bytes?n=300000",
      on_progress = function(dltotal, dlnow, ultotal, ulnow)
        calls = calls + 1
        last = { dltotal, dlnow, ultotal, ulnow }
      end,
    })
    assert.equal(300000, #res.body)
    assert.is_true(calls > 0)
    assert.equal("number", type(last[1]))
    local t = e:submit { url = srv.base .. "/bytes?n=200000" }
    wait_done(e, t)
    local dlnow, dltotal = t:progress()
    assert.equal(200000, dlnow)
    assert.equal(200000, dltotal)
    e:close()
  end)

  it("returning false aborts with kind 'aborted'", function()
    local e = core.engine()
    local t0 = core.now()
    local res, err = e:request {
      url = srv.base .. "/slow?ms=3000",
      on_progress = function() return false end,
    }
    assert.is_nil(res)
    assert.equal("aborted", err.kind)
    assert.equal(42, err.curl_code)
    assert.is_true(core.now() - t0 < 2 * SLOW)
    e:close()
  end)

  it("an error raised in on_progress comes back as kind 'callback' with the cause", function()
    local e = core.engine()
    local cause = { reason = "stop now" }
    local res, err = e:request {
      url = srv.base .. "/slow?ms=3000",
      on_progress = function() error(cause) end,
    }
    assert.is_nil(res)
    assert.equal("callback", err.kind)
    assert.equal(cause, err.cause)
    local t = e:submit { url = srv.base .. "/slow?ms=3000", on_progress = function() error("boom") end }
    assert.is_true(wait_done(e, t))
    res, err = t:result()
    assert.is_nil(res)
    assert.equal("callback", err.kind)
    assert.matches("boom", err.cause)
    assert.matches("boom", err.message)
    e:close()
  end)

  it("engine calls from inside a callback raise instead of re-entering libcurl", function()
    local e = core.engine()
    for _, inner in ipairs({
      function() e:run(0) end,
      function() e:request { url = srv.base .. "/echo" } end,
      function() e:submit { url = srv.base .. "/echo" } end,
      function() e:close() end,
    }) do
      local res, err = e:request { url = srv.base .. "/slow?ms=2000", on_progress = inner }
      assert.is_nil(res)
      assert.equal("callback", err.kind)
      assert.matches("callback", tostring(err.cause))
    end
    -- the engine is still usable
    assert.equal(200, e:request { url = srv.base .. "/echo" }.status)
    e:close()
  end)

  -- issue 12 item 3: closing raised "cannot close a transfer from inside a callback"
  it("a transfer closed from inside a callback (its own or another's) is freed when the multi call returns", function()
    local e = core.engine()
    local t
    local calls = 0
    t = e:submit { url = srv.base .. "/slow?ms=3000", on_progress = function()
      calls = calls + 1
      t:close()
      t:close()                              -- idempotent while deferred
    end }
    local t0 = core.now()
    local done = {}
    while e:running() > 0 and core.now() - t0 < 5 * SLOW do
      for _, x in ipairs(e:run(0.5)) do done[#done + 1] = x end
    end
    assert.equal(0, e:running())             -- its easy handle left the multi handle
    assert.same({}, done)                    -- a closed transfer is never reported
    assert.equal(1, calls)                   -- no callback after the close
    assert.is_true(core.now() - t0 < 1.5 * SLOW, "the close waited for the transfer")
    assert.has_error(function() t:done() end, "ugen.transfer: handle is closed")

    -- closed from the callback of another transfer, inside e:run and inside e:request
    local victim = e:submit { url = srv.base .. "/slow?ms=3000" }
    t0 = core.now()
    local other = e:submit { url = srv.base .. "/slow?ms=200", on_progress = function() victim:close() end }
    local out = {}
    while e:running() > 0 and core.now() - t0 < 5 * SLOW do
      for _, x in ipairs(e:run(5)) do out[#out + 1] = x end
    end
    assert.same({ other }, out)
    assert.equal(200, other:result().status)
    assert.is_true(core.now() - t0 < 1.5 * SLOW)
    assert.has_error(function() victim:result() end, "ugen.transfer: handle is closed")
    victim = e:submit { url = srv.base .. "/slow?ms=3000" }
    local res = e:request { url = srv.base .. "/slow?ms=300", on_progress = function() victim:close() end }
    assert.equal(200, res.status)
    assert.equal(0, e:running())
    assert.same({}, (e:run(0)))
    -- unreachable once closed: the engine dropped its anchor
    local weak = setmetatable({ victim }, { __mode = "v" })
    victim, t = nil, nil
    full_gc()
    assert.is_nil(weak[1])
    -- the engine is still usable
    assert.equal(200, e:request { url = srv.base .. "/echo" }.status)
    e:close()
  end)

  it("runs callbacks on the coroutine that drives the engine", function()
    local e = core.engine()
    local seen
    local co = coroutine.create(function()
      return e:request {
        url = srv.base .. "/bytes?n=1000",
        on_progress = function() seen = coroutine.running() end,
      }
    end)
    local ok, res = coroutine.resume(co)
    assert.is_true(ok)
    assert.equal(200, res.status)
    assert.equal(co, seen)
    -- yielding across the callback is refused, not a crash
    local co2 = coroutine.create(function()
      return e:request { url = srv.base .. "/slow?ms=500", on_progress = function() coroutine.yield() end }
    end)
    local ok2, res2, err2 = coroutine.resume(co2)
    assert.is_true(ok2)
    assert.is_nil(res2)
    assert.equal("callback", err2.kind)
    e:close()
  end)

  it("a callback that keeps its transfer alive does not leak the engine", function()
    local weak = setmetatable({}, { __mode = "v" })
    do
      local e = core.engine()
      local t
      t = e:submit { url = srv.base .. "/slow?ms=2000", on_progress = function() return t ~= nil end }
      weak.e, weak.t = e, t
      e:run(0.05)
    end
    full_gc()
    assert.is_nil(weak.e)
    assert.is_nil(weak.t)
  end)
end)
