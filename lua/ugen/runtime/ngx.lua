-- ugen.runtime.ngx: the OpenResty runtime (see ugen.runtime for the interface).
--
--   perform   the cosocket transport (ugen.transport.ngx): a worker never blocks
--   sleep     ngx.sleep where the phase allows it (the C core's blocking sleep
--             elsewhere: init, init_worker without a timer, ...)
--   now/time  ngx.now() after ngx.update_time()
--   spawn     ngx.thread.spawn; join_any ngx.thread.wait; cancel ngx.thread.kill
--             (light threads belong to the request or timer that spawned them:
--             join and cancel them from there, as ngx.thread requires)
--
-- One runtime table per worker process (get()); it holds no per-request state.

-- luacheck: globals ngx
local ngx = ngx
if type(ngx) ~= "table" or type(ngx.thread) ~= "table" or type(ngx.sleep) ~= "function" then
  error("ugen.runtime.ngx needs OpenResty / lua-nginx-module", 2)
end

local transport = require "ugen.transport.ngx"
local argerror = require("ugen.args").argerror

local type, pcall, select, error, tostring, setmetatable =
  type, pcall, select, error, tostring, setmetatable
local unpack = table.unpack or unpack -- luacheck: ignore 143
local ngx_now, update_time = ngx.now, ngx.update_time
local thread_spawn, thread_wait, thread_kill = ngx.thread.spawn, ngx.thread.wait, ngx.thread.kill

local _M = { _VERSION = "0.1.0" }

local function pack(...) return { n = select("#", ...), ... } end

local function now()
  update_time()
  return ngx_now()
end

local H_mt = { __name = "ugen.ngx_thread", __tostring = function() return "ugen.ngx_thread" end }

local function spawn(fn)
  if type(fn) ~= "function" then
    argerror(1, "spawn", "function expected, got " .. type(fn), 2)
  end
  transport.check_phase("spawning a light thread")
  local h = setmetatable({ done = false }, H_mt)
  -- pcall: an error ends this thread only and is reported by join_any; the
  -- handle comes back first so that join_any knows which thread ended
  local th, err = thread_spawn(function()
    local r = pack(pcall(fn))
    h.done = true
    return h, unpack(r, 1, r.n)
  end)
  if not th then error("ugen: cannot spawn a light thread: " .. tostring(err), 2) end
  h.thread = th
  return h
end

local function sleeper(s)
  ngx.sleep(s)
  return false
end

local function join_any(handles, timeout)
  local threads, n = {}, 0
  for i = 1, #handles do
    local h = handles[i]
    if not h.joined then
      n = n + 1
      threads[n] = h.thread
    end
  end
  if n == 0 then error("ugen: join_any: nothing to wait for", 2) end
  local timer
  if timeout ~= nil then
    if timeout <= 0 then timeout = 0.001 end
    timer = thread_spawn(sleeper, timeout)
    n = n + 1
    threads[n] = timer
  end
  local r = pack(thread_wait(unpack(threads, 1, n)))
  if timer then thread_kill(timer) end
  if not r[1] then
    -- a thread died outside our pcall (killed by someone else): report it as an error
    return nil, false, r[2]
  end
  local h = r[2]
  if h == false then return nil end       -- the timer ended first
  h.joined = true
  return h, unpack(r, 3, r.n)
end

local function cancel(h)
  if h.done or h.joined then return end
  h.joined = true
  thread_kill(h.thread)
end

local shared
function _M.get()
  if shared == nil then
    shared = {
      name = "ngx",
      now = now,
      time = now,
      sleep = transport.sleep,
      perform = transport.request,
      spawn = spawn,
      join_any = join_any,
      cancel = cancel,
    }
  end
  return shared
end

return _M
