-- ugen.resources.jobs: the hand-written parts of client.jobs.
--
--   jobs:create(params[, opts])   POST /jobs; idempotency_key = params.idempotency_key
--                                 or opts.idempotency_key or a fresh UUID v4, the same
--                                 on every retry. On failure err.idempotency_key tells
--                                 the key, so the caller can retry safely later.
--   jobs:wait(job_id[, opts])     poll until a terminal state; wait_all, wait_any,
--                                 as_finished: many jobs (ugen.resources.jobs_wait)
--   jobs:download(job, path[, opts])  stream final_video_url to a file (via path..".part",
--                                 renamed on success; resumes with Range; progress):
--                                 ugen.resources.download
--   jobs.is_finished(job)         -> "completed" | "failed" | "cancelled" | nil
-- (get, list and each are generated from the endpoint table.)

local crypto = require "ugen.crypto"
local argerror = require("ugen.args").argerror
local call = require "ugen.call"
local jobs_wait = require "ugen.resources.jobs_wait"

local type, pairs = type, pairs

local check_call_opts = call.check_call_opts

local _M = { _VERSION = "0.1.0" }

_M.is_finished = jobs_wait.is_finished

function _M.extend(r, eps)
  local client = r._client
  local create_ep = eps.create

  function r.create(self, params, opts)
    call.client_of(self, create_ep)
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
    local job, err = call.endpoint(client, create_ep, {}, p, opts)
    if not job then
      if type(err) == "table" and type(key) == "string" then err.idempotency_key = key end
      return nil, err
    end
    if type(err) == "table" then err.idempotency_key = key end -- meta
    return job, err
  end

  -- download(job_or_id, path[, {on_progress =, timeout =, ...}]): stream
  -- final_video_url to a file, resuming broken transfers (ugen.resources.download)
  require("ugen.resources.download").extend(r, eps)

  -- wait / wait_all / wait_any / as_finished, over the client's runtime
  jobs_wait.extend(r)
end

return _M
