-- ugen.runtime.luv: the libuv runtime (luv: Neovim's vim.loop, luvit's uv,
-- lua-luv). See ugen.runtime for the interface.
--
--   local rt = require("ugen.runtime.luv").new(uv[, opts])
--   local client = ugen.new{ api_key = key, runtime = rt }
--   client:spawn(function() ... end)   -- SDK calls in the task yield to the loop
--   uv.run()                           -- (luvit and Neovim run their loop themselves)
--
--   opts = { schedule = fn(cb),        -- where the SDK's work runs (Neovim: vim.schedule)
--            max_concurrency =, on_error = }   -- as for ugen.scheduler.new
--
-- In Neovim (a `vim` global with vim.loop, or vim.uv) ugen.new picks nvim() by itself:
-- one runtime per editor on vim.loop, its work run through vim.schedule.
--
-- The tasks, their waits, the per-origin queues and the blocking rules are the
-- libcurl scheduler's (ugen.runtime.curl, with its own engine): in a task every
-- SDK call yields; anywhere else it blocks (driving the other transfers too),
-- and afterwards the loop takes over again. What this module adds is the driver:
-- libuv runs the scheduler instead of rounds that wait in poll(2).
--   - one uv poll handle per socket libcurl watches, kept in step with
--     engine:changes() after every pass; an event calls engine:act(fd, events);
--   - one uv timer armed for when the scheduler next needs to run
--     (ugen.runtime.loop.next_needed: libcurl's timer, a task's sleep, a poll
--     interval, a queued request's deadline), or a uv idle handle for the
--     loop's next iteration (tasks ready, libcurl's timer at 0); either calls
--     engine:act() and runs the due timers. Nothing runs at a fixed rate: with
--     no task the timer is stopped, and when the last transfer ended no poll
--     handle is left, so uv.run() returns.
--   - a pass (act, then ugen.runtime.loop.turn: due timers, ready tasks for
--     at most PASS_BUDGET, queues) runs from the uv callback, or with
--     opts.schedule through it:
--     libuv callbacks only record the event (and pause the socket's poll handle
--     until the pass), and every user callback (task bodies, jobs:wait's
--     on_progress, a download's on_progress) runs where schedule runs it, so
--     in Neovim the editor's API may be called from all of them.
-- There is no step: the loop drives the client (client:step raises).

local curl = require "ugen.runtime.curl"
local loop = require "ugen.runtime.loop"
local task_mod = require "ugen.runtime.task"
local transfers = require "ugen.runtime.transfers"
local argerror = require("ugen.args").argerror
local now = require("ugen.native").now

local type, pairs, next, pcall, error, tostring, rawget, setmetatable =
  type, pairs, next, pcall, error, tostring, rawget, setmetatable
local math_ceil, string_gsub = math.ceil, string.gsub

local _M = { _VERSION = "0.1.0" }

-- what libcurl wants on a socket -> uv poll events
local POLL = { ["in"] = "r", out = "w", inout = "rw" }

-- retry delay (s) when another coroutine holds the scheduler part-way through a
-- round (a host that suspends coroutines: never in libuv's own callbacks)
local BUSY_RETRY = 0.01

-- the longest a pass resumes tasks before it gives the host's loop the turn
-- back (the tasks still ready run at its next iteration): the first run of ten
-- jobs:create costs ~15 ms of CPU, which would hold up the editor's timers
local PASS_BUDGET = loop.STEP_BUDGET

local OPTS = { schedule = true, max_concurrency = true, on_error = true }
local NOARGS = { n = 0 }

local function driver(uv, sched, opts)
  local schedule = opts.schedule
  local timer, idle = uv.new_timer(), uv.new_idle()
  local polls, interest, paused, pending = {}, {}, {}, {}
  local timer_due, queued, in_pass = false, false, false
  local on_timer, on_idle, on_poll, request

  -- come back in s seconds; 0: at the loop's next iteration (an idle handle: a
  -- timer re-armed at 0 from its own callback would run again before the loop
  -- polls, in libuv before 1.46); nil: nothing to do
  local function arm(s)
    timer:stop()
    idle:stop()
    if s then
      if s <= 0 then idle:start(on_idle) else timer:start(math_ceil(s * 1000), 0, on_timer) end
    end
  end

  -- watch what libcurl wants now; resume the handles paused for a pass
  local function sync()
    local e = sched.engine
    if e then
      local ch = e:changes()
      for i = 1, #ch do
        local fd, what = ch[i][1], ch[i][2]
        local p = polls[fd]
        if what == "remove" then
          if p then
            p:stop()
            p:close()
            polls[fd], interest[fd], paused[fd], pending[fd] = nil, nil, nil, nil
          end
        else
          if not p then
            p = assert(uv.new_socket_poll(fd))
            polls[fd] = p
          end
          interest[fd], paused[fd] = what, nil
          p:start(POLL[what], on_poll[fd])
        end
      end
    end
    for fd in pairs(paused) do
      paused[fd] = nil
      polls[fd]:start(POLL[interest[fd]], on_poll[fd])
    end
  end

  local function pass()
    local e = sched.engine
    if e then
      if next(pending) then
        local ev = pending
        pending = {}
        for fd, events in pairs(ev) do transfers.completed(sched, e:act(fd, events)) end
      end
      if timer_due then
        timer_due = false
        transfers.completed(sched, e:act())
      end
    end
    timer_due = false
    loop.turn(sched, now() + PASS_BUDGET)
  end

  local function run_pass()
    queued = false
    in_pass = true
    local ok, r = pcall(loop.stepping, sched, pass)
    in_pass = false
    sync()
    if ok and r == loop.BUSY then arm(BUSY_RETRY) else arm(loop.next_needed(sched)) end
    if not ok then error(r, 0) end
  end

  function request()
    if queued then return end
    queued = true
    if schedule then schedule(run_pass) else run_pass() end
  end

  function on_timer()
    timer_due = true
    request()
  end

  function on_idle()
    idle:stop()
    on_timer()
  end

  -- one callback per socket number, made once
  on_poll = setmetatable({}, { __index = function(t, fd)
    local function cb(err, events)
      local prev = pending[fd]
      events = err and "e" or events or ""
      pending[fd] = prev and prev .. events or events
      if schedule then               -- level-triggered: quiet until the pass has read it
        local p = polls[fd]
        if p and not paused[fd] then
          p:stop()
          paused[fd] = true
        end
      end
      request()
    end
    t[fd] = cb
    return cb
  end })

  -- the loop runs the scheduler at its next iteration (after a blocking call,
  -- which may have moved transfers and tasks, or a spawn); a pass re-arms itself
  local function kick()
    if not in_pass then
      timer_due = true
      arm(0)
    end
  end

  return kick
end

local function check_uv(uv, fname, level)
  if type(uv) ~= "table" or type(uv.new_timer) ~= "function" or type(uv.new_socket_poll) ~= "function"
      or type(uv.new_idle) ~= "function" then
    argerror(1, fname, "luv module expected (vim.loop, require \"luv\", luvit's require \"uv\"), got " ..
      type(uv), level + 1)
  end
end

function _M.new(uv, opts)
  check_uv(uv, "new", 2)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then argerror(2, "new", "table expected, got " .. type(opts), 2) end
  for k, v in pairs(opts) do
    if not OPTS[k] then argerror(2, "new", "unknown option '" .. tostring(k) .. "'", 2) end
    if k == "schedule" and type(v) ~= "function" then argerror(2, "new", "schedule must be a function", 2) end
  end
  -- the scheduler checks its own options; its complaint names argument #2 here
  local ok, sched = pcall(curl.new, { max_concurrency = opts.max_concurrency, on_error = opts.on_error })
  if not ok then
    local msg = string_gsub(string_gsub(tostring(sched), "^[^\n]-:%d+: ", ""), "argument #1", "argument #2", 1)
    error(msg, 2)
  end
  local kick = driver(uv, sched, opts)
  local base = sched:runtime()   -- its rules: yield in a task, block elsewhere
  local owner, b_perform, b_join_any, b_cancel = loop.owner, base.perform, base.join_any, base.cancel

  -- a call that blocked (outside a task) may have moved transfers and tasks:
  -- the loop catches up at its next iteration
  local function after(outside, ...)
    if outside then kick() end
    return ...
  end

  return {
    name = "luv",
    now = base.now,
    time = base.time,
    sleep = base.sleep,
    perform = function(req) return after(owner(sched) == nil, b_perform(req)) end,
    -- a task of the running task's scheduler, else of this one (the loop runs
    -- it, also when spawned from an engine callback during a pass)
    spawn = function(fn)
      if type(fn) ~= "function" then argerror(1, "spawn", "function expected, got " .. type(fn), 2) end
      return after(true, task_mod.spawn(owner(sched) or sched, fn, NOARGS))
    end,
    join_any = function(handles, timeout) return after(owner(sched) == nil, b_join_any(handles, timeout)) end,
    cancel = function(h) return after(true, b_cancel(h)) end,
  }
end

-- Neovim: a `vim` global with vim.uv (0.10+) or vim.loop: luv on the editor's loop
local function editor_uv()
  local vim = rawget(_G, "vim")
  if type(vim) ~= "table" or type(vim.schedule) ~= "function" then return nil end
  local uv = vim.uv or vim.loop
  return type(uv) == "table" and uv or nil
end

function _M.in_nvim() return editor_uv() ~= nil end

local nvim_rt
-- the editor's runtime (one per Neovim): vim.loop, work through vim.schedule,
-- a failed task reported with vim.notify
function _M.nvim()
  if nvim_rt == nil then
    local uv = editor_uv()
    if not uv then error("ugen.runtime.luv.nvim: not inside Neovim (no vim.loop)", 2) end
    local vim = rawget(_G, "vim")
    nvim_rt = _M.new(uv, {
      schedule = vim.schedule,
      on_error = function(err, task, tb)
        vim.notify("ugen: error in " .. tostring(task) .. ": " .. tostring(tb or err), vim.log.levels.ERROR)
      end,
    })
  end
  return nvim_rt
end

return _M
