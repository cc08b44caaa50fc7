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

local errors = require "ugen.errors"
local url_mod = require "ugen.url"
local tcurl = require "ugen.transport.curl"

local co_create, co_resume, co_yield, co_running, co_status =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.running, coroutine.status
local type, tostring, error, pcall, select, setmetatable, pairs, next =
  type, tostring, error, pcall, select, setmetatable, pairs, next
local math_floor, math_huge, string_format, string_sub = math.floor, math.huge, string.format, string.sub
local traceback = debug.traceback
local unpack = table.unpack or unpack -- luacheck: ignore 143

-- max_concurrency = "auto": requests in flight per origin over HTTP/1.1 and over HTTP/2
local _M = { _VERSION = "0.1.0", DEFAULT_MAX_CONCURRENCY = 64, DEFAULT_MAX_CONCURRENCY_H2 = 1024 }

local MAX_POLL = 3600     -- longest single wait in curl_multi_poll / nanosleep (s)

-- what a task yields when it registered a wait; what a cancelled task is woken with
local WAIT = setmetatable({}, { __tostring = function() return "ugen.scheduler.WAIT" end })
local CANCEL = setmetatable({}, { __tostring = function() return "ugen.scheduler.CANCEL" end })

local function pack(...) return { n = select("#", ...), ... } end

local native = require "ugen.native"

local function now() return native.now() end
local function wall_time() return native.time() end
_M.now = now
_M.time = wall_time

-- the process-wide engine: the default scheduler's (blocking calls and its
-- tasks share one multi handle and its connection cache)
local process_engine
function _M.engine()
  if process_engine == nil then process_engine = native.engine{} end
  return process_engine
end

local S = {}
local S_mt = { __index = S, __name = "ugen.scheduler" }
local T = {}
local T_mt = { __index = T, __name = "ugen.task" }

-- schedulers currently inside step(), innermost last
local actives = {}

local default_scheduler

---------------------------------------------------------------------------
-- helpers

local function cancelled_error()
  return errors.new{ kind = "cancelled", code = "CANCELLED", message = "task cancelled", retryable = false }
end

local function raise_cancelled()
  error(cancelled_error(), 0)
end

-- per-origin backpressure key ("scheme://host:port"; "?" when there is none)
local function origin_of(url)
  return type(url) == "string" and url_mod.origin(url) or "?"
end

local function default_on_error(err, task, tb)
  local msg = tb or tostring(err)
  io.stderr:write("ugen: error in ", tostring(task), ": ", msg, "\n")
end

local function check_max(v, fname, level)
  if v ~= "auto" and (type(v) ~= "number" or v ~= math_floor(v) or v < 1 or v > 100000) then
    error(string_format("bad argument #1 to '%s' (max_concurrency must be an integer 1..100000 or \"auto\", "
      .. "got %s)", fname, tostring(v)), level + 1)
  end
end

local function check_opts(opts, fname, level)
  level = level + 1
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(string_format("bad argument #1 to '%s' (table expected, got %s)", fname, type(opts)), level)
  end
  for k, v in pairs(opts) do
    if k == "max_concurrency" then check_max(v, fname, level)
    elseif k == "on_error" then
      if type(v) ~= "function" and v ~= false then
        error(string_format("bad argument #1 to '%s' (on_error must be a function or false)", fname), level)
      end
    elseif k == "engine" then
      if type(v) ~= "userdata" then
        error(string_format("bad argument #1 to '%s' (engine must be a ugen.core engine)", fname), level)
      end
    else
      error(string_format("bad argument #1 to '%s' (unknown option '%s')", fname, tostring(k)), level)
    end
  end
  return opts
end

-- the task of `self` running right now in this very coroutine, or nil
local function current_in(self)
  local t = self.current
  if t ~= nil and t.co == co_running() then return t end
  return nil
end

---------------------------------------------------------------------------
-- timer heap (min-heap on at, then seq: equal deadlines fire in FIFO order)

local function less(a, b)
  return a.at < b.at or (a.at == b.at and a.seq < b.seq)
end

local function heap_push(h, e)
  local n = h.n + 1
  h.n = n
  while n > 1 do
    local p = math_floor(n / 2)
    local pe = h[p]
    if not less(e, pe) then break end
    h[n] = pe
    n = p
  end
  h[n] = e
end

local function heap_pop(h)
  local n = h.n
  if n == 0 then return nil end
  local top, last = h[1], h[n]
  h[n] = nil
  n = n - 1
  h.n = n
  if n > 0 then
    local i = 1
    while true do
      local l = i * 2
      if l > n then break end
      local c = l
      if l + 1 <= n and less(h[l + 1], h[l]) then c = l + 1 end
      if less(h[c], last) then
        h[i] = h[c]
        i = c
      else
        break
      end
    end
    h[i] = last
  end
  return top
end

-- the earliest live timer (dead ones: entry.task == nil, dropped here)
local function next_timer(self)
  local h = self.heap
  while h.n > 0 and h[1].task == nil do heap_pop(h) end
  return h[1]
end

---------------------------------------------------------------------------
-- run queue

local function wake(self, task, value)
  if task.finished then return end
  task.wake_value = value
  if not task.in_ready then
    task.in_ready = true
    local tail = self.rq_tail + 1
    self.rq_tail = tail
    self.rq[tail] = task
  end
  if task.state ~= "running" then task.state = "ready" end
end

local function ready_count(self) return self.rq_tail - self.rq_head + 1 end

---------------------------------------------------------------------------
-- the engine and transfers

local function engine(self)
  local e = self.engine
  if e == nil then
    e = native.engine{ max_host_connections = self.max }
    self.engine, self.own_engine = e, true
  end
  return e
end

local function host_of(self, key)
  local h = self.hosts[key]
  if h == nil then
    -- mux: the origin multiplexes (HTTP/2); assumed for https until an answer says otherwise
    h = { key = key, inflight = 0, q = {}, qh = 1, qt = 0, mux = string_sub(key, 1, 8) == "https://" }
    self.hosts[key] = h
  end
  return h
end

-- requests `host` may have in flight (max_concurrency; "auto": by protocol)
local function host_max(self, host)
  return self.max or (host.mux and _M.DEFAULT_MAX_CONCURRENCY_H2 or _M.DEFAULT_MAX_CONCURRENCY)
end

local function submit(self, host, entry)
  local req = entry.req
  local d = req.deadline
  if entry.queued_at and type(d) == "number" then
    -- sent later than asked: what is left of the call's deadline bounds it
    local left = d - now()
    if left < 1e-3 then left = 1e-3 end
    if type(req.timeout) ~= "number" or req.timeout > left then req.timeout = left end
    if type(req.connect_timeout) == "number" and req.connect_timeout > left then req.connect_timeout = left end
  end
  local t = engine(self):submit(req)
  entry.transfer = t
  self.transfers[t] = entry
  host.inflight = host.inflight + 1
  self.inflight = self.inflight + 1
  local st = self.stat
  st.requests = st.requests + 1
  if self.inflight > st.peak_inflight then st.peak_inflight = self.inflight end
  if host.inflight > st.peak_host_inflight then st.peak_host_inflight = host.inflight end
end

-- send queued requests of `host` while it has free slots
local function pump_host(self, host)
  while host.inflight < host_max(self, host) and host.qh <= host.qt do
    local entry = host.q[host.qh]
    host.q[host.qh] = nil
    host.qh = host.qh + 1
    self.queued = self.queued - 1
    if entry.expiry then entry.expiry.task = nil end   -- sent before its deadline
    if entry.task ~= nil then
      local ok, err = pcall(submit, self, host, entry)
      if not ok then          -- a bad request: raise it in the task that made it
        entry.raise = err
        wake(self, entry.task, nil)
      end
    end
  end
  if host.qh > host.qt then host.qh, host.qt = 1, 0 end
end

-- a transfer the engine reports finished
local function complete(self, t)
  local entry = self.transfers[t]
  if entry == nil then t:close(); return end
  self.transfers[t] = nil
  self.inflight = self.inflight - 1
  local host = entry.host
  host.inflight = host.inflight - 1
  local v = t:http_version()       -- what the answer came over tells whether the origin multiplexes
  if v ~= nil then host.mux = v == "2" or v == "3" end
  pump_host(self, host)
  if entry.task ~= nil then wake(self, entry.task, nil) else t:close() end
end

-- hosts with a slot freed by a cancel: their queues move at the next round
-- (a cancel may run inside an engine callback, where nothing can be submitted)
local function pump_later(self, host)
  self.to_pump[host] = true
end

local function pump_pending(self)
  if next(self.to_pump) == nil then return end
  local hosts = self.to_pump
  self.to_pump = {}
  for host in pairs(hosts) do pump_host(self, host) end
end

-- drop whatever `task` waits on (cancel). Safe inside an engine callback:
-- t:close() there is deferred by the engine until the callback returned.
local function abandon_wait(self, task)
  local w = task.wait
  task.wait = nil
  if w == nil then return end
  if w.kind == "transfer" then
    w.task = nil
    if w.expiry then w.expiry.task = nil end
    local t = w.transfer
    if t ~= nil then
      if self.transfers[t] ~= nil then
        self.transfers[t] = nil
        self.inflight = self.inflight - 1
        w.host.inflight = w.host.inflight - 1
        t:close()
        pump_later(self, w.host)
      else
        t:close()
      end
    end
  elseif w.kind == "timer" then
    w.task = nil
  elseif w.kind == "park" then
    w.task = nil
  end
end

---------------------------------------------------------------------------
-- tasks

local function report(self, task, err, tb)
  local hook = self.on_error
  if hook == false then return end
  hook = hook or default_on_error
  local ok, herr = pcall(hook, err, task, tb)
  if not ok then
    io.stderr:write("ugen: on_error hook raised: ", tostring(herr), "\n", "ugen: error in ", tostring(task),
      ": ", tostring(tb or err), "\n")
  end
end

local function finish(self, task, ok, r)
  task.finished = true
  task.wait = nil
  self.live[task] = nil
  self.ntasks = self.ntasks - 1
  local err, tb
  if ok then
    task.state = "done"
    r[1] = true
    task.results = r
  else
    err = r
    if task.cancelled and errors.is(err, "cancelled") then
      task.state = "cancelled"
    else
      task.state = "failed"
      tb = task.co and traceback(task.co, type(err) == "string" and err or tostring(err)) or nil
      task.traceback = tb
    end
    task.results = { n = 3, false, err, tb }
  end
  self.stat.finished = self.stat.finished + 1
  local aw = task.any_waiter     -- a join_any parked on this task (and others)
  if aw then
    task.any_waiter = nil
    local jt = aw.task
    if jt ~= nil then
      aw.task = nil
      jt.wait = nil
      wake(self, jt, nil)
    end
  end
  local joiners = task.joiners
  task.joiners = nil
  if joiners then
    for i = 1, #joiners do
      local w = joiners[i]
      if w.task ~= nil then
        local jt = w.task
        w.task = nil
        jt.wait = nil
        wake(self, jt, nil)
      end
    end
  end
  local handled = false
  if task.on_exit then
    local hok, h = pcall(task.on_exit, task)
    if not hok then report(self, task, h, nil) else handled = h == true end
  end
  if task.state == "failed" and not handled and not task.is_main and not task.watched then
    report(self, task, err, tb)
  end
end

local function resume(self, task)
  local value = task.wake_value
  task.wake_value = nil
  task.state = "running"
  local prev = self.current
  self.current = task
  local r
  if task.args then
    local args = task.args
    task.args = nil
    r = pack(co_resume(task.co, unpack(args, 1, args.n)))
  else
    r = pack(co_resume(task.co, value))
  end
  self.current = prev
  self.stat.resumes = self.stat.resumes + 1
  if not r[1] then
    finish(self, task, false, r[2])
  elseif co_status(task.co) == "dead" then
    finish(self, task, true, r)
  elseif r[2] == WAIT then
    if not task.in_ready then task.state = "waiting" end
  else
    wake(self, task, nil)   -- a plain coroutine.yield(): another turn later
  end
end

-- resume the tasks that were ready when this pass began
local function run_ready(self)
  local n = ready_count(self)
  local rq = self.rq
  for _ = 1, n do
    local h = self.rq_head
    local task = rq[h]
    rq[h] = nil
    self.rq_head = h + 1
    task.in_ready = false
    if not task.finished then resume(self, task) end
  end
  if self.rq_head > self.rq_tail then self.rq_head, self.rq_tail = 1, 0 end
end

local function fire_timers(self)
  local h = self.heap
  if h.n == 0 then return end
  local t = now()
  while h.n > 0 do
    local top = h[1]
    if top.task == nil then
      heap_pop(h)
    elseif top.at <= t then
      heap_pop(h)
      local task = top.task
      top.task = nil
      local q = top.queued
      if q then
        -- a queued request's deadline passed before a slot freed up: it is
        -- dropped from the queue (pump_host skips it) and fails as a timeout
        q.task = nil
        q.expired = true
      end
      task.wait = nil
      wake(self, task, nil)
    else
      break
    end
  end
end

-- nothing can make progress: no ready task, no timer, no transfer, no queue
local function idle(self)
  return ready_count(self) == 0 and next_timer(self) == nil and self.inflight == 0 and self.queued == 0
end

-- one round: run the ready tasks, wait at most `timeout` s (less when a timer
-- is due earlier, 0 when tasks are ready) for transfers or timers, collect
-- them, run the tasks they woke.
local function round(self, timeout)
  run_ready(self)
  fire_timers(self)
  pump_pending(self)
  local wait = timeout
  if ready_count(self) > 0 then
    wait = 0
  else
    local tm = next_timer(self)
    if tm then
      local d = tm.at - now()
      if d < wait then wait = d end
    end
    if wait < 0 then wait = 0 end
    if wait > MAX_POLL then wait = MAX_POLL end
  end
  if self.inflight > 0 then
    local done = self.engine:run(wait)
    for i = 1, #done do complete(self, done[i]) end
  elseif wait > 0 and next_timer(self) ~= nil then
    native.sleep(wait)   -- only timers pending: sleep until the earliest
  end
  self.stat.polls = self.stat.polls + 1
  fire_timers(self)
  run_ready(self)
end

-- fn(...) while this scheduler steps (its tasks may run: _M.current() finds them)
local function stepping(self, fn, ...)
  self.stepping = true
  actives[#actives + 1] = self
  local r = pack(pcall(fn, ...))
  actives[#actives] = nil
  self.stepping = false
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

---------------------------------------------------------------------------
-- waits of a task: coroutine-aware sleep and perform

-- the scheduler and task running right now in this coroutine: self's first,
-- then one of another running curl scheduler (innermost); nil outside tasks
local function owner(self)
  local t = current_in(self)
  if t then return self, t end
  for i = #actives, 1, -1 do
    local s = actives[i]
    t = current_in(s)
    if t then return s, t end
  end
  return nil
end

local function task_sleep(self, task, s)
  if task.cancelled then raise_cancelled() end
  if s <= 0 or s ~= s then
    wake(self, task, nil)
  else
    self.seq = self.seq + 1
    local entry = { kind = "timer", at = now() + s, seq = self.seq, task = task }
    task.wait = entry
    heap_push(self.heap, entry)
  end
  local v = co_yield(WAIT)
  task.wait = nil
  if v == CANCEL or task.cancelled then raise_cancelled() end
end

local function task_perform(self, task, req)
  if task.cancelled then raise_cancelled() end
  local host = host_of(self, origin_of(req.url))
  local entry = { kind = "transfer", task = task, req = req, host = host }
  if host.inflight < host_max(self, host) then
    submit(self, host, entry)          -- raises here on a bad request
  else
    local qt = host.qt + 1
    host.qt = qt
    host.q[qt] = entry
    entry.queued_at = now()
    self.queued = self.queued + 1
    if self.queued > self.stat.peak_queued then self.stat.peak_queued = self.queued end
    if type(req.deadline) == "number" then
      self.seq = self.seq + 1
      local timer = { kind = "timer", at = req.deadline, seq = self.seq, task = task, queued = entry }
      entry.expiry = timer
      heap_push(self.heap, timer)
    end
  end
  task.wait = entry
  local v = co_yield(WAIT)
  task.wait = nil
  if v == CANCEL or task.cancelled then
    abandon_wait(self, task)
    entry.task = nil
    raise_cancelled()
  end
  if entry.expired then
    return nil, { kind = "timeout", curl_code = 28, sent = false,
                  message = "the call's deadline passed while the request waited for a free slot " ..
                            "(max_concurrency)" }
  end
  if entry.raise ~= nil then error(entry.raise, 0) end
  local t = entry.transfer
  local res, err = t:result()
  t:close()
  return res, err
end

-- sleep(s): yields in a task, blocks elsewhere
local function sleep_in(self, s)
  local os_, task = owner(self)
  if task == nil then
    if s > 0 then native.sleep(s) end
    return
  end
  return task_sleep(os_, task, s)
end

-- perform(core request) -> res | nil, core err: yields in a task; elsewhere
-- (also in a coroutine no scheduler owns) blocks on self's engine, which
-- keeps driving the other transfers
local function perform_in(self, creq)
  local os_, task = owner(self)
  if task == nil then return engine(self):request(creq) end
  return task_perform(os_, task, creq)
end

-- seconds until self next needs to run (0: now), nil when it has no task
local function next_needed(self)
  if self.ntasks == 0 then return nil end
  if ready_count(self) > 0 or next(self.to_pump) ~= nil then return 0 end
  local d = MAX_POLL
  local tm = next_timer(self)
  if tm then
    local left = tm.at - now()
    if left < d then d = left end
  end
  if self.inflight > 0 and self.engine then
    local et = self.engine:timeout()
    if et and et < d then d = et end
  end
  if d < 0 then d = 0 end
  return d
end

local function joined(h)
  h.joined = true
  local r = h.results
  return h, unpack(r, 1, r.n)
end

-- the first ended, not yet joined handle; marks them watched (not reported
-- to on_error: join_any reports their errors). -> handle | nil, live count
local function first_ended(handles)
  local live = 0
  for i = 1, #handles do
    local h = handles[i]
    if not h.joined then
      h.watched = true
      if h.finished then return h end
      live = live + 1
    end
  end
  return nil, live
end

local function join_any(self, handles, timeout)
  if type(handles) ~= "table" then
    error("bad argument #1 to 'join_any' (table of task handles expected, got " .. type(handles) .. ")", 3)
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout) then
    error("bad argument #2 to 'join_any' (number of seconds expected, got " .. type(timeout) .. ")", 3)
  end
  local h, live = first_ended(handles)
  if h then return joined(h) end
  if live == 0 then error("ugen: join_any: nothing to wait for (every handle was joined)", 3) end
  if timeout and timeout <= 0 then return nil end
  local HS
  for i = 1, #handles do
    if not handles[i].joined then HS = handles[i].sched; break end
  end
  local MS, me = owner(self)
  if me and MS == HS then
    -- inside a task: park on every handle (and the timer), yield
    local token = { kind = "park", task = me }
    if timeout then
      MS.seq = MS.seq + 1
      token.kind, token.at, token.seq = "timer", now() + timeout, MS.seq
      heap_push(MS.heap, token)
    end
    for i = 1, #handles do
      local x = handles[i]
      if not x.joined then x.any_waiter = token end
    end
    me.wait = token
    local v = co_yield(WAIT)
    me.wait = nil
    token.task = nil
    if v == CANCEL or me.cancelled then raise_cancelled() end
    h = first_ended(handles)
    if h then return joined(h) end
    return nil
  end
  -- elsewhere: pump the handles' scheduler until one ended or the timeout
  if HS.stepping then
    error("ugen: join_any: called from a hook or a coroutine the scheduler does not own while it steps; " ..
          "wait from a task or from the main thread", 3)
  end
  local deadline = timeout and now() + timeout
  local ok = stepping(HS, function()
    while true do
      h = first_ended(handles)
      if h then return true end
      local wait = math_huge
      if deadline then
        wait = deadline - now()
        if wait <= 0 then return true end
      end
      if idle(HS) then
        if not deadline then return false end
        native.sleep(wait)
        return true
      end
      round(HS, wait)
    end
  end)
  if not ok then error("ugen: join_any: the tasks can never end (deadlock)", 3) end
  if h then return joined(h) end
  return nil
end

---------------------------------------------------------------------------
-- the runtime interface (ugen.runtime) of one scheduler

local NOARGS = { n = 0 }
local spawn, pump_until    -- below

local function make_runtime(self)
  local rt = { name = "curl", now = now, time = wall_time }
  function rt.sleep(s) return sleep_in(self, s) end
  function rt.perform(req)
    local creq = tcurl.to_core(req)
    local res, err = perform_in(self, creq)
    if res == nil then return nil, tcurl.map_error(err, creq) end
    return res
  end
  function rt.spawn(fn)
    if type(fn) ~= "function" then
      error("bad argument #1 to 'spawn' (function expected, got " .. type(fn) .. ")", 2)
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
  function rt.join_any(handles, timeout) return join_any(self, handles, timeout) end
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
      error("bad argument #1 to 'step' (non-negative number of seconds expected, got " ..
        (type(timeout) == "number" and tostring(timeout) or type(timeout)) .. ")", 2)
    end
    if current_in(self) then
      error("ugen: step() called from inside a task; SDK calls already yield there (do not pump the " ..
            "scheduler from a task)", 2)
    end
    if self.stepping then
      error("ugen: step() called while this scheduler is already stepping (from a hook or a foreign coroutine)", 2)
    end
    if self.ntasks == 0 then return nil end
    stepping(self, round, self, timeout)
    return next_needed(self)
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
    heap = { n = 0 }, seq = 0,
    transfers = {}, hosts = {}, inflight = 0, queued = 0, to_pump = {},
    live = {}, ntasks = 0,
    current = nil, stepping = false, closed = false,
    stat = { spawned = 0, finished = 0, resumes = 0, polls = 0, requests = 0, peak_inflight = 0,
             peak_host_inflight = 0, peak_queued = 0 },
  }, S_mt)
  return self
end

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
  local timers = 0
  for i = 1, self.heap.n do if self.heap[i].task then timers = timers + 1 end end
  s.timers = timers
  return s
end

function S.tasks(self) return self.ntasks end

function spawn(self, fn, args, hooks)
  if self.closed then error("ugen.scheduler: the scheduler is closed", 3) end
  local task = setmetatable({
    sched = self, co = co_create(fn), args = args, state = "ready", finished = false,
    cancelled = false, in_ready = false,
  }, T_mt)
  if hooks then
    task.on_exit, task.is_main = hooks.on_exit, hooks.is_main
  end
  self.live[task] = true
  self.ntasks = self.ntasks + 1
  self.stat.spawned = self.stat.spawned + 1
  wake(self, task, nil)
  return task
end

function S.spawn(self, fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'spawn' (function expected, got " .. type(fn) .. ")", 2)
  end
  return spawn(self, fn, pack(...))
end

local function check_timeout(timeout, fname)
  if timeout == nil then return 0 end
  if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
    error(string_format("bad argument #1 to '%s' (non-negative number of seconds expected, got %s)",
      fname, type(timeout) == "number" and tostring(timeout) or type(timeout)), 3)
  end
  return timeout
end

function S.step(self, timeout)
  timeout = check_timeout(timeout, "step")
  if current_in(self) then
    error("ugen: step() called from inside a task; SDK calls already yield there (do not pump the " ..
          "scheduler from a task)", 2)
  end
  if self.stepping then
    error("ugen: step() called while this scheduler is already stepping (from a hook or a foreign coroutine)", 2)
  end
  if self.ntasks == 0 then return 0 end
  stepping(self, round, self, timeout)
  return self.ntasks
end

function S.cancel_all(self)
  local list = {}
  for task in pairs(self.live) do list[#list + 1] = task end
  for i = 1, #list do list[i]:cancel() end
  return #list
end

-- pump (from outside any task) until cond() is true or nothing can progress.
-- -> true | false (deadlock: tasks alive, none can make progress)
function pump_until(self, cond)
  return stepping(self, function()
    while not cond() do
      if idle(self) then return false end
      round(self, math_huge)
    end
    return true
  end)
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
    error("bad argument #1 to 'run' (function expected, got " .. type(fn) .. ")", 2)
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
-- task objects

function T.cancel(self)
  if self.finished then return false end
  local s = self.sched
  if self.cancelled then return true end
  self.cancelled = true
  if self.args then                    -- never started: ends now
    self.args = nil
    finish(s, self, false, cancelled_error())
    return true
  end
  if s.current == self then return true end   -- cancelling itself: the next SDK wait raises
  abandon_wait(s, self)
  wake(s, self, CANCEL)
  return true
end

function T.status(self) return self.state end
function T.done(self) return self.finished end

function T.result(self)
  if not self.finished then return nil end
  local r = self.results
  return unpack(r, 1, r.n)
end

function T.join(self)
  local s = self.sched
  if not self.finished then
    local me = current_in(s)
    if me == self then error("ugen: a task cannot join itself", 2) end
    if me then
      local token = { kind = "park", task = me }
      local j = self.joiners or {}
      j[#j + 1] = token
      self.joiners = j
      me.wait = token
      local v = co_yield(WAIT)
      me.wait = nil
      if v == CANCEL or me.cancelled then raise_cancelled() end
    else
      if s.stepping then
        error("ugen: task:join() from a hook or a foreign coroutine while the scheduler steps; " ..
              "join from a task or from the main thread", 2)
      end
      if not pump_until(s, function() return self.finished end) then
        error("ugen: task:join(): the task can never finish (deadlock)", 2)
      end
    end
  end
  return self:result()
end

function T_mt.__tostring(self)
  return string_format("ugen.task(%s)", self.state)
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

-- -> scheduler, task when called from one of a running scheduler's tasks
function _M.current()
  for i = #actives, 1, -1 do
    local s = actives[i]
    local t = current_in(s)
    if t then return s, t end
  end
  return nil
end

function _M.run(fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'run' (function expected, got " .. type(fn) .. ")", 2)
  end
  local s = _M.current()
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
    error("bad argument #1 to 'spawn' (function expected, got " .. type(fn) .. ")", 2)
  end
  local s = _M.current() or _M.default()
  return spawn(s, fn, pack(...))
end

function _M.step(timeout)
  timeout = check_timeout(timeout, "step")
  local s = _M.default()
  if current_in(s) then
    error("ugen: step() called from inside a task; SDK calls already yield there", 2)
  end
  if s.stepping then
    error("ugen: step() called while the scheduler is already stepping (from a hook or a foreign coroutine)", 2)
  end
  if s.ntasks == 0 then return 0 end
  stepping(s, round, s, timeout)
  return s.ntasks
end

function _M.sleep(s)
  if type(s) ~= "number" or s ~= s then
    error("bad argument #1 to 'sleep' (number expected, got " .. type(s) .. ")", 2)
  end
  return sleep_in(_M.default(), s)
end

-- one pipeline request on the default runtime (blocking outside tasks)
function _M.perform(req)
  return _M.default():runtime().perform(req)
end

-- internal: for tests
_M._origin_of = origin_of
_M._heap = { push = heap_push, pop = heap_pop }

return _M
