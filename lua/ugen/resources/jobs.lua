-- ugen.resources.jobs: the hand-written parts of client.jobs.
--
--   jobs:create(params[, opts])   POST /jobs; idempotency_key = params.idempotency_key
--                                 or opts.idempotency_key or a fresh UUID v4, the same
--                                 on every retry. On failure err.idempotency_key tells
--                                 the key, so the caller can retry safely later.
--   jobs:wait(job_id[, opts])     poll until a terminal state (see below)
--   jobs:download(job, path[, opts])  stream final_video_url to a file (via path..".part",
--                                 renamed on success; resumes with Range; progress):
--                                 ugen.resources.download
--   jobs.is_finished(job)         -> "completed" | "failed" | "cancelled" | nil
-- (get, list and each are generated from the endpoint table.)

local crypto = require "ugen.crypto"
local errors = require "ugen.errors"
local client_mod = require "ugen.client"
local resources = require "ugen.resources"

local type, pairs, tostring, string_format, math_min, math_max =
  type, pairs, tostring, string.format, math.min, math.max

local argerror, check_call_opts = client_mod.argerror, client_mod.check_call_opts

local _M = { _VERSION = "0.1.0" }

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

local WAIT_OPTS = { interval = true, timeout = true, on_progress = true, headers = true, max_retries = true }

function _M.extend(r, eps)
  local client = r._client
  local create_ep = eps.create

  function r.create(self, params, opts)
    resources.client_of(self, create_ep)
    if type(params) ~= "table" then argerror(1, "create", "table expected, got " .. type(params), 2) end
    check_call_opts(opts, 2, "create", 2)
    local p = {}
    for k, v in pairs(params) do p[k] = v end
    local key = p.idempotency_key
    local okey = opts and opts.idempotency_key
    if key ~= nil and okey ~= nil and key ~= okey then
      argerror(2, "create", "opts.idempotency_key differs from params.idempotency_key", 2)
    end
    if key == nil then key = okey or crypto.uuid4() end
    p.idempotency_key = key
    local job, err = client:_call(create_ep, {}, p, opts)
    if not job then
      if type(err) == "table" and type(key) == "string" then err.idempotency_key = key end
      return nil, err
    end
    if type(err) == "table" then err.idempotency_key = key end -- meta
    return job, err
  end

  -- wait(job_id[, {interval = 10, timeout = 1800, on_progress = fn(job), headers =, max_retries =}])
  -- Polls GET /jobs/{id}; sleeps between polls through the client's runtime
  -- (the curl runtime: blocking, yielding inside ugen.run). on_progress(job) runs on the first poll
  -- and on every change of current_stage or progress_percent. Results:
  --   completed            -> job
  --   failed / cancelled   -> nil, err{kind = "job_failed", code = "JOB_FAILED" | "JOB_CANCELLED", job = job}
  --   deadline passed      -> nil, err{kind = "timeout", code = "WAIT_TIMEOUT", job = last job seen}
  --   non-retryable error  -> nil, err (auth, not_found, ...) at once
  -- Retryable errors (network, 5xx, 429) of a poll, after the pipeline's own
  -- retries, do not end the wait: polling goes on until the deadline (the
  -- next poll after max(interval, the error's retry_after)).
  -- The deadline is a deadline: every poll gets it (each attempt's transfer
  -- timeout is at most the time left, no backoff sleep or queueing reaches past
  -- it) and no poll starts after it, so the call returns within `timeout`
  -- (plus scheduling latency) whatever the server does.
  function r.wait(self, job_id, opts)
    resources.client_of(self, eps.get)
    if type(job_id) ~= "string" then argerror(1, "wait", "string expected, got " .. type(job_id), 2) end
    if opts ~= nil and type(opts) ~= "table" then argerror(2, "wait", "table expected, got " .. type(opts), 2) end
    opts = opts or {}
    for k in pairs(opts) do
      if not WAIT_OPTS[k] then argerror(2, "wait", "unknown option '" .. tostring(k) .. "'", 2) end
    end
    local interval, timeout, on_progress = opts.interval or 10, opts.timeout or 1800, opts.on_progress
    if type(interval) ~= "number" or interval ~= interval or interval <= 0 then
      argerror(2, "wait", "opts.interval must be a positive number", 2)
    end
    if type(timeout) ~= "number" or timeout ~= timeout or timeout <= 0 then
      argerror(2, "wait", "opts.timeout must be a positive number", 2)
    end
    if on_progress ~= nil and type(on_progress) ~= "function" then
      argerror(2, "wait", "opts.on_progress must be a function", 2)
    end
    local get_opts = { headers = opts.headers, max_retries = opts.max_retries }
    check_call_opts(get_opts, 2, "wait", 2)

    local rt = client.runtime
    local rt_now, rt_sleep = rt.now, rt.sleep
    local deadline = rt_now() + timeout
    client_mod.set_deadline(get_opts, deadline)
    local last_stage, last_pct, last_job, last_err
    local first = true
    local function timed_out()
      return nil, errors.new{
        kind = "timeout", code = "WAIT_TIMEOUT", retryable = true, job = last_job,
        message = string_format("job %s did not finish within %gs%s", job_id, timeout,
          last_err and ("; last poll failed: " .. tostring(last_err.message)) or ""),
      }
    end
    while true do
      local job, err = self:get(job_id, get_opts)
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
      local pause = interval
      if last_err and type(last_err.retry_after) == "number" then pause = math_max(pause, last_err.retry_after) end
      rt_sleep(math_min(pause, deadline - now))
      if rt_now() >= deadline then return timed_out() end
    end
  end

  -- download(job_or_id, path[, {on_progress =, timeout =, ...}]): stream
  -- final_video_url to a file, resuming broken transfers (ugen.resources.download)
  require("ugen.resources.download").extend(r, eps)

  -- wait_all / wait_any / as_finished (many jobs at once, ugen.scheduler)
  require("ugen.resources.jobs_many").extend(r)
end

return _M
