-- ugen_sandbox_server.handlers.jobs: POST /jobs (model rules, idempotency, limits,
-- credits, in that order), GET /jobs/{id}, GET /jobs. The lifecycle itself is
-- ugen_sandbox_server.jobs.
-- Handlers: name -> function(T, params, ctx) -> response (ugen_sandbox_server.http).

local util = require "ugen_sandbox_server.util"
local state = require "ugen_sandbox_server.state"
local clock = require "ugen_sandbox_server.clock"
local ledger = require "ugen_sandbox_server.ledger"
local jobs = require "ugen_sandbox_server.jobs"
local webhooks = require "ugen_sandbox_server.webhooks"
local http = require "ugen_sandbox_server.http"

local pairs, ipairs, tostring, max = pairs, ipairs, tostring, math.max
local concat = table.concat
local E, R, unprocessable = http.error_response, http.response, http.unprocessable

local H = {}

H["jobs.create"] = function(T, b, ctx)
  local model_id = b.video_model or "kling3_std"
  local model = state.models_by_id[model_id]
  local errs = {}
  local function verr(name, msg)
    errs[#errs + 1] = { type = "value_error", loc = { "body", name }, msg = "Value error, " .. msg,
                        input = util.orNull(b[name]) }
  end
  if not model then
    verr("video_model", "unknown video_model '" .. model_id .. "'; see GET /models")
  elseif not model.jobs then
    verr("video_model", "'" .. model_id .. "' cannot be used for jobs (Playground only or not available)")
  else
    local caps = model.capabilities
    if caps.fixed_duration and b.segment_duration and b.segment_duration ~= caps.fixed_duration then
      verr("segment_duration", ("%s segments have a fixed duration of %d seconds"):format(model_id,
        caps.fixed_duration))
    end
    local ar = b.aspect_ratio or "9:16"
    local ok = false
    for _, a in ipairs(caps.supported_aspect_ratios) do if a == ar then ok = true end end
    if not ok then
      if ar == "1:1" then verr("aspect_ratio", "aspect ratio '1:1' is only available with Kling models")
      else verr("aspect_ratio", "aspect ratio '" .. tostring(ar) .. "' is not supported by " .. model_id
        .. " (supported: " .. concat(caps.supported_aspect_ratios, ", ") .. ")") end
    end
  end
  if b.persona_id and not state.personas[b.persona_id] then verr("persona_id", "unknown persona_id") end
  if b.custom_music_id then
    local tr = T.music_by_id[b.custom_music_id]
    if not tr or not tr.is_active then verr("custom_music_id", "unknown custom_music_id") end
  end
  if b.webhook_url then
    local msg = webhooks.check_url(b.webhook_url)
    if msg then errs[#errs + 1] = { type = "value_error", loc = { "body", "webhook_url" }, msg = msg,
                                    input = b.webhook_url } end
  end
  if b.qai_enabled ~= false and b.max_retries_keyframe == 0 then
    verr("max_retries_keyframe", "must be at least 1 when QA is on")
  end
  local fidx, ferr = jobs.parse_fail_marker(b.product_name)
  if not fidx and ferr then verr("product_name", ferr) end
  if #errs > 0 then return unprocessable(errs) end

  -- Idempotency: same key + same body -> the original job.
  local key = b.idempotency_key
  local fingerprint
  do
    local raw = {}
    for k, v in pairs(ctx.body) do if k ~= "idempotency_key" then raw[k] = v end end
    fingerprint = util.canonical(raw)
  end
  if key then
    local prev = T.idem[key]
    if prev then
      if prev.fingerprint == fingerprint then
        return R(200, jobs.public(T.jobs_by_id[prev.job_id]), { ["X-Idempotent-Replay"] = "true" })
      end
      return E(409, "IDEMPOTENCY_CONFLICT",
        "idempotency_key was already used with different parameters",
        { idempotency_key = key, job_id = prev.job_id })
    end
  end

  -- Limits.
  local active, oldest_active_left = 0, nil
  local day_count, oldest_day = 0, nil
  local s_now = clock.now()
  for _, j in ipairs(T.jobs) do
    jobs.advance(j)
    if not j.terminal then
      active = active + 1
      local left = jobs.remaining(j)
      if not oldest_active_left or left < oldest_active_left then oldest_active_left = left end
    end
    if s_now - j.created_sim < clock.DAY and j.idempotency_key ~= "seed-example-job" then
      day_count = day_count + 1
      if not oldest_day or j.created_sim < oldest_day then oldest_day = j.created_sim end
    end
  end
  if active >= T.concurrent_limit then
    local ra = util.ceil_pos(max(oldest_active_left or 1, 0) / state.cfg.speed)
    return E(429, "RATE_LIMIT_EXCEEDED", ("Concurrent job limit reached (%d running)"):format(active),
      { limit_type = "concurrent", limit = T.concurrent_limit, retry_after = ra }, { ["Retry-After"] = tostring(ra) })
  end
  if day_count >= T.daily_limit then
    local ra = util.ceil_pos((oldest_day + clock.DAY - s_now) / state.cfg.speed)
    return E(429, "RATE_LIMIT_EXCEEDED", ("Daily job limit reached (%d per day)"):format(T.daily_limit),
      { limit_type = "daily", limit = T.daily_limit, retry_after = ra }, { ["Retry-After"] = tostring(ra) })
  end

  -- Credits.
  local total = jobs.price(b, model)
  if ledger.available(T) < total then
    return E(402, "INSUFFICIENT_CREDITS", "Not enough credits for this job",
             { required = total, available = ledger.available(T) })
  end

  local job = jobs.create(T, b, nil, key or util.uuid4())
  job.webhook_fault = ngx.ctx.sandbox_webhook_fault       -- X-Sandbox-Fault: webhook=...
  if key then T.idem[key] = { fingerprint = fingerprint, job_id = job.job_id } end
  return R(201, jobs.public(job), { Location = state.API .. "/jobs/" .. job.job_id })
end

H["jobs.get"] = function(T, p)
  local job = T.jobs_by_id[p.job_id]
  if not job then return E(404, "JOB_NOT_FOUND", "Job not found") end
  return R(200, jobs.public(job))
end

H["jobs.list"] = function(T, p, ctx)
  local list = {}
  local status = ctx.query.status
  for i = #T.jobs, 1, -1 do
    local j = T.jobs[i]
    jobs.advance(j)
    if not status or j.status == status then list[#list + 1] = j end
  end
  local env = util.page(list, p.page or 1, p.page_size or 20)
  for i, j in ipairs(env.items) do env.items[i] = jobs.public(j) end
  return R(200, env)
end

return H
