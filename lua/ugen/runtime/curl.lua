-- ugen.runtime.curl: the libcurl runtime (blocking libcurl and the libcurl
-- scheduler in one implementation; ugen.scheduler is this module).
--
-- One scheduler = one libcurl multi engine + one timer heap + one run queue.
-- Tasks are Lua coroutines. S:runtime() is the scheduler as a runtime of the
-- ugen.runtime interface (what a client made with runtime = "curl" uses: the
-- default scheduler's). Called from one of the scheduler's tasks, every wait
-- of the SDK (requests, jobs:wait polls, retry backoff, pagination) yields to
-- the scheduler; called from anywhere else it blocks (the request runs on the
-- scheduler's engine, which keeps driving the other transfers). A curl runtime
-- called from a task of another curl scheduler that is running (S:run,
-- S:step) acts on that one: a task never blocks its own scheduler. The process
-- sleeps in curl_multi_poll (or nanosleep when only timers are pending) until
-- the next transfer completes or the next timer is due. No busy waiting.
--
--   local scheduler = require "ugen.runtime.curl"   -- also require("ugen").scheduler
--   scheduler.run(fn, ...)          -- ugen.run: run fn in a task, drive until every task ended;
--                                   -- returns fn's results; re-raises fn's error (other tasks
--                                   -- are cancelled first)
--   scheduler.spawn(fn, ...)        -- client:spawn: start a task (in the running scheduler, else
--                                   -- the default one) -> task
--   scheduler.step([timeout])       -- pump the default scheduler once, waiting at most timeout
--                                   -- seconds (default 0 = never block) -> live tasks
--                                   -- (a step runs tasks for about loop.STEP_BUDGET, 4 ms, at
--                                   -- most; the others stay ready for the next step, in order)
--   scheduler.sleep(s)              -- yields inside a task, blocks elsewhere
--   scheduler.now()                 -- monotonic seconds
--   scheduler.current()             -- -> scheduler, task when called from a task, else nil
--   scheduler.default()             -- the process-wide scheduler (the default runtime of clients)
--   scheduler.engine()              -- its libcurl engine (ugen.core engine)
--   scheduler.perform(req)          -- the default runtime's perform (one pipeline request)
--   scheduler.configure{max_concurrency =, on_error =}  -- the default scheduler's options
--   scheduler.new{max_concurrency = "auto", on_error = fn}  -- a private scheduler (own engine)
--
--   S:run(fn, ...)  S:spawn(fn, ...)  S:step([timeout])  S:configure(opts)  S:stats()
--   S:runtime()     -- the ugen.runtime interface table of S (cached): now, time, sleep,
--                   -- perform, spawn, join_any, cancel, step, name = "curl"
--   S:tasks()       -- number of live tasks
--   S:cancel_all()  -- cancel every live task -> how many
--   S:close()       -- cancel every task, free the engine (idempotent)
--
-- Inside a task of the scheduler, run(fn, ...) just calls fn(...) (SDK calls
-- there yield already); step() from a task raises (a task must not pump its
-- own scheduler). Tasks start in spawn order at the scheduler's next round; a
-- plain coroutine.yield() in a task gives the other tasks a turn.
--
--   task:cancel()   -- -> true if the task was still alive. Its in-flight transfer is closed
--                   -- (or its queued request dropped, or its timer removed) and the SDK call
--                   -- it waits in raises an ugen error with kind "cancelled" (code
--                   -- "CANCELLED"), unwinding the task; later SDK calls in it raise again.
--                   -- Callable from anywhere, also from inside a callback the engine runs
--                   -- (a download's on_progress, of this task or another): the engine
--                   -- closes the transfer once the callback has returned, and the slot it
--                   -- frees goes to the next queued request at the scheduler's next round.
--   task:status()   -- "ready" | "running" | "waiting" | "done" | "failed" | "cancelled"
--   task:done()     -- finished in any way
--   task:result()   -- nil while alive; true, ... (its return values) | false, err[, traceback]
--   task:join()     -- waits for the end (yields in a task of the same scheduler, else pumps
--                   -- the scheduler) -> as task:result()
--
-- Errors raised in a spawned task end that task only: they are kept on the
-- task (task:result()) and passed to on_error(err, task, traceback); the
-- default on_error prints the traceback to stderr. Cancellation is not an error.
--
-- Backpressure: at most max_concurrency requests per origin
-- (scheme://host:port) are in flight; further requests wait in a FIFO queue
-- (their timeouts start when they are sent). A request that carries the
-- call's deadline (req.deadline, from a per-call timeout or a jobs:wait) gives
-- up at that deadline even while queued (error kind "timeout", sent = false),
-- and when it is sent its timeout is at most the time left. The engine keeps
-- connections alive and reuses them (libcurl connection cache).
--
-- max_concurrency counts requests in flight per origin, not connections.
-- "auto" (the default) picks it per origin from the protocol of its last answer:
--   HTTP/1.1 (every http:// origin, and an https one that answered over it):
--     64 -- one request per connection: 64 connections at most, as before;
--   HTTP/2 (https:// origins, assumed until an answer says otherwise): 1024 --
--     streams multiplexed over at most 8 connections per origin (128 streams
--     each; a server that allows fewer streams gets its extra requests queued
--     inside libcurl): 1,000 requests at once take 8 TLS connections.
-- A number applies to every origin whatever its protocol, and is also the
-- engine's connection limit per origin (max_host_connections; "auto": 64);
-- "auto" restores the default. What it costs: the first requests to an https
-- origin without HTTP/2 go out up to 1024 at once and share 8 connections
-- until its first answer (then 64), waiting inside libcurl, where their
-- timeouts already run; a program that relied on at most 64 requests at once
-- per https origin sets max_concurrency = 64.
--
-- Calls from a coroutine the scheduler does not own (a coroutine created by
-- user code, even inside a task) never yield into foreign code: they block as
-- they do outside ugen.run (the request runs on this scheduler's engine, which
-- keeps driving the other transfers). Outside any scheduler nothing changes:
-- the SDK blocks as before.
--
-- Lua 5.1 (not LuaJIT) cannot yield across pcall: inside a task there, call
-- the SDK outside pcall/xpcall (LuaJIT and Lua 5.2+ have no such limit).
--
-- This module owns the scheduler objects (options, S:* methods), their
-- runtime() table and the module-level API on the default scheduler. The
-- machinery sits below it, one concern per module (each requires only lower
-- ones): ugen.runtime.timer_heap (the min-heap), ugen.runtime.task (task
-- objects, run queue, wait protocol), ugen.runtime.transfers (the engine and
-- the per-origin queues), ugen.runtime.loop (rounds, stepping, sleep/perform/
-- join_any). Internal interface: S:pump_until(cond) (drive from outside the
-- tasks until cond() -> true | false on deadlock) is the one method a lower
-- module (task:join) calls on a scheduler; not part of the public API.

local tcurl = require "ugen.transport.curl"
local native = require "ugen.native"
local task_mod = require "ugen.runtime.task"
local timer_heap = require "ugen.runtime.timer_heap"
local transfers = require "ugen.runtime.transfers"
local loop = require "ugen.runtime.loop"
local args = require "ugen.args"

local type, tostring, error, setmetatable, pairs =
  type, tostring, error, setmetatable, pairs
local math_floor, string_format = math.floor, string.format
local unpack = table.unpack or unpack -- luacheck: ignore 143

local pack, current_in, spawn = task_mod.pack, task_mod.current_in, task_mod.spawn
local stepping, round, pump_until, owner = loop.stepping, loop.round, loop.pump_until, loop.owner
local BUSY, STEP_BUDGET = loop.BUSY, loop.STEP_BUDGET
local argerror = args.argerror

-- max_concurrency = "auto": requests in flight per origin over HTTP/1.1 and over
-- HTTP/2 (ugen.runtime.transfers applies them)
local _M = { _VERSION = "0.1.0", DEFAULT_MAX_CONCURRENCY = transfers.DEFAULT_MAX_CONCURRENCY,
             DEFAULT_MAX_CONCURRENCY_H2 = transfers.DEFAULT_MAX_CONCURRENCY_H2 }

local function now() return native.now() end
local function wall_time() return native.time() end
_M.now = now
_M.time = wall_time
_M.current = loop.current

-- the process-wide engine: the default scheduler's (blocking calls and its
-- tasks share one multi handle and its connection cache)
local process_engine
function _M.engine()
  if process_engine == nil then process_engine = native.engine{} end
  return process_engine
end

local S = {}
local S_mt = { __index = S, __name = "ugen.scheduler" }

local default_scheduler
local NOARGS = { n = 0 }

---------------------------------------------------------------------------
-- argument checks

local function check_max(v, fname, level)
  if v ~= "auto" and (type(v) ~= "number" or v ~= math_floor(v) or v < 1 or v > 100000) then
    argerror(1, fname, "max_concurrency must be an integer 1..100000 or \"auto\", got " .. tostring(v), level + 1)
  end
end

local function check_opts(opts, fname, level)
  level = level + 1
  if opts == nil then return {} end
  args.check_table(opts, 1, fname, level)
  for k, v in pairs(opts) do
    if k == "max_concurrency" then check_max(v, fname, level)
    elseif k == "on_error" then
      if type(v) ~= "function" and v ~= false then
        argerror(1, fname, "on_error must be a function or false", level)
      end
    elseif k == "engine" then
      if type(v) ~= "userdata" then
        argerror(1, fname, "engine must be a ugen.core engine", level)
      end
    else
      argerror(1, fname, "unknown option '" .. tostring(k) .. "'", level)
    end
  end
  return opts
end

local function check_timeout(timeout, fname)
  if timeout == nil then return 0 end
  if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
    argerror(1, fname, "non-negative number of seconds expected, got " ..
      (type(timeout) == "number" and tostring(timeout) or type(timeout)), 3)
  end
  return timeout
end

local STEP_IN_TASK = "ugen: step() called from inside a task; SDK calls already yield there (do not pump the " ..
                     "scheduler from a task)"

---------------------------------------------------------------------------
-- the runtime interface (ugen.runtime) of one scheduler

local function make_runtime(self)
  local rt = { name = "curl", now = now, time = wall_time }
  function rt.sleep(s) return loop.sleep(self, s) end
  function rt.perform(req)
    local creq = tcurl.to_core(req)
    local res, err = loop.perform(self, creq)
    if res == nil then return nil, tcurl.map_error(err, creq) end
    return res
  end
  function rt.spawn(fn)
    if type(fn) ~= "function" then
      argerror(1, "spawn", "function expected, got " .. type(fn), 2)
    end
    local target = owner(self)
    if target == nil and self.stepping then
      -- from a hook or a coroutine no scheduler owns while self steps: a side
      -- scheduler (own engine) that the caller's join_any pumps, blocking
      target = self.aside
      if target == nil or target.closed then
        target = _M.new{ max_concurrency = self.max, on_error = self.on_error }
        self.aside = target
      end
    end
    return spawn(target or self, fn, NOARGS)
  end
  function rt.join_any(handles, timeout) return loop.join_any(self, handles, timeout) end
  function rt.cancel(h)
    if h.finished then return end
    h.joined = true
    h:cancel()
    -- from outside any task: let it unwind now (its transfer is closed already)
    local hs = h.sched
    if not h.finished and owner(self) == nil and not hs.stepping then
      pump_until(hs, function() return h.finished end)
    end
  end
  function rt.step(timeout)
    if timeout == nil then timeout = 0 end
    if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
      argerror(1, "step", "non-negative number of seconds expected, got " ..
        (type(timeout) == "number" and tostring(timeout) or type(timeout)), 2)
    end
    if current_in(self) then error(STEP_IN_TASK, 2) end
    if self.ntasks == 0 then return nil end
    -- BUSY: a host task suspended part-way through a round resumes it later
    if stepping(self, round, self, timeout, STEP_BUDGET) == BUSY then return 0 end
    return loop.next_needed(self)
  end
  return rt
end

function S.runtime(self)
  local rt = self.rt
  if rt == nil then
    rt = make_runtime(self)
    self.rt = rt
  end
  return rt
end

---------------------------------------------------------------------------
-- scheduler objects

function _M.new(opts)
  opts = check_opts(opts, "new", 2)
  local self = setmetatable({
    max = opts.max_concurrency ~= "auto" and opts.max_concurrency or nil,   -- nil: "auto"
    on_error = opts.on_error,
    engine = opts.engine, own_engine = false,
    rq = {}, rq_head = 1, rq_tail = 0,
    heap = timer_heap.new(),
    transfers = {}, hosts = {}, inflight = 0, queued = 0, to_pump = {},
    live = {}, ntasks = 0,
    current = nil, stepping = false, closed = false,
    stat = { spawned = 0, finished = 0, resumes = 0, polls = 0, requests = 0, peak_inflight = 0,
             peak_host_inflight = 0, peak_queued = 0 },
  }, S_mt)
  return self
end

S.pump_until = pump_until   -- internal interface (task:join from outside a task)

function S.configure(self, opts)
  opts = check_opts(opts, "configure", 2)
  if opts.on_error ~= nil then self.on_error = opts.on_error end
  local max = opts.max_concurrency
  if max == "auto" then max = false end   -- false: back to "auto" (self.max = nil)
  if max ~= nil and (max or nil) ~= self.max then
    if self.inflight > 0 or self.queued > 0 then
      error("ugen.scheduler: cannot change max_concurrency while requests are in flight", 2)
    end
    self.max = max or nil
    -- the engine's per-host connection limit follows max_concurrency
    if self.own_engine and self.engine then self.engine:close() end
    self.engine, self.own_engine = nil, false
  end
  if opts.engine ~= nil then
    if self.inflight > 0 then error("ugen.scheduler: cannot change the engine while requests are in flight", 2) end
    if self.own_engine and self.engine then self.engine:close() end
    self.engine, self.own_engine = opts.engine, false
  end
  return self
end

function S.stats(self)
  local s = {}
  for k, v in pairs(self.stat) do s[k] = v end
  s.tasks, s.inflight, s.queued, s.max_concurrency = self.ntasks, self.inflight, self.queued, self.max or "auto"
  s.timers = loop.live_timers(self)
  return s
end

function S.tasks(self) return self.ntasks end

function S.spawn(self, fn, ...)
  if type(fn) ~= "function" then
    argerror(1, "spawn", "function expected, got " .. type(fn), 2)
  end
  return spawn(self, fn, pack(...))
end

function S.step(self, timeout)
  timeout = check_timeout(timeout, "step")
  if current_in(self) then error(STEP_IN_TASK, 2) end
  if self.ntasks == 0 then return 0 end
  stepping(self, round, self, timeout, STEP_BUDGET)  -- BUSY: a suspended host task resumes the round
  return self.ntasks
end

function S.cancel_all(self)
  local list = {}
  for task in pairs(self.live) do list[#list + 1] = task end
  for i = 1, #list do list[i]:cancel() end
  return #list
end

local function raise_task_error(task, fname)
  local err = task.results[2]
  if type(err) == "string" then
    error(string_format("%s: %s", fname, task.traceback or err), 0)
  end
  error(err, 0)
end

function S.run(self, fn, ...)
  if type(fn) ~= "function" then
    argerror(1, "run", "function expected, got " .. type(fn), 2)
  end
  if current_in(self) then return fn(...) end   -- already inside this scheduler: just call
  if self.stepping then
    error("ugen.run: called while the scheduler is stepping (from a hook or a coroutine it does not own); " ..
          "use client:spawn(fn) instead", 2)
  end
  local main = spawn(self, fn, pack(...), { is_main = true })
  local ok = pump_until(self, function()
    if main.finished and main.state ~= "done" then return true end
    return main.finished and self.ntasks == 0
  end)
  if not ok then
    local n = self.ntasks
    self:cancel_all()
    pump_until(self, function() return self.ntasks == 0 end)
    error(string_format("ugen.run: %d task(s) wait for each other and nothing else can wake them (deadlock)",
      n), 2)
  end
  if main.state ~= "done" then
    self:cancel_all()
    pump_until(self, function() return self.ntasks == 0 end)
    raise_task_error(main, "ugen.run")
  end
  return unpack(main.results, 2, main.results.n)
end

function S.close(self)
  if self.closed then return end
  if self.stepping then error("ugen.scheduler: cannot close a scheduler while it steps", 2) end
  self:cancel_all()
  pump_until(self, function() return self.ntasks == 0 end)
  self.closed = true
  if self.aside then self.aside:close() end
  if self.own_engine and self.engine then self.engine:close() end
  self.engine = nil
end

function S_mt.__tostring(self)
  return string_format("ugen.scheduler(tasks=%d, inflight=%d, queued=%d, max_concurrency=%s)",
    self.ntasks, self.inflight, self.queued, tostring(self.max or "auto"))
end

---------------------------------------------------------------------------
-- module-level API (the default scheduler)

function _M.default()
  if default_scheduler == nil then
    -- shares the process engine (connection reuse with blocking calls) while
    -- max_concurrency is "auto" (the engine's default of 64 connections per origin)
    default_scheduler = _M.new()
    default_scheduler.engine = _M.engine()
  end
  return default_scheduler
end

function _M.configure(opts)
  local d = _M.default()
  check_opts(opts, "configure", 2)
  d:configure(opts)
  if d.engine == nil and d.max == nil then d.engine = _M.engine() end
  return d
end

function _M.run(fn, ...)
  if type(fn) ~= "function" then
    argerror(1, "run", "function expected, got " .. type(fn), 2)
  end
  local s = loop.current()
  if s then return fn(...) end
  s = _M.default()
  if s.stepping then
    error("ugen.run: called while the scheduler is stepping (from a hook or a coroutine it does not own); " ..
          "use client:spawn(fn) instead", 2)
  end
  return s:run(fn, ...)
end

function _M.spawn(fn, ...)
  if type(fn) ~= "function" then
    argerror(1, "spawn", "function expected, got " .. type(fn), 2)
  end
  local s = loop.current() or _M.default()
  return spawn(s, fn, pack(...))
end

function _M.step(timeout)
  timeout = check_timeout(timeout, "step")
  local s = _M.default()
  if current_in(s) then
    error("ugen: step() called from inside a task; SDK calls already yield there", 2)
  end
  if s.ntasks == 0 then return 0 end
  stepping(s, round, s, timeout, STEP_BUDGET)  -- BUSY: a suspended host task resumes the round
  return s.ntasks
end

function _M.sleep(s)
  if type(s) ~= "number" or s ~= s then
    argerror(1, "sleep", "number expected, got " .. type(s), 2)
  end
  return loop.sleep(_M.default(), s)
end

-- one pipeline request on the default runtime (blocking outside tasks)
function _M.perform(req)
  return _M.default():runtime().perform(req)
end

return _M
