-- ugen.runtime.task: the tasks of a curl scheduler (ugen.runtime.curl) and
-- their run queue. Owns the task object (cancel/status/done/result/join and
-- the hooks on_exit/is_main/watched), its life cycle (spawn -> resume ->
-- finish, errors to the scheduler's on_error), the run queue (wake, run_ready)
-- and the wait protocol every wait of a task follows:
--
--   task.wait = token (a table with token.task = the task; optional
--   token.drop(sched, token) called when the task abandons the wait),
--   coroutine.yield(WAIT); the waker clears token.task and calls wake(sched,
--   task). A cancelled task is woken with CANCEL and raises an ugen error of
--   kind "cancelled". park(task, token) is that sequence.
--
-- Requires ugen.errors only. The scheduler object is a plain table; this module
-- reads/writes its fields rq, rq_head, rq_tail (run queue), current (the task
-- being resumed), live, ntasks, stat, on_error, closed, and calls back into it
-- through ONE method: sched:pump_until(cond) (drive the scheduler from outside
-- its tasks until cond() is true; -> false on deadlock), used by task:join()
-- from outside a task.

local errors = require "ugen.errors"
local now = require("ugen.native").now

local co_create, co_resume, co_yield, co_running, co_status =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.running, coroutine.status
local type, tostring, error, pcall, select, setmetatable =
  type, tostring, error, pcall, select, setmetatable
local string_format = string.format
local traceback = debug.traceback
local unpack = table.unpack or unpack -- luacheck: ignore 143

local _M = {}

-- what a task yields when it registered a wait; what a cancelled task is woken with
local WAIT = setmetatable({}, { __tostring = function() return "ugen.scheduler.WAIT" end })
local CANCEL = setmetatable({}, { __tostring = function() return "ugen.scheduler.CANCEL" end })
_M.WAIT, _M.CANCEL = WAIT, CANCEL

local function pack(...) return { n = select("#", ...), ... } end
_M.pack = pack

local T = {}
local T_mt = { __index = T, __name = "ugen.task" }

local function cancelled_error()
  return errors.new{ kind = "cancelled", code = "CANCELLED", message = "task cancelled", retryable = false }
end

local function raise_cancelled()
  error(cancelled_error(), 0)
end
_M.raise_cancelled = raise_cancelled

-- the task of `sched` running right now in this very coroutine, or nil
local function current_in(sched)
  local t = sched.current
  if t ~= nil and t.co == co_running() then return t end
  return nil
end
_M.current_in = current_in

---------------------------------------------------------------------------
-- run queue

local function wake(sched, task, value)
  if task.finished then return end
  task.wake_value = value
  if not task.in_ready then
    task.in_ready = true
    local tail = sched.rq_tail + 1
    sched.rq_tail = tail
    sched.rq[tail] = task
  end
  if task.state ~= "running" then task.state = "ready" end
end
_M.wake = wake

local function ready_count(sched) return sched.rq_tail - sched.rq_head + 1 end
_M.ready_count = ready_count

-- the running task waits on `token` (nil: just gives the turn after a wake);
-- raises "cancelled" when it was cancelled meanwhile
local function park(task, token)
  task.wait = token
  local v = co_yield(WAIT)
  task.wait = nil
  if v == CANCEL or task.cancelled then
    if token then token.task = nil end
    raise_cancelled()
  end
end
_M.park = park

---------------------------------------------------------------------------
-- handles being joined (join_any of every runtime whose handles keep
-- finished / results = pack(pcall(fn)) / joined: these tasks, tarantool's
-- fibers, HAProxy's tasks)

-- the first ended, not yet joined handle; marks them watched (a task's error
-- then goes to join_any, not to on_error). -> handle | nil, live count
function _M.first_ended(handles)
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

-- h is joined: -> h, ok, ... (its pcall's results)
function _M.joined(h)
  h.joined = true
  local r = h.results
  return h, unpack(r, 1, r.n)
end

-- drop whatever `task` waits on (cancel). Safe inside an engine callback.
local function abandon_wait(sched, task)
  local w = task.wait
  task.wait = nil
  if w == nil then return end
  w.task = nil
  local drop = w.drop
  if drop then drop(sched, w) end
end

---------------------------------------------------------------------------
-- life cycle

local function default_on_error(err, task, tb)
  local msg = tb or tostring(err)
  io.stderr:write("ugen: error in ", tostring(task), ": ", msg, "\n")
end

local function report(sched, task, err, tb)
  local hook = sched.on_error
  if hook == false then return end
  hook = hook or default_on_error
  local ok, herr = pcall(hook, err, task, tb)
  if not ok then
    io.stderr:write("ugen: on_error hook raised: ", tostring(herr), "\n", "ugen: error in ", tostring(task),
      ": ", tostring(tb or err), "\n")
  end
end

-- wake the task parked on `token` (join / join_any), if any still is
local function release(sched, token)
  local jt = token.task
  if jt ~= nil then
    token.task = nil
    jt.wait = nil
    wake(sched, jt, nil)
  end
end

local function finish(sched, task, ok, r)
  task.finished = true
  task.wait = nil
  sched.live[task] = nil
  sched.ntasks = sched.ntasks - 1
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
  sched.stat.finished = sched.stat.finished + 1
  local aw = task.any_waiter     -- a join_any parked on this task (and others)
  if aw then
    task.any_waiter = nil
    release(sched, aw)
  end
  local joiners = task.joiners
  task.joiners = nil
  if joiners then
    for i = 1, #joiners do release(sched, joiners[i]) end
  end
  local handled = false
  if task.on_exit then
    local hok, h = pcall(task.on_exit, task)
    if not hok then report(sched, task, h, nil) else handled = h == true end
  end
  if task.state == "failed" and not handled and not task.is_main and not task.watched then
    report(sched, task, err, tb)
  end
end

local function resume(sched, task)
  local value = task.wake_value
  task.wake_value = nil
  task.state = "running"
  local prev = sched.current
  sched.current = task
  local r
  if task.args then
    local args = task.args
    task.args = nil
    r = pack(co_resume(task.co, unpack(args, 1, args.n)))
  else
    r = pack(co_resume(task.co, value))
  end
  sched.current = prev
  sched.stat.resumes = sched.stat.resumes + 1
  if not r[1] then
    finish(sched, task, false, r[2])
  elseif co_status(task.co) == "dead" then
    finish(sched, task, true, r)
  elseif r[2] == WAIT then
    if not task.in_ready then task.state = "waiting" end
  else
    wake(sched, task, nil)   -- a plain coroutine.yield(): another turn later
  end
end

-- resume the tasks that were ready when this pass began; with a deadline
-- (seconds of native.now()), stop once it has passed (after at least one task):
-- the others stay first in the queue for the next pass
function _M.run_ready(sched, deadline)
  local n = ready_count(sched)
  local rq = sched.rq
  for i = 1, n do
    if deadline and i > 1 and now() >= deadline then break end
    local h = sched.rq_head
    local task = rq[h]
    rq[h] = nil
    sched.rq_head = h + 1
    task.in_ready = false
    if not task.finished then
      resume(sched, task)
    end
  end
  if sched.rq_head > sched.rq_tail then sched.rq_head, sched.rq_tail = 1, 0 end
end

-- a new task running fn(unpack(args)) at the scheduler's next round;
-- hooks: { on_exit = fn(task) -> true when it handled a failure, is_main = bool }
function _M.spawn(sched, fn, args, hooks)
  if sched.closed then error("ugen.scheduler: the scheduler is closed", 3) end
  local task = setmetatable({
    sched = sched, co = co_create(fn), args = args, state = "ready", finished = false,
    cancelled = false, in_ready = false,
  }, T_mt)
  if hooks then
    task.on_exit, task.is_main = hooks.on_exit, hooks.is_main
  end
  sched.live[task] = true
  sched.ntasks = sched.ntasks + 1
  sched.stat.spawned = sched.stat.spawned + 1
  wake(sched, task, nil)
  return task
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
      local token = { task = me }
      local j = self.joiners or {}
      j[#j + 1] = token
      self.joiners = j
      park(me, token)
    else
      if s.stepping then
        error("ugen: task:join() from a hook or a foreign coroutine while the scheduler steps; " ..
              "join from a task or from the main thread", 2)
      end
      if not s:pump_until(function() return self.finished end) then
        error("ugen: task:join(): the task can never finish (deadlock)", 2)
      end
    end
  end
  return self:result()
end

function T_mt.__tostring(self)
  return string_format("ugen.task(%s)", self.state)
end

return _M
