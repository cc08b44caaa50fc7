-- ugen.resources.jobs_wait: awaiting jobs (client.jobs), written once over the
-- client's runtime (ugen.runtime), so every runtime has all of them: the curl
-- runtime (blocking, or yielding inside ugen.run / a spawned task), OpenResty
-- (light threads) and a user's.
--
--   jobs:wait(job_id[, opts])      -> job | nil, err   (needs now + sleep only)
--       completed            -> job
--       failed / cancelled   -> nil, err{kind = "job_failed", code = "JOB_FAILED" | "JOB_CANCELLED", job = job}
--       deadline passed      -> nil, err{kind = "timeout", code = "WAIT_TIMEOUT", job = last job seen}
--       non-retryable error  -> nil, err (auth, not_found, ...) at once
--     Retryable errors (network, 5xx, 429) of a poll, after the pipeline's own
--     retries, do not end the wait: polling goes on until the deadline (the
--     next poll after max(interval, the error's retry_after)). The deadline is
--     a deadline: every poll gets it (each attempt's transfer timeout is at
--     most the time left, no backoff sleep or queueing reaches past it) and no
--     poll starts after it, so the call returns within `timeout` (plus
--     scheduling latency) whatever the server does. on_progress(job) runs on
--     the first poll and on every change of current_stage or progress_percent.
--
--   jobs:wait_all(ids[, opts])     -> jobs, errs
--       jobs[i]: the completed job for ids[i] (or nil); errs[i]: why ids[i] did
--       not complete (nil when it did): the error jobs:wait gives (kind
--       "job_failed" with err.job, "timeout" code WAIT_TIMEOUT, "not_found", ...),
--       with err.index = i and err.job_id = ids[i]. errs is always a table
--       (empty when every job completed): `if next(errs) then ... end`.
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
--   ugen.ngx.wait_all(client, ids[, opts]) is client.jobs:wait_all plus
--       opts.max_concurrency: at most that many jobs awaited (so polls in
--       flight) at once, the others start as those end.
--
--   opts = { interval = 10,        -- seconds between polls of one job
--            timeout = 1800,       -- ONE deadline for the whole call (seconds from now)
--            on_progress = fn(job, id, i),  -- per job (wait: fn(job)), on its first poll
--                                  -- and on every change of current_stage / progress_percent
--            headers =, max_retries = },    -- per poll
--            via = "poll" | "webhook" }     -- "webhook" (OpenResty, a node whose webhook
--                                  -- handler has dedupe = { redis = ... }): park until the
--                                  -- handler on any node saw the job's terminal event
--                                  -- (ugen.cluster.notify); polls only every `interval`
--                                  -- (default 60 then) and once just before the deadline
--                                  -- (min(2 s, timeout / 10) before it). The job
--                                  -- returned is then the event's fields (job_id, status,
--                                  -- final_video_url, ...; webhook_event = "job.completed")
--
-- Many jobs: every job is polled by its own task (runtime spawn), the caller
-- waits with join_any; a runtime without spawn/join_any/cancel raises naming
-- the missing function. On the curl runtime, polls in flight are capped by the
-- scheduler's max_concurrency (default 64 per host); the rest queue. An error
-- raised by on_progress ends the call: it is re-raised in the caller after the
-- other polls are stopped; so is the cancellation of the caller.

local errors = require "ugen.errors"
local runtime_mod = require "ugen.runtime"
local pipeline = require "ugen.pipeline"
local call = require "ugen.call"
local argerr = require("ugen.args").argerror
local cas = require("ugen.native").cas

local type, pairs, tostring, error, pcall, setmetatable, string_format, math_floor, math_min, math_max =
  type, pairs, tostring, error, pcall, setmetatable, string.format, math.floor, math.min, math.max

local _M = { _VERSION = "0.1.0" }

-- Plain Lua 5.1 cannot yield across pcall: there the caller's own failure
-- (its cancellation) is not caught to stop the polls first.
local PCALL_YIELDS = _VERSION ~= "Lua 5.1" or type(rawget(_G, "jit")) == "table"

-- Terminal states. The docs list none of the status values (GAP): finished is
-- status completed / failed / cancelled (or canceled), or current_stage
-- "complete" with a final_video_url; every other status means "still running".
local TERMINAL = { completed = "completed", failed = "failed", cancelled = "cancelled", canceled = "cancelled" }

function _M.is_finished(job)
  if type(job) ~= "table" then return nil end
  local st = type(job.status) == "string" and TERMINAL[job.status:lower()]
  if st then return st end
  if job.current_stage == "complete" and type(job.final_video_url) == "string" and job.final_video_url ~= "" then
    return "completed"
  end
  return nil
end

---------------------------------------------------------------------------
-- arguments: one check for every waiting call

local OPTS = { interval = true, timeout = true, on_progress = true, headers = true, max_retries = true,
               via = true }
local NGX_OPTS = { interval = true, timeout = true, on_progress = true, headers = true, max_retries = true,
                   max_concurrency = true, via = true }

-- opts.via = "webhook" -> the cluster store of the node's webhook handler (ugen.cluster.notify)
local function webhook_store(client, fname, on, level)
  local rt = client.runtime
  if type(rt) ~= "table" or rt.name ~= "ngx" or type(rawget(_G, "ngx")) ~= "table" then
    argerr(on, fname, "opts.via = \"webhook\" works inside OpenResty only (the client's runtime is " ..
      tostring(type(rt) == "table" and rt.name) .. "); use via = \"poll\"", level + 1)
  end
  local store = require("ugen.cluster.notify").current()
  if not store then
    argerr(on, fname, "opts.via = \"webhook\" needs this node's webhook handler: build " ..
      "ugen.ngx.webhook_handler{ ..., dedupe = { redis = {...} } } in init_by_lua first", level + 1)
  end
  return store
end

-- ids: nil (jobs:wait) or the ids argument; idn: its position (opts: idn + 1).
-- -> n, opts, interval, timeout
local function check_args(fname, ids, opts, idn, level, allowed)
  level = level + 1
  local n = 0
  if ids ~= nil then
    if type(ids) ~= "table" then argerr(idn, fname, "table of job ids expected, got " .. type(ids), level) end
    n = #ids
    for i = 1, n do
      local id = ids[i]
      if type(id) ~= "string" or id == "" then
        argerr(idn, fname, string_format("ids[%d]: job id string expected, got %s", i, type(id)), level)
      end
    end
    for k in pairs(ids) do
      if type(k) ~= "number" or k < 1 or k > n or k ~= math_floor(k) then
        argerr(idn, fname, "ids must be an array (found key " .. tostring(k) .. ")", level)
      end
    end
  end
  local on = idn + 1
  if opts ~= nil and type(opts) ~= "table" then argerr(on, fname, "table expected, got " .. type(opts), level) end
  opts = opts or {}
  allowed = allowed or OPTS
  for k in pairs(opts) do
    if not allowed[k] then argerr(on, fname, "unknown option '" .. tostring(k) .. "'", level) end
  end
  local via = opts.via or "poll"
  if via ~= "poll" and via ~= "webhook" then
    argerr(on, fname, "opts.via must be \"poll\" or \"webhook\", got " .. tostring(via), level)
  end
  local interval, timeout = opts.interval or (via == "webhook" and 60 or 10), opts.timeout or 1800
  if type(interval) ~= "number" or interval ~= interval or interval <= 0 then
    argerr(on, fname, "opts.interval must be a positive number", level)
  end
  if type(timeout) ~= "number" or timeout ~= timeout or timeout <= 0 then
    argerr(on, fname, "opts.timeout must be a positive number", level)
  end
  if opts.on_progress ~= nil and type(opts.on_progress) ~= "function" then
    argerr(on, fname, "opts.on_progress must be a function", level)
  end
  local h = opts.headers
  if h ~= nil and type(h) ~= "table" then argerr(on, fname, "opts.headers must be a table", level) end
  local mr = opts.max_retries
  if mr ~= nil and (type(mr) ~= "number" or mr < 0 or mr ~= math_floor(mr)) then
    argerr(on, fname, "opts.max_retries must be an integer >= 0", level)
  end
  local mc = opts.max_concurrency
  if mc ~= nil and (type(mc) ~= "number" or mc < 1 or mc ~= math_floor(mc)) then
    argerr(on, fname, "opts.max_concurrency must be a positive integer", level)
  end
  return n, opts, interval, timeout, via
end
_M.check_args = check_args

local function jobs_of(self, fname, level)
  if type(self) ~= "table" or type(self._client) ~= "table" or type(self.get) ~= "function" then
    error(string_format("ugen: call client.jobs:%s(...) with a colon", fname), level + 1)
  end
  return self._client
end

---------------------------------------------------------------------------
-- one job

-- The job a terminal webhook event describes (via = "webhook": no GET)
local function job_of_event(ev)
  local job = {}
  for k, v in pairs(ev) do job[k] = v end
  job.event, job.timestamp = nil, nil
  job.webhook_event, job.webhook_timestamp = ev.event, ev.timestamp
  return job
end

-- poll job_id until a terminal state or `deadline` (on rt.now()'s clock);
-- store (via = "webhook"): park on the cluster's news between polls, which are
-- every `interval` and once just before the deadline, none at the start
local function wait_one(jobs, rt, job_id, interval, timeout, deadline, on_progress, get_opts, store)
  local rt_now, rt_sleep = rt.now, rt.sleep
  pipeline.set_deadline(get_opts, deadline)
  local last_stage, last_pct, last_job, last_err
  local first = true
  local skip_poll = store ~= nil
  -- via = "webhook": the last poll starts `margin` before the deadline (a poll
  -- at the deadline itself would have no time left), then a webhook may still
  -- end the wait until the deadline
  local margin, final = math_min(2, timeout / 10), false
  local function timed_out()
    return nil, errors.new{
      kind = "timeout", code = "WAIT_TIMEOUT", retryable = true, job = last_job,
      message = string_format("job %s did not finish within %gs%s", job_id, timeout,
        last_err and ("; last poll failed: " .. tostring(last_err.message)) or ""),
    }
  end
  while true do
    local job, err
    if skip_poll then
      skip_poll = false
      local now = rt_now()
      local poll_at = final and deadline or math_min(now + interval, deadline - margin)
      local ev = require("ugen.cluster.notify").wait(store, job_id, poll_at - now)
      if ev then
        job = job_of_event(ev)
      elseif final then
        return timed_out()
      else
        final = poll_at >= deadline - margin
        job, err = jobs:get(job_id, get_opts)
      end
    else
      job, err = jobs:get(job_id, get_opts)
    end
    if job then
      last_job, last_err = job, nil
      if first or job.current_stage ~= last_stage or job.progress_percent ~= last_pct then
        first = false
        last_stage, last_pct = job.current_stage, job.progress_percent
        if on_progress then on_progress(job) end
      end
      local state = _M.is_finished(job)
      if state == "completed" then return job end
      if state then
        local msg = type(job.error_message) == "string" and job.error_message
          or ("job " .. job_id .. " " .. state)
        return nil, errors.new{
          kind = "job_failed", code = state == "failed" and "JOB_FAILED" or "JOB_CANCELLED",
          message = msg, job = job, retryable = false,
        }
      end
    else
      if not err.retryable then return nil, err end
      last_err = err
    end
    local now = rt_now()
    if now >= deadline then return timed_out() end
    if store then
      skip_poll = true
    else
      local pause = interval
      if last_err and type(last_err.retry_after) == "number" then pause = math_max(pause, last_err.retry_after) end
      rt_sleep(math_min(pause, deadline - now))
      if rt_now() >= deadline then return timed_out() end
    end
  end
end

function _M.wait(self, job_id, opts)
  local client = jobs_of(self, "wait", 2)
  if type(job_id) ~= "string" then argerr(1, "wait", "string expected, got " .. type(job_id), 2) end
  local _, o, interval, timeout, via = check_args("wait", nil, opts, 1, 2)
  local get_opts = { headers = o.headers, max_retries = o.max_retries }
  call.check_call_opts(get_opts, 2, "wait", 2)
  local store = via == "webhook" and webhook_store(client, "wait", 2, 2) or nil
  local rt = client.runtime
  return wait_one(self, rt, job_id, interval, timeout, rt.now() + timeout, o.on_progress, get_opts, store)
end

---------------------------------------------------------------------------
-- many jobs: a group of tasks (at most `workers` at once), results queued in
-- finishing order

local G = {}
local G_mt = { __index = G, __name = "ugen.jobs_group" }

local function group_close(g)
  if g.closed then return end
  g.closed = true
  local live, cancel = g.live, g.cancel
  for k = g.nlive, 1, -1 do
    local h = live[k]
    live[k] = nil
    cancel(h)
  end
  g.nlive = 0
end
G.close = group_close
G_mt.__close = group_close

-- Workers may be interrupted by their host between any two Lua instructions
-- (HAProxy's tune.lua.forced-yield switches to another task there): the
-- counters they share (next_i, qt) are claimed with one C call (native.cas),
-- never read and then written.
local function push(g, i, job, err)
  if job == nil and err == nil then
    err = errors.new{ kind = "api", message = "jobs:wait returned nothing for job " .. g.ids[i] }
  end
  if job == nil and type(err) == "table" then err.index, err.job_id = i, g.ids[i] end
  local qt
  repeat qt = g.qt + 1 until cas(g, "qt", qt - 1, qt)
  g.q[qt] = { i, job, err }
end

local function start_worker(g)
  local k = g.nlive + 1
  local h = g.spawn(function()
    -- one worker awaits ids one after another (one id when workers = n)
    while true do
      local i
      repeat
        i = g.next_i + 1
        if i > g.n or g.closed then return end
      until cas(g, "next_i", i - 1, i)
      g.current[k] = i
      local id = g.ids[i]
      local left = g.deadline - g.rt.now()
      if left <= 0 then left = 1e-3 end
      local prog = g.on_progress and function(job) g.on_progress(job, id, i) end
      local job, err = wait_one(g.jobs, g.rt, id, g.interval, left, g.rt.now() + left, prog,
        { headers = g.opts.headers, max_retries = g.opts.max_retries }, g.store)
      g.current[k] = nil
      push(g, i, job, err)
    end
  end)
  g.live[k], g.pos[h], g.slot[h] = h, k, k
  g.nlive = k
end

-- the runtime's spawn, join_any, cancel, or an error at the caller's caller
local function group_funcs(client, fname, level)
  local rt = client.runtime
  local what = fname:find("%.") and fname or ("client.jobs:" .. fname)
  return runtime_mod.need(rt, "spawn", what, level + 1), runtime_mod.need(rt, "join_any", what, level + 1),
    runtime_mod.need(rt, "cancel", what, level + 1)
end

local function new_group(jobs, client, ids, n, opts, interval, timeout, workers, store)
  local rt = client.runtime
  local spawn, join_any, cancel = group_funcs(client, "", 1)
  local g = setmetatable({
    rt = rt, jobs = jobs, ids = ids, n = n, opts = opts, interval = interval, on_progress = opts.on_progress,
    spawn = spawn, join_any = join_any, cancel = cancel,
    deadline = rt.now() + timeout, next_i = 0, current = {},
    live = {}, nlive = 0, pos = {}, slot = {},
    q = {}, qh = 1, qt = 0, closed = false, store = store,
  }, G_mt)
  for _ = 1, math_min(n, workers or n) do start_worker(g) end
  return g
end

local function raise_from(g, err, tb)
  group_close(g)
  if g.prefix then error(g.prefix .. tostring(err), 0) end
  if type(err) == "string" then error(tb or err, 0) end
  error(err, 0)
end

-- -> i, job, err | nil when every index was delivered
local function group_next(g)
  while true do
    local item = g.qh <= g.qt and g.q[g.qh]
    if item then
      g.q[g.qh] = nil
      g.qh = g.qh + 1
      return item[1], item[2], item[3]
    end
    if g.qh <= g.qt then
      -- a worker has claimed this slot and not filled it yet (its host
      -- interrupted it in between): it runs again at once
      g.rt.sleep(0.001)
    elseif g.nlive == 0 or g.closed then
      return nil
    else
      local h, ok, a, b
      if PCALL_YIELDS then
        local pok
        pok, h, ok, a, b = pcall(g.join_any, g.live)
        if not pok then raise_from(g, h) end     -- the caller itself was cancelled (or broke)
      else
        h, ok, a, b = g.join_any(g.live)
      end
      if h == nil then
        if ok == false then raise_from(g, a) end -- a runtime that lost a thread
      else
        -- the worker ended: take it out of the live list (swap with the last)
        local k, last = g.pos[h], g.live[g.nlive]
        g.live[k], g.pos[last] = last, k
        g.live[g.nlive] = nil
        g.pos[h] = nil
        g.nlive = g.nlive - 1
        if not ok then
          local i = g.current[g.slot[h]]
          if errors.is(a, "cancelled") and i then
            push(g, i, nil, a)                  -- that poll was cancelled (task:cancel())
          else
            raise_from(g, a, b)                 -- on_progress raised
          end
        end
        g.slot[h] = nil
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

local function wait_all(jobs, client, ids, n, o, interval, timeout, workers, prefix, store)
  local all, errs = {}, {}
  if n == 0 then return all, errs end
  local g = new_group(jobs, client, ids, n, o, interval, timeout, workers, store)
  g.prefix = prefix
  while true do
    local i, job, err = group_next(g)
    if i == nil then break end
    if job then all[i] = job else errs[i] = err end
  end
  group_close(g)
  return all, errs
end

function _M.wait_all(self, ids, opts)
  local client = jobs_of(self, "wait_all", 2)
  local n, o, interval, timeout, via = check_args("wait_all", ids, opts, 1, 2)
  group_funcs(client, "wait_all", 2)
  local store = via == "webhook" and webhook_store(client, "wait_all", 2, 2) or nil
  return wait_all(self, client, ids, n, o, interval, timeout, nil, nil, store)
end

-- ugen.ngx.wait_all(client, ids, opts): the same, with opts.max_concurrency
function _M.ngx_wait_all(client, ids, opts)
  if type(client) ~= "table" or type(client.jobs) ~= "table" or type(client.runtime) ~= "table" then
    argerr(1, "wait_all", "ugen client expected, got " .. type(client), 2)
  end
  local n, o, interval, timeout, via = check_args("wait_all", ids, opts, 2, 2, NGX_OPTS)
  group_funcs(client, "ugen.ngx.wait_all", 2)
  local store = via == "webhook" and webhook_store(client, "wait_all", 3, 2) or nil
  return wait_all(client.jobs, client, ids, n, o, interval, timeout, o.max_concurrency or 64,
    "ugen.ngx.wait_all: on_progress raised: ", store)
end

function _M.wait_any(self, ids, opts)
  local client = jobs_of(self, "wait_any", 2)
  local n, o, interval, timeout, via = check_args("wait_any", ids, opts, 1, 2)
  if n == 0 then argerr(1, "wait_any", "at least one job id expected", 2) end
  group_funcs(client, "wait_any", 2)
  local store = via == "webhook" and webhook_store(client, "wait_any", 2, 2) or nil
  local g = new_group(self, client, ids, n, o, interval, timeout, nil, store)
  local i, job, err = group_next(g)
  group_close(g)
  if job then return job, i end
  return nil, err, i
end

function _M.as_finished(self, ids, opts)
  local client = jobs_of(self, "as_finished", 2)
  local n, o, interval, timeout, via = check_args("as_finished", ids, opts, 1, 2)
  group_funcs(client, "as_finished", 2)
  local store = via == "webhook" and webhook_store(client, "as_finished", 2, 2) or nil
  local g
  if n == 0 then
    g = setmetatable({ n = 0, nlive = 0, live = {}, q = {}, qh = 1, qt = 0, closed = true }, G_mt)
  else
    g = new_group(self, client, ids, n, o, interval, timeout, nil, store)
  end
  -- a callable object (works with every Lua's generic for); the 4th value
  -- is Lua 5.4's to-be-closed variable
  return g, nil, nil, g
end

-- Add the methods to a jobs resource table (client.jobs).
function _M.extend(r)
  r.wait = _M.wait
  r.wait_all = _M.wait_all
  r.wait_any = _M.wait_any
  r.as_finished = _M.as_finished
  return r
end

return _M
