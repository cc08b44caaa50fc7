-- ugen.resources.jobs_many: awaiting many jobs at once (client.jobs).
--
--   jobs:wait_all(ids[, opts])     -> jobs, errs
--       jobs[i]: the completed job for ids[i] (or nil); errs[i]: why ids[i] did
--       not complete (nil when it did): the error jobs:wait gives (kind
--       "job_failed" with err.job, "timeout" code WAIT_TIMEOUT, "not_found", ...),
--       with err.index = i and err.job_id = ids[i]. errs is always a table
--       (empty when every job completed): `if next(errs) then ... end`.
--       (The same shape as ugen.ngx.wait_all.)
--   jobs:wait_any(ids[, opts])     -> job, i | nil, err, i
--       the first job to reach a terminal state (or to fail being polled):
--       completed -> job, i; failed/cancelled/deadline/other -> nil, err, i.
--       The other jobs stop being polled.
--   jobs:as_finished(ids[, opts])  -> iterator over the jobs in the order they finish:
--       for i, job, err in client.jobs:as_finished(ids, opts) do ... end
--       yields every index exactly once (job or nil, err as for wait_all); at
--       the deadline the remaining ones come out with kind "timeout". Leaving
--       the loop early: Lua 5.4 closes the iterator by itself; elsewhere call
--       it:close() (local it = client.jobs:as_finished(ids); for i, j, e in it do ... end)
--       so the remaining polls stop.
--
--   opts = { interval = 10,        -- seconds between polls of one job
--            timeout = 1800,       -- ONE deadline for the whole call (seconds from now)
--            on_progress = fn(job, id, i),  -- per job, on its first poll and on every
--                                  -- change of current_stage / progress_percent
--            headers =, max_retries = }     -- per poll, as for jobs:wait
--
-- Every job is polled by its own task (jobs:wait) in the scheduler
-- (ugen.scheduler): inside ugen.run / a spawned task the caller yields while
-- it waits; elsewhere the call blocks, pumping the default scheduler (other
-- spawned tasks progress meanwhile). Polls in flight are capped by the
-- scheduler's max_concurrency per origin (default "auto": 1024 over HTTP/2,
-- 64 over HTTP/1.1); the rest queue.
-- An error raised by on_progress ends the call: it is re-raised in the caller
-- after the other polls are stopped.

local errors = require "ugen.errors"
local sched = require "ugen.sched"
local scheduler = require "ugen.scheduler"

local type, pairs, tostring, error, setmetatable, select, string_format, math_floor =
  type, pairs, tostring, error, setmetatable, select, string.format, math.floor

local _M = { _VERSION = "0.1.0" }

local OPTS = { interval = true, timeout = true, on_progress = true, headers = true, max_retries = true }

local function argerr(n, fname, msg, level)
  error(string_format("bad argument #%d to '%s' (%s)", n, fname, msg), level + 1)
end

local function check_args(self, fname, ids, opts, level)
  level = level + 1
  if type(self) ~= "table" or type(self.wait) ~= "function" then
    error(string_format("ugen: call client.jobs:%s(...) with a colon", fname), level)
  end
  if type(ids) ~= "table" then argerr(1, fname, "table of job ids expected, got " .. type(ids), level) end
  local n = #ids
  for i = 1, n do
    local id = ids[i]
    if type(id) ~= "string" or id == "" then
      argerr(1, fname, string_format("ids[%d]: job id string expected, got %s", i, type(id)), level)
    end
  end
  for k in pairs(ids) do
    if type(k) ~= "number" or k < 1 or k > n or k ~= math_floor(k) then
      argerr(1, fname, "ids must be an array (found key " .. tostring(k) .. ")", level)
    end
  end
  if opts ~= nil and type(opts) ~= "table" then argerr(2, fname, "table expected, got " .. type(opts), level) end
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTS[k] then argerr(2, fname, "unknown option '" .. tostring(k) .. "'", level) end
  end
  local interval, timeout = opts.interval or 10, opts.timeout or 1800
  if type(interval) ~= "number" or interval ~= interval or interval <= 0 then
    argerr(2, fname, "opts.interval must be a positive number", level)
  end
  if type(timeout) ~= "number" or timeout ~= timeout or timeout <= 0 then
    argerr(2, fname, "opts.timeout must be a positive number", level)
  end
  if opts.on_progress ~= nil and type(opts.on_progress) ~= "function" then
    argerr(2, fname, "opts.on_progress must be a function", level)
  end
  if opts.headers ~= nil and type(opts.headers) ~= "table" then
    argerr(2, fname, "opts.headers must be a table", level)
  end
  local mr = opts.max_retries
  if mr ~= nil and (type(mr) ~= "number" or mr < 0 or mr ~= math_floor(mr)) then
    argerr(2, fname, "opts.max_retries must be an integer >= 0", level)
  end
  return n, opts, interval, timeout
end

---------------------------------------------------------------------------
-- a group: one waiting task per id, results queued in finishing order

local G = {}
local G_mt = { __index = G, __name = "ugen.jobs_group" }

local function group_close(g)
  if g.closed then return end
  g.closed = true
  if g.caller then g.caller:remove_cleanup(g) end
  for i = 1, g.n do
    local c = g.children[i]
    if c and not c:done() then c:cancel() end
  end
  local S = g.S
  if g.private then
    S:close()
  elseif not g.caller and not S.stepping then
    -- let the cancelled tasks unwind now (their transfers are closed already)
    S:_pump_until(function()
      for i = 1, g.n do
        local c = g.children[i]
        if c and not c:done() then return false end
      end
      return true
    end)
  end
end
G.close = group_close
G_mt.__close = group_close

local function child_done(g, i, task)
  if g.closed then return false end
  g.pending = g.pending - 1
  local st = task:status()
  local job, err
  if st == "done" then
    local _, j, e = task:result()
    job, err = j, e
    if job == nil and err == nil then
      err = errors.new{ kind = "api", message = "jobs:wait returned nothing for job " .. g.ids[i] }
    end
  elseif st == "cancelled" then
    err = select(2, task:result())
  else
    local _, e, tb = task:result()
    g.raise = g.raise or { err = e, tb = tb }
  end
  if job == nil and err ~= nil then
    if type(err) == "table" then err.index, err.job_id = i, g.ids[i] end
    job = nil
  end
  if st ~= "failed" then
    local qt = g.qt + 1
    g.qt = qt
    g.q[qt] = { i, job, err }
  end
  if g.caller then g.S:_unpark(g.caller) end
  return st == "failed"     -- the raised error goes to the caller, not to on_error
end

local function new_group(self, ids, n, opts, interval, timeout)
  local S, caller = scheduler.current()
  local private = false
  if not caller then
    S = scheduler.default()
    if S.stepping then      -- from a hook or a foreign coroutine during a step
      S = scheduler.new{ max_concurrency = S.max, on_error = S.on_error }
      private = true
    end
  end
  local g = setmetatable({ S = S, caller = caller, private = private, ids = ids, n = n, pending = n,
                           q = {}, qh = 1, qt = 0, children = {}, closed = false }, G_mt)
  local deadline = sched.now() + timeout
  local on_progress = opts.on_progress
  for i = 1, n do
    local id = ids[i]
    local prog = on_progress and function(job) on_progress(job, id, i) end
    g.children[i] = S:_spawn(function()
      local left = deadline - sched.now()
      if left <= 0 then left = 1e-3 end
      return self:wait(id, { interval = interval, timeout = left, on_progress = prog,
                             headers = opts.headers, max_retries = opts.max_retries })
    end, { n = 0 }, { on_exit = function(task) return child_done(g, i, task) end })
  end
  if caller then caller:add_cleanup(g, function() group_close(g) end) end
  return g
end

-- -> i, job, err | nil when every index was delivered
local function group_next(g)
  while true do
    if g.raise then
      local r = g.raise
      group_close(g)
      if type(r.err) == "string" then error(r.tb or r.err, 0) end
      error(r.err, 0)
    end
    if g.qh <= g.qt then
      local item = g.q[g.qh]
      g.q[g.qh] = nil
      g.qh = g.qh + 1
      return item[1], item[2], item[3]
    end
    if g.pending == 0 or g.closed then return nil end
    if g.caller then
      g.S:_park(g.caller)
    else
      local S = g.S
      local ok = S:_pump_until(function() return g.raise ~= nil or g.qh <= g.qt or g.pending == 0 end)
      if not ok then
        group_close(g)
        error("ugen: jobs wait: no task can make progress (deadlock)", 0)
      end
    end
  end
end

function G.__call(g) -- luacheck: ignore 212
  local i, job, err = group_next(g)
  if i == nil then group_close(g) end
  return i, job, err
end
G_mt.__call = G.__call

---------------------------------------------------------------------------
-- the methods

-- Inside nginx the client's transport is cosockets, which the curl-multi
-- scheduler cannot drive: wait_all hands off to ugen.ngx (ngx.thread based,
-- same results); the other two would block the worker, so they refuse.
local function on_ngx(self)
  local client = self._client
  return type(client) == "table" and client.transport_name == "ngx"
end

local function refuse_on_ngx(self, fname)
  if on_ngx(self) then
    error(string_format("ugen: client.jobs:%s is not available on the ngx transport; " ..
      "use client.jobs:wait_all (ngx.thread based) or ngx.thread.spawn with client.jobs:wait", fname), 3)
  end
end

function _M.wait_all(self, ids, opts)
  if on_ngx(self) then return require("ugen.ngx").wait_all(self._client, ids, opts) end
  local n, o, interval, timeout = check_args(self, "wait_all", ids, opts, 2)
  local jobs, errs = {}, {}
  if n == 0 then return jobs, errs end
  local g = new_group(self, ids, n, o, interval, timeout)
  while true do
    local i, job, err = group_next(g)
    if i == nil then break end
    if job then jobs[i] = job else errs[i] = err end
  end
  group_close(g)
  return jobs, errs
end

function _M.wait_any(self, ids, opts)
  refuse_on_ngx(self, "wait_any")
  local n, o, interval, timeout = check_args(self, "wait_any", ids, opts, 2)
  if n == 0 then argerr(1, "wait_any", "at least one job id expected", 2) end
  local g = new_group(self, ids, n, o, interval, timeout)
  local i, job, err = group_next(g)
  group_close(g)
  if job then return job, i end
  return nil, err, i
end

function _M.as_finished(self, ids, opts)
  refuse_on_ngx(self, "as_finished")
  local n, o, interval, timeout = check_args(self, "as_finished", ids, opts, 2)
  local g
  if n == 0 then
    g = setmetatable({ n = 0, pending = 0, q = {}, qh = 1, qt = 0, children = {}, closed = true }, G_mt)
  else
    g = new_group(self, ids, n, o, interval, timeout)
  end
  -- a callable object (works with every Lua's generic for); the 4th value
  -- is Lua 5.4's to-be-closed variable
  return g, nil, nil, g
end

-- Add the methods to a jobs resource table (client.jobs).
function _M.extend(r)
  r.wait_all = _M.wait_all
  r.wait_any = _M.wait_any
  r.as_finished = _M.as_finished
  return r
end

return _M
