-- ugen.runtime.loop: drives a curl scheduler (ugen.runtime.curl). Owns the
-- round (run the ready tasks, fire due timers, wait in curl_multi_poll or
-- nanosleep until the next transfer or timer, wake what ended), the stack of
-- schedulers currently stepping (which one owns the running coroutine), and
-- the waits of the SDK on a scheduler: sleep and perform (yield in one of its
-- tasks, block elsewhere) and join_any.
--
--   loop.round(sched, timeout)       -- one round, waiting at most timeout s
--   loop.turn(sched[, deadline])     -- a round that never waits, for a host's event loop
--                                    -- (ugen.runtime.luv; it collects the transfers itself)
--   loop.stepping(sched, fn, ...)    -- fn(...) with sched claimed as stepping (atomic) | loop.BUSY
--   loop.pump_until(sched, cond)     -- drive until cond() -> true | false (deadlock)
--   loop.current()                   -- -> sched, task of the running coroutine | nil
--   loop.owner(sched)                -- same, sched's own task first
--   loop.sleep(sched, s)  loop.perform(sched, creq)  loop.join_any(sched, handles[, timeout])
--   loop.next_needed(sched)          -- s until sched next needs to run | nil without tasks
--
-- Requires ugen.native and the lower runtime modules (timer_heap, task,
-- transfers); the scheduler table is made by ugen.runtime.curl.

local native = require "ugen.native"
local timer_heap = require "ugen.runtime.timer_heap"
local task_mod = require "ugen.runtime.task"
local transfers = require "ugen.runtime.transfers"
local argerror = require("ugen.args").argerror

local type, error, pcall, next = type, error, pcall, next
local co_running, co_status, table_remove, setmetatable =
  coroutine.running, coroutine.status, table.remove, setmetatable
local cas = native.cas
local math_huge = math.huge
local unpack = table.unpack or unpack -- luacheck: ignore 143
local now = native.now
local heap_pop, heap_add = timer_heap.pop, timer_heap.add
local wake, park, ready_count, run_ready, current_in, pack =
  task_mod.wake, task_mod.park, task_mod.ready_count, task_mod.run_ready, task_mod.current_in, task_mod.pack

local _M = { MAX_POLL = 3600,    -- longest single wait in curl_multi_poll / nanosleep (s)
             SOCKET_POLL = 0.01,  -- next_needed while a transfer is in flight (s), see there
             STEP_BUDGET = 0.004 } -- task time of one host step (s), see round
local MAX_POLL, SOCKET_POLL = _M.MAX_POLL, _M.SOCKET_POLL

-- schedulers currently inside step(), innermost last
local actives = {}

---------------------------------------------------------------------------
-- timers (an entry whose task is nil is dead: skipped)

local function next_timer(sched)
  local h = sched.heap
  while h.n > 0 and h[1].task == nil do heap_pop(h) end
  return h[1]
end

local function fire_timers(sched)
  local h = sched.heap
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
        -- dropped from the queue (the origin's pump skips it) and fails as a timeout
        q.task = nil
        q.expired = true
      end
      task.wait = nil
      wake(sched, task, nil)
    else
      break
    end
  end
end

---------------------------------------------------------------------------
-- rounds

-- nothing can make progress: no ready task, no timer, no transfer, no queue
local function idle(sched)
  return ready_count(sched) == 0 and next_timer(sched) == nil and sched.inflight == 0 and sched.queued == 0
end

-- one round: run the ready tasks, wait at most `timeout` s (less when a timer
-- is due earlier, 0 when tasks are ready) for transfers or timers, collect
-- them, run the tasks they woke. With a budget (s: a host's step), the tasks
-- run until it is spent and the rest stay ready for the next round: a step
-- that finds 20 tasks to start (each builds its request, about 1 ms of CPU
-- the first time) spreads them over a few frames instead of taking 20 ms.
local function round(sched, timeout, budget)
  local deadline = budget and now() + budget
  run_ready(sched, deadline)
  fire_timers(sched)
  transfers.pump_pending(sched)
  local wait = timeout
  if ready_count(sched) > 0 then
    wait = 0
  else
    local tm = next_timer(sched)
    if tm then
      local d = tm.at - now()
      if d < wait then wait = d end
    end
    if wait < 0 then wait = 0 end
    if wait > MAX_POLL then wait = MAX_POLL end
  end
  if sched.inflight > 0 then
    transfers.collect(sched, wait)
  elseif wait > 0 and next_timer(sched) ~= nil then
    native.sleep(wait)   -- only timers pending: sleep until the earliest
  end
  sched.stat.polls = sched.stat.polls + 1
  fire_timers(sched)
  run_ready(sched, deadline)
end
_M.round = round

-- a round for a host's event loop, which has handed the finished transfers to
-- transfers.completed already: fire due timers, run the ready tasks (until
-- the deadline, when given: then the host's loop gets the turn back), move the
-- queues. The host asks next_needed(sched) when to come back (0: tasks still ready).
function _M.turn(sched, deadline)
  fire_timers(sched)
  run_ready(sched, deadline)
  transfers.pump_pending(sched)
end

-- drop sched from the stack by identity: a host that interrupts steps (HAProxy's
-- forced yields) may end them in another order than it began them
local function remove_active(sched)
  for i = #actives, 1, -1 do
    if actives[i] == sched then table_remove(actives, i); return end
  end
end

-- Who steps a scheduler: sched.stepping_co holds the coroutine (true for the
-- 5.1 main thread) that claimed it, sched.stepping mirrors it for readers. The
-- claim is one C call (native.cas), so a host that interrupts Lua code at any
-- instruction (HAProxy's forced yields: a count hook yields the coroutine that
-- runs client:step and resumes it later, while its other tasks step too)
-- cannot let two coroutines run a round of the same scheduler.
local BUSY = setmetatable({}, { __tostring = function() return "ugen.runtime.loop.BUSY" end })
_M.BUSY = BUSY

-- -> true (claimed) | BUSY (another coroutine steps it and is suspended: come back
-- later) | false (this very coroutine steps it already: a re-entrant call)
local function claim(sched)
  local me = co_running() or true
  if cas(sched, "stepping_co", nil, me) then return true end
  local holder = sched.stepping_co
  if holder == me then return false end
  if type(holder) == "thread" and co_status(holder) == "dead" and cas(sched, "stepping_co", holder, me) then
    -- the host dropped that coroutine for good part-way through a round: the
    -- round can never finish there, so it goes on here
    remove_active(sched)
    return true
  end
  if holder == nil then return claim(sched) end    -- released in between
  return BUSY
end

-- fn(...) while this scheduler steps (its tasks may run: current() finds them).
-- -> BUSY without calling fn when another coroutine, suspended by the host,
-- steps it; raises when this coroutine steps it already (re-entrant).
local function stepping(sched, fn, ...)
  local c = claim(sched)
  if c == BUSY then return BUSY end
  if not c then
    error("ugen: step() called while this scheduler is already stepping (from a hook or a foreign coroutine)", 3)
  end
  sched.stepping = true
  actives[#actives + 1] = sched
  local r = pack(pcall(fn, ...))
  remove_active(sched)
  sched.stepping = false
  sched.stepping_co = nil
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end
_M.stepping = stepping

-- pump (from outside any task) until cond() is true or nothing can progress.
-- -> true | false (deadlock: tasks alive, none can make progress)
local SUSPENDED_STEP = "ugen: cannot wait here: the scheduler is stepping in another coroutine that its host " ..
  "has suspended; wait from one of its tasks (client:spawn) instead"

function _M.pump_until(sched, cond)
  local r = stepping(sched, function()
    while not cond() do
      if idle(sched) then return false end
      round(sched, math_huge)
    end
    return true
  end)
  if r == BUSY then error(SUSPENDED_STEP, 3) end
  return r
end

-- seconds until sched next needs to run (0: now), nil when it has no task.
-- What step() returns to a host that calls it from its own timer or frame and
-- sees none of the engine's sockets: while a transfer is in flight its answer
-- may arrive at any moment, and libcurl's own timer (engine:timeout()) is then
-- only the transfer's next deadline (200 ms, 5 s, its timeout), so the answer
-- is at most SOCKET_POLL: a host that waits what step returns reads an answer
-- within SOCKET_POLL, not at libcurl's next deadline. A host that watches the
-- sockets itself uses engine:changes() / engine:timeout() instead.
function _M.next_needed(sched)
  if sched.ntasks == 0 then return nil end
  if ready_count(sched) > 0 or next(sched.to_pump) ~= nil then return 0 end
  local d = MAX_POLL
  local tm = next_timer(sched)
  if tm then
    local left = tm.at - now()
    if left < d then d = left end
  end
  if sched.inflight > 0 and sched.engine then
    local et = sched.engine:timeout()
    if et and et < d then d = et end
    if d > SOCKET_POLL then d = SOCKET_POLL end
  end
  if d < 0 then d = 0 end
  return d
end

function _M.live_timers(sched)
  local h, n = sched.heap, 0
  for i = 1, h.n do if h[i].task then n = n + 1 end end
  return n
end

---------------------------------------------------------------------------
-- who runs: the scheduler and task of the running coroutine

-- -> scheduler, task when called from one of a running scheduler's tasks
function _M.current()
  for i = #actives, 1, -1 do
    local s = actives[i]
    local t = current_in(s)
    if t then return s, t end
  end
  return nil
end

-- sched's task running right now in this coroutine, else one of another
-- running curl scheduler (innermost); nil outside tasks
local function owner(sched)
  local t = current_in(sched)
  if t then return sched, t end
  return _M.current()
end
_M.owner = owner

---------------------------------------------------------------------------
-- waits: yield in a task, block elsewhere

-- sleep(s): yields in a task, blocks elsewhere
function _M.sleep(sched, s)
  if actives[1] == nil then    -- no scheduler steps, so no task runs: block
    if s > 0 then native.sleep(s) end
    return
  end
  local os_, task = owner(sched)
  if task == nil then
    if s > 0 then native.sleep(s) end
    return
  end
  if task.cancelled then task_mod.raise_cancelled() end
  if s <= 0 or s ~= s then
    wake(os_, task, nil)
    park(task, nil)
  else
    park(task, heap_add(os_.heap, { task = task }, now() + s))
  end
end

-- perform(core request) -> res | nil, core err: yields in a task; elsewhere
-- (also in a coroutine no scheduler owns) blocks on sched's engine, which
-- keeps driving the other transfers
function _M.perform(sched, creq)
  -- no scheduler steps, so no task runs (the common blocking call): block
  if actives[1] == nil then return (sched.engine or transfers.engine(sched)):request(creq) end
  local os_, task = owner(sched)
  if task == nil then return transfers.engine(sched):request(creq) end
  return transfers.perform(os_, task, creq)
end

local first_ended, joined = task_mod.first_ended, task_mod.joined

-- (error levels: 3 = the caller of the runtime's join_any)
function _M.join_any(sched, handles, timeout)
  if type(handles) ~= "table" then
    argerror(1, "join_any", "table of task handles expected, got " .. type(handles), 3)
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout) then
    argerror(2, "join_any", "number of seconds expected, got " .. type(timeout), 3)
  end
  local h, live = first_ended(handles)
  if h then return joined(h) end
  if live == 0 then error("ugen: join_any: nothing to wait for (every handle was joined)", 3) end
  if timeout and timeout <= 0 then return nil end
  local HS
  for i = 1, #handles do
    if not handles[i].joined then HS = handles[i].sched; break end
  end
  local MS, me = owner(sched)
  if me and MS == HS then
    -- inside a task: park on every handle (and the timer), yield
    local token = { task = me }
    if timeout then heap_add(MS.heap, token, now() + timeout) end
    for i = 1, #handles do
      local x = handles[i]
      if not x.joined then x.any_waiter = token end
    end
    park(me, token)
    token.task = nil
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
  if ok == BUSY then error(SUSPENDED_STEP, 3) end
  if not ok then error("ugen: join_any: the tasks can never end (deadlock)", 3) end
  if h then return joined(h) end
  return nil
end

return _M
