-- ugen.runtime.haproxy: the HAProxy runtime (see ugen.runtime for the interface),
-- picked by ugen.new when the global `core` is HAProxy's.
--
--   perform   ugen.transport.haproxy (core.httpclient / core.tcp): yields
--   sleep     core.msleep: yields inside a task, service or action; where
--             HAProxy cannot yield (a lua-load file's body) the C core's
--             blocking sleep
--   now       the C core's monotonic clock (HAProxy's core.now() stands still
--             while Lua runs); time: core.now()
--   spawn     core.register_task(fn): fn runs as a HAProxy task of this Lua
--             state (this thread's with lua-load-per-thread)
--   join_any  waits with core.msleep in steps of at most POLL seconds (HAProxy
--             2.6 gives Lua no way to wake a task from another one)
--   cancel    cooperative: the handle is never reported; its task raises at
--             its next sleep or request (a request in flight runs to its end,
--             its answer is dropped and nothing more is sent)
--
-- State: one runtime table per Lua state (get()), and per spawned task its
-- handle; nothing of it is shared with another Lua state. With `lua-load`
-- (one state for every thread) HAProxy runs one coroutine of the state at a
-- time, so handles are only ever touched under HAProxy's Lua lock; with
-- `lua-load-per-thread` each thread has its own modules, runtime and tasks.
-- A forced yield (tune.lua.forced-yield) may switch coroutines between any
-- two Lua instructions: a handle's fields are each written once, by its own
-- task, and a waiter only reads them.

local type, pcall, select, error, setmetatable, rawget, require =
  type, pcall, select, error, setmetatable, rawget, require
local co_running, co_isyieldable = coroutine.running, rawget(coroutine, "isyieldable")
local math_floor = math.floor

local transport = require "ugen.transport.haproxy"   -- raises outside HAProxy
local native = require "ugen.native"
local argerror = require("ugen.args").argerror
local task_mod = require "ugen.runtime.task"
local first_ended, joined = task_mod.first_ended, task_mod.joined

local hcore = rawget(_G, "core")

local _M = { _VERSION = "0.1.0", POLL = 0.01 }

local function pack(...) return { n = select("#", ...), ... } end

-- coroutine of a spawned task -> its handle (weak: a finished task's goes away)
local by_co = setmetatable({}, { __mode = "k" })

-- the error a cancelled task raises at its next wait
local CANCELLED = setmetatable({}, { __tostring = function() return "ugen: task cancelled" end })

local function check_cancel()
  local h = by_co[co_running()]
  if h and h.cancelled then error(CANCELLED, 0) end
end

local function yieldable()
  return co_isyieldable == nil or co_isyieldable()
end

local function sleep(s)
  check_cancel()
  if s > 0 then
    if yieldable() then
      hcore.msleep(math_floor(s * 1000 + 0.5))
    else
      native.sleep(s)
    end
  end
  check_cancel()
end

local function perform(req)
  check_cancel()
  local res, err = transport.request(req)
  check_cancel()
  return res, err
end

local function time()
  local t = hcore.now()
  return t.sec + t.usec / 1e6
end

local H_mt = { __name = "ugen.haproxy_task", __tostring = function() return "ugen.haproxy_task" end }

local function spawn(fn)
  if type(fn) ~= "function" then
    argerror(1, "spawn", "function expected, got " .. type(fn), 2)
  end
  local h = setmetatable({ finished = false }, H_mt)
  hcore.register_task(function()
    by_co[co_running()] = h
    local r = pack(pcall(fn))
    if not r[1] and r[2] == CANCELLED then r = nil end
    h.results = r
    h.finished = true
  end)
  return h
end

local function join_any(handles, timeout)
  local h, live = first_ended(handles)
  if not h and live == 0 then error("ugen: join_any: nothing to wait for", 2) end
  if not yieldable() then
    error("ugen: join_any needs a HAProxy task, service or action (HAProxy cannot run the spawned tasks here)", 2)
  end
  local deadline = timeout and native.now() + timeout
  while true do
    if h then return joined(h) end
    local wait = _M.POLL
    if deadline then
      local left = deadline - native.now()
      if left <= 0 then return nil end
      if left < wait then wait = left end
    end
    sleep(wait)
    h = first_ended(handles)
  end
end

local function cancel(h)
  if h.finished or h.joined then return end
  h.joined = true
  h.cancelled = true
end

local shared
function _M.get()
  if shared == nil then
    shared = {
      name = "haproxy",
      now = native.now,
      time = time,
      sleep = sleep,
      perform = perform,
      spawn = spawn,
      join_any = join_any,
      cancel = cancel,
    }
  end
  return shared
end

return _M
