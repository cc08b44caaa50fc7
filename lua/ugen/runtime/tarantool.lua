-- ugen.runtime.tarantool: the tarantool runtime (fibers; see ugen.runtime for
-- the interface). Picked automatically inside tarantool (ugen.runtime.resolve).
--
--   perform   libcurl (the C core's engine, the same transport as everywhere
--             else: TLS, HTTP/2, downloads to a file, uploads), driven by
--             tarantool's event loop through the engine's event-loop API
--             (ugen.core: e:changes, e:timeout, e:act): one watcher fiber per
--             socket libcurl uses, waiting in socket.iowait, and one timer
--             fiber waiting until e:timeout(). The calling fiber waits on a
--             fiber.cond until its transfer ended: every other fiber runs
--             meanwhile. Nothing polls at a fixed rate.
--   sleep     fiber.sleep
--   now/time  the C core's monotonic and wall clocks
--   spawn     a fiber (fiber.new: it starts at the caller's next yield); an
--             error raised in fn ends that fiber only and is reported by
--             join_any (or h:join()), never logged by tarantool as an
--             unhandled error. The handle: h:join() -> true, fn's results |
--             false, err; h:cancel() -> whether it was alive; h:done();
--             h:result() (nil while it runs)
--   join_any  waits on a fiber.cond signalled when a spawned fiber ends
--   cancel    fiber:cancel(): the fiber raises tarantool's "fiber is
--             cancelled" at its next wait; a request it waits for is closed
--
-- A fiber cancelled by anyone (fiber:cancel()) while it waits in a request
-- closes that transfer and raises the cancellation error, as tarantool's own
-- waits do. on_progress callbacks (downloads) run in the socket's watcher
-- fiber, inside the engine: they may yield, but the engine's other transfers
-- wait until they return, and they cannot make SDK requests themselves.
--
-- One engine and one set of fibers per tarantool process (get()).

-- luacheck: globals _TARANTOOL
if type(rawget(_G, "_TARANTOOL")) ~= "string" then
  error("ugen.runtime.tarantool needs tarantool", 2)
end

local fiber = require "fiber"
local iowait = require("socket").iowait  -- tarantool's socket module, not luasocket
local native = require "ugen.native"
local tcurl = require "ugen.transport.curl"
local argerror = require("ugen.args").argerror
local task_mod = require "ugen.runtime.task"
local first_ended, joined = task_mod.first_ended, task_mod.joined

local type, pcall, select, error, tostring, setmetatable, getmetatable, next =
  type, pcall, select, error, tostring, setmetatable, getmetatable, next
local unpack = table.unpack or unpack -- luacheck: ignore 143
local now, wall_time = native.now, native.time

local _M = { _VERSION = "0.1.0" }

local function pack(...) return { n = select("#", ...), ... } end

---------------------------------------------------------------------------
-- the engine on tarantool's event loop

local engine            -- ugen.core engine, made on first request
local pending = {}      -- transfer -> { cond = fiber.cond, done = bool } of the fiber waiting for it
local watchers = {}     -- fd -> { fd, mode = "R" | "W" | "RW", fiber, waiting, stopped }
local acting = nil      -- the fiber inside engine:act (a callback of it may yield)
local idle = fiber.cond()      -- signalled when engine:act returns
local timer_cond = fiber.cond()  -- wakes the timer fiber to re-read engine:timeout()
local timer_fiber

local MODES = { ["in"] = "R", out = "W", inout = "RW" }
local EVENTS = { R = "r", W = "w", RW = "rw" }

local sync

-- wait (yielding) until no fiber is inside engine:act
local function wait_idle()
  while acting do
    if acting == fiber.self() then
      error("ugen: an SDK request cannot be made from inside a transfer's callback (on_progress)", 3)
    end
    idle:wait()
    fiber.testcancel()
  end
end

-- a transfer the engine reports finished: wake the fiber waiting for it
local function finish(t)
  local entry = pending[t]
  if entry == nil then t:close(); return end
  pending[t] = nil
  entry.done = true
  entry.cond:signal()
end

-- engine:act on a ready socket (fd, events; w its watcher) or on libcurl's
-- timer (no fd)
local function act(fd, events, w)
  while acting do idle:wait() end
  if w and w.stopped then return end   -- libcurl dropped the socket meanwhile
  acting = fiber.self()
  local ok, done = pcall(engine.act, engine, fd, events)
  acting = nil
  idle:broadcast()
  if not ok then
    -- the engine itself failed (out of memory): every waiting request fails
    for t, entry in next, pending do
      entry.failure = tostring(done)
      finish(t)
    end
  else
    for i = 1, #done do finish(done[i]) end
  end
  sync()
end

local function watch(w)
  fiber.self():name("ugen.io:" .. w.fd)
  while not w.stopped do
    w.waiting = true
    local ready = iowait(w.fd, w.mode)   -- until ready, or woken by sync (mode change, stop)
    w.waiting = false
    if w.stopped then break end
    local ev = EVENTS[ready]
    if ev then act(w.fd, ev, w) end
  end
end

local function stop(w)
  w.stopped = true
  watchers[w.fd] = nil
  if w.waiting then w.fiber:wakeup() end
end

-- apply engine:changes() to the watcher fibers; let the timer fiber re-read
-- engine:timeout(). Inside engine:act (a callback yielded) the fiber in act
-- syncs when it returns.
function sync()
  if acting then return end
  local changes = engine:changes()
  for i = 1, #changes do
    local fd, what = changes[i][1], changes[i][2]
    local w = watchers[fd]
    if what == "remove" then
      if w then stop(w) end
    else
      local mode = MODES[what]
      if w == nil then
        w = { fd = fd, mode = mode }
        watchers[fd] = w
        w.fiber = fiber.new(watch, w)
      elseif w.mode ~= mode then
        w.mode = mode
        if w.waiting then w.fiber:wakeup() end   -- waits again, for the new events
      end
    end
  end
  timer_cond:signal()
end

local function timer_loop()
  fiber.self():name("ugen.timer")
  while true do
    local tmo = engine:timeout()
    if tmo == nil then
      timer_cond:wait()
    elseif tmo > 0 then
      timer_cond:wait(tmo)
    else
      act()
    end
  end
end

local function start()
  if engine == nil then engine = native.engine{} end
  if timer_fiber == nil or timer_fiber:status() == "dead" then timer_fiber = fiber.new(timer_loop) end
end

local function wait_done(entry)
  while not entry.done do
    entry.cond:wait()
    fiber.testcancel()
  end
end

-- one pipeline request: yields the calling fiber until it ended
local function perform(req)
  local creq = tcurl.to_core(req)
  start()
  wait_idle()
  local t = engine:submit(creq)         -- raises here on a bad request
  local entry = { cond = fiber.cond(), done = false }
  pending[t] = entry
  sync()
  local ok, cancelled = pcall(wait_done, entry)
  if not ok then
    -- this fiber was cancelled: the transfer is abandoned (closed; inside a
    -- callback of the engine the engine closes it once the callback returned)
    pending[t] = nil
    t:close()
    sync()
    error(cancelled, 0)
  end
  if entry.failure then
    t:close()
    -- whether the request reached the server is unknown: never retried when not idempotent
    return nil, { kind = "network", sent = true, message = "ugen: libcurl engine failure: " .. entry.failure }
  end
  local res, err = t:result()
  t:close()
  if res == nil then return nil, tcurl.map_error(err, creq) end
  return res
end

---------------------------------------------------------------------------
-- fibers as handles

local ended = fiber.cond()      -- broadcast when a spawned fiber ends

-- a handle of client:spawn: h:join() -> true, fn's results | false, err
-- (yields until it ended); h:cancel(); h:done(); h:result() (nil while it runs)
local H = {}
local H_mt = { __index = H, __name = "ugen.tarantool_fiber",
               __tostring = function() return "ugen.tarantool_fiber" end }

local function spawn(fn)
  if type(fn) ~= "function" then
    argerror(1, "spawn", "function expected, got " .. type(fn), 2)
  end
  local h = setmetatable({ finished = false }, H_mt)
  h.fiber = fiber.new(function()
    if not h.cancelled then
      h.results = pack(pcall(fn))
    end
    h.finished = true
    ended:broadcast()
  end)
  return h
end


local function join_any(handles, timeout)
  if type(handles) ~= "table" then
    argerror(1, "join_any", "table of handles expected, got " .. type(handles), 2)
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout) then
    argerror(2, "join_any", "number of seconds expected, got " .. type(timeout), 2)
  end
  local deadline = timeout and now() + timeout
  while true do
    local h, live = first_ended(handles)
    if h then return joined(h) end
    if live == 0 then error("ugen: join_any: nothing to wait for (every handle was joined)", 2) end
    if deadline then
      local left = deadline - now()
      if left <= 0 then return nil end
      ended:wait(left)
    else
      ended:wait()
    end
    fiber.testcancel()
  end
end

local function cancel(h)
  if h.finished or h.joined then return end
  h.joined, h.cancelled = true, true
  if h.fiber:status() ~= "dead" then h.fiber:cancel() end
end

function H.join(h)
  if getmetatable(h) ~= H_mt then error("ugen: call handle:join() with a colon", 2) end
  if h.cancelled then error("ugen: join: the fiber was cancelled", 2) end
  while not h.finished do
    ended:wait()
    fiber.testcancel()
  end
  h.joined = true
  return unpack(h.results, 1, h.results.n)
end

function H.cancel(h)
  if getmetatable(h) ~= H_mt then error("ugen: call handle:cancel() with a colon", 2) end
  local alive = not h.finished and not h.cancelled
  cancel(h)
  return alive
end

function H.done(h) return h.finished or h.cancelled == true end

function H.result(h)
  if not h.finished or h.results == nil then return nil end
  return unpack(h.results, 1, h.results.n)
end

local shared
function _M.get()
  if shared == nil then
    shared = {
      name = "tarantool",
      now = now,
      time = wall_time,
      sleep = function(s) fiber.sleep(s > 0 and s or 0) end,
      perform = perform,
      spawn = spawn,
      join_any = join_any,
      cancel = cancel,
    }
  end
  return shared
end

-- for specs and diagnostics: sockets watched, requests waiting
function _M.stats()
  local n = 0
  for _ in next, watchers do n = n + 1 end
  local p = 0
  for _ in next, pending do p = p + 1 end
  return { watchers = n, pending = p }
end

return _M
