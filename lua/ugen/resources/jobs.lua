-- ugen.resources.jobs: the hand-written parts of client.jobs.
--
--   jobs:create(params[, opts])   POST /jobs; idempotency_key = params.idempotency_key
--                                 or opts.idempotency_key or a fresh UUID v4, the same
--                                 on every retry. On failure err.idempotency_key tells
--                                 the key, so the caller can retry safely later.
--       opts.max_credits = N      credit guard: POST /credits/estimate with the same
--                                 fields first (video_model sent as the estimate's
--                                 model_id); an estimate over N is
--                                 nil, err{kind = "budget", code = "OVER_BUDGET",
--                                 details = {estimate =, budget =}} and no job is
--                                 created; a failed estimate is its own error, no job
--                                 either. On success meta.estimate is the estimate.
--   jobs:create_and_wait(params[, opts])  create, then wait (below)
--   jobs:wait(job_id[, opts])     poll until a terminal state; wait_all, wait_any,
--                                 as_finished: many jobs (ugen.resources.jobs_wait)
--   jobs:download(job, path[, opts])  stream final_video_url to a file (via path..".part",
--                                 renamed on success; resumes with Range; progress):
--                                 ugen.resources.download
--   jobs.is_finished(job)         -> "completed" | "failed" | "cancelled" | nil
--   jobs.check_budget(client, params, max_credits[, opts]) -> estimate | nil, err
--                                 the credit guard alone (the CLI's --max-credits)
-- (get, list and each are generated from the endpoint table.)

local crypto = require "ugen.crypto"
local argerror = require("ugen.args").argerror
local call = require "ugen.call"
local errors = require "ugen.errors"
local endpoints = require "ugen.endpoints"
local pipeline = require "ugen.pipeline"
local jobs_wait = require "ugen.resources.jobs_wait"

local type, pairs, tostring, string_format, math_floor = type, pairs, tostring, string.format, math.floor

local check_call_opts = call.check_call_opts
local ONE_FRAME = { frames = 1 }   -- call.endpoint's extra: a helper frame between it and the method

local _M = { _VERSION = "0.1.0" }

_M.is_finished = jobs_wait.is_finished

---------------------------------------------------------------------------
-- the credit guard

-- "140" for 140 and 140.0, "12.5" otherwise
local function credits_text(n)
  if n == math_floor(n) and n > -2^53 and n < 2^53 then return string_format("%d", n) end
  return string_format("%g", n)
end

local function check_max_credits(v, n, fname, level)
  if v ~= nil and (type(v) ~= "number" or v ~= v or v < 0) then
    argerror(n, fname, "opts.max_credits must be a number >= 0", level + 1)
  end
end

-- The estimate's body for a jobs:create params table: the same fields (the
-- estimate endpoint accepts every jobs:create field), without the idempotency
-- key, and the job's video_model as the estimate's model_id (each endpoint's
-- documented name for the model).
local function estimate_params(params)
  local p = {}
  for k, v in pairs(params) do
    if k ~= "idempotency_key" then p[k] = v end
  end
  if p.model_id == nil and p.video_model ~= nil then p.model_id = p.video_model end
  return p
end

-- Estimate `params` (jobs:create fields) and compare with max_credits.
-- opts: per-call opts of the estimate (headers, max_retries, extra, ...; no
-- idempotency_key). -> estimate, meta | nil, err
local function budget_check(client, params, max_credits, opts)
  local est_ep = endpoints.by_name["credits.estimate"]
  local est, err = call.endpoint(client, est_ep, {}, estimate_params(params), opts)
  if not est then return nil, err end
  local total = type(est) == "table" and est.total_credits
  if type(total) ~= "number" or total ~= total then
    return nil, errors.new{ kind = "decode", code = "ESTIMATE_INVALID", retryable = false,
      message = "the credit estimate has no numeric total_credits, so max_credits cannot be checked;"
        .. " no job was created", details = { estimate = est } }
  end
  if total > max_credits then
    return nil, errors.new{ kind = "budget", code = "OVER_BUDGET", retryable = false,
      message = string_format("the job is estimated at %s credits, over the budget of %s (max_credits);"
        .. " no job was created", credits_text(total), credits_text(max_credits)),
      details = { estimate = total, budget = max_credits, breakdown = est.breakdown } }
  end
  return est, err
end

--- The credit guard alone: nil, err{kind = "budget"} when `params` (jobs:create
-- fields) is estimated over max_credits, else the estimate.
function _M.check_budget(client, params, max_credits, opts)
  if type(params) ~= "table" then argerror(2, "check_budget", "table expected, got " .. type(params), 2) end
  if type(max_credits) ~= "number" then argerror(3, "check_budget", "number expected, got " .. type(max_credits), 2) end
  check_max_credits(max_credits, 3, "check_budget", 2)
  check_call_opts(opts, 4, "check_budget", 2)
  return budget_check(client, params, max_credits, opts)
end

---------------------------------------------------------------------------

-- opts of create_and_wait: the wait's, and the create's
local WAIT_KEYS = { interval = true, timeout = true, on_progress = true, headers = true, max_retries = true }
local CREATE_KEYS = { idempotency_key = true, max_credits = true, extra = true, connect_timeout = true,
                      headers = true, max_retries = true }

function _M.extend(r, eps)
  local client = r._client
  local create_ep = eps.create

  -- params copied, with the idempotency key in place; raises at level
  local function create_params(params, okey, fname, level)
    local p = {}
    for k, v in pairs(params) do p[k] = v end
    local key = p.idempotency_key
    if key ~= nil and okey ~= nil and key ~= okey then
      argerror(2, fname, "opts.idempotency_key differs from params.idempotency_key", level + 1)
    end
    if key == nil then key = okey or crypto.uuid4() end
    p.idempotency_key = key
    return p, key
  end

  -- create with the guard: p has its key; opts has no max_credits; deadline:
  -- the create_and_wait's (on the runtime's clock), for the estimate too
  local function create(p, key, opts, max_credits, deadline)
    local est
    if deadline and opts then pipeline.set_deadline(opts, deadline) end
    if max_credits ~= nil then
      local eopts
      if opts then
        eopts = {}
        for k, v in pairs(opts) do if k ~= "idempotency_key" then eopts[k] = v end end
        if deadline then pipeline.set_deadline(eopts, deadline) end
      end
      local berr
      est, berr = budget_check(client, p, max_credits, eopts)
      if not est then return nil, berr end
    end
    local job, err = call.endpoint(client, create_ep, {}, p, opts, ONE_FRAME)   -- (this function's frame)
    if not job then
      if type(err) == "table" and type(key) == "string" then err.idempotency_key = key end
      return nil, err
    end
    if type(err) == "table" then err.idempotency_key = key; err.estimate = est end -- meta
    return job, err
  end

  function r.create(self, params, opts)
    call.client_of(self, create_ep)
    if type(params) ~= "table" then argerror(1, "create", "table expected, got " .. type(params), 2) end
    local max_credits
    if type(opts) == "table" and opts.max_credits ~= nil then
      max_credits = opts.max_credits
      check_max_credits(max_credits, 2, "create", 2)
      local o = {}
      for k, v in pairs(opts) do if k ~= "max_credits" then o[k] = v end end
      opts = o
    end
    check_call_opts(opts, 2, "create", 2)
    local p, key = create_params(params, opts and opts.idempotency_key, "create", 2)
    -- a per-call timeout bounds the whole call: the estimate and the create
    local deadline = max_credits ~= nil and opts and opts.timeout and client.runtime.now() + opts.timeout
    -- not a tail call (Lua 5.1 would leave no line for the error level to point at)
    local job, meta = create(p, key, opts, max_credits, deadline or nil)
    return job, meta
  end

  -- create_and_wait(params[, opts]) -> final job | nil, err
  -- opts: the wait's (interval, timeout, on_progress, headers, max_retries) and
  -- the create's (idempotency_key, max_credits, extra, connect_timeout).
  -- timeout (default 1800 s) is one deadline for the whole call, the create
  -- included. Failures: before or during the create, the create's error (no
  -- err.job_id: no job was made, or, after a network failure, maybe one under
  -- err.idempotency_key); once the job exists, the wait's error with
  -- err.job_id (and err.idempotency_key) set.
  function r.create_and_wait(self, params, opts)
    call.client_of(self, create_ep)
    if type(params) ~= "table" then argerror(1, "create_and_wait", "table expected, got " .. type(params), 2) end
    if opts ~= nil and type(opts) ~= "table" then
      argerror(2, "create_and_wait", "table expected, got " .. type(opts), 2)
    end
    opts = opts or {}
    local wopts, copts = {}, {}
    for k, v in pairs(opts) do
      if not (WAIT_KEYS[k] or CREATE_KEYS[k]) then
        argerror(2, "create_and_wait", "unknown option '" .. tostring(k) .. "'", 2)
      end
      if WAIT_KEYS[k] then wopts[k] = v end
      if CREATE_KEYS[k] and k ~= "max_credits" then copts[k] = v end
    end
    check_max_credits(opts.max_credits, 2, "create_and_wait", 2)
    check_call_opts(copts, 2, "create_and_wait", 2)
    -- the wait's options, checked before anything is sent
    local _, _, _, timeout = jobs_wait.check_args("create_and_wait", nil, wopts, 1, 2)
    local p, key = create_params(params, copts.idempotency_key, "create_and_wait", 2)
    local now = client.runtime.now
    local deadline = now() + timeout
    pipeline.set_deadline(copts, deadline)
    local job, err = create(p, key, copts, opts.max_credits, deadline)
    if not job then return nil, err end
    local id = job.job_id
    if type(id) ~= "string" or id == "" then
      return nil, errors.new{ kind = "decode", code = "NO_JOB_ID", retryable = false, job = job,
        idempotency_key = key, message = "jobs:create answered without a job_id; cannot wait for the job" }
    end
    local left = deadline - now()
    local final, werr
    if left > 0 then
      wopts.timeout = left
      final, werr = r.wait(self, id, wopts)
      if final then return final end
    else
      werr = errors.new{ kind = "timeout", code = "WAIT_TIMEOUT", retryable = true, job = job,
        message = string_format("job %s did not finish within %gs", id, timeout) }
    end
    if type(werr) == "table" then
      werr.job_id, werr.idempotency_key = id, key
      if werr.job == nil then
        werr.message = string_format("job %s was created; waiting for it failed: %s", id,
          tostring(werr.message))
      end
    end
    return nil, werr
  end

  -- download(job_or_id, path[, {on_progress =, timeout =, ...}]): stream
  -- final_video_url to a file, resuming broken transfers (ugen.resources.download)
  require("ugen.resources.download").extend(r, eps)

  -- wait / wait_all / wait_any / as_finished, over the client's runtime
  jobs_wait.extend(r)
end

return _M
