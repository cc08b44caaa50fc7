-- ugen_sandbox_server.jobs: the job lifecycle.
--
-- A job moves through the pipeline stages on the sandbox clock
-- (ugen_sandbox_server.clock): its state is computed from its creation time whenever
-- it is read or the ticker runs, so side effects (settlement in the ledger,
-- the job.completed / job.failed webhook) happen exactly once, at the end.
-- A [fail...] marker in the product name fails it at a stage; stop_at_stage
-- completes it early, billed for the finished stages only.

local endpoints = require "ugen.endpoints"
local util = require "ugen_sandbox_server.util"
local state = require "ugen_sandbox_server.state"
local clock = require "ugen_sandbox_server.clock"
local ledger = require "ugen_sandbox_server.ledger"
local webhooks = require "ugen_sandbox_server.webhooks"

local type, pairs, ipairs, next, floor, min = type, pairs, ipairs, next, math.floor, math.min
local sort = table.sort

local _M = {}

-- Pipeline (sim seconds per stage; 20 s in total at --speed 1).
local STAGES = endpoints.stages
local STAGE_INDEX = {}
for i, s in ipairs(STAGES) do STAGE_INDEX[s] = i end
local STAGE_SECONDS = { 1, 2, 2, 9, 2, 2, 2 } -- prepare .. captions
local STAGE_END = {}
do
  local acc = 0
  for i, d in ipairs(STAGE_SECONDS) do acc = acc + d; STAGE_END[i] = acc end
end
local FAIL_MESSAGES = {
  prepare = { "Product image validation failed", "IMAGE_UNREADABLE" },
  agents = { "Script generation failed", "AGENT_ERROR" },
  init = { "Keyframe QA failed", "PRODUCT_INTEGRITY" },
  generation = { "Segment QA failed", "MOTION_ARTIFACT" },
  concat = { "Segment concatenation failed", "FFMPEG_ERROR" },
  audio = { "Voice-over generation failed", "TTS_ERROR" },
  captions = { "Caption rendering failed", "CAPTION_ERROR" },
}

local function job_end_index(job)
  local last = job.stop_index or 7
  if job.fail_index and job.fail_index <= last then return job.fail_index, true end
  return last, false
end

--- Sandbox seconds until the job ends (completes or fails).
function _M.remaining(job)
  local idx = job_end_index(job)
  return STAGE_END[idx] - (clock.now() - job.created_sim)
end

local function webhook_event(job, event)
  local T = job.T
  local url = job.webhook_url or (T.webhook and T.webhook.url)
  if not url then return end
  local secret = T.webhook and T.webhook.secret or nil
  local payload = {
    event = event, job_id = job.job_id, status = job.status,
    final_video_url = util.orNull(job.final_video_url), thumbnail_url = util.orNull(job.thumbnail_url),
    credits_consumed = job.credits_consumed, error_message = util.orNull(job.error_message),
    timestamp = clock.iso_now(),
  }
  webhooks.dispatch(T.deliveries, event, payload, url, secret, job.webhook_fault)
  if job.webhook_fault == "duplicate" then
    webhooks.dispatch(T.deliveries, event, payload, url, secret, job.webhook_fault)
  end
end

-- Credits earned by the stages a job finished (stop_at_stage bills only those).
local function consumed_through(job, idx)
  local b = job.breakdown
  local c = 0
  if idx >= 3 then c = c + (b.keyframes / (job.segment_count + 1)) end         -- anchor keyframe
  if idx >= 4 then c = c + b.video + b.keyframes * job.segment_count / (job.segment_count + 1) end
  if idx >= 5 then c = c + b.post_processing end
  if idx >= 6 then c = c + b.voice + b.music end
  if idx >= 7 then c = c + b.captions end
  return floor(c + 0.5)
end

--- Settle a job: terminal status, reservation released, credits consumed.
function _M.finish(job, status)
  local T = job.T
  job.status = status
  job.terminal = true
  job.updated_at = clock.iso_now()
  job.completed_at = job.updated_at
  state.active[job] = nil
  local R = job.credits_reserved
  job.credits_reserved = 0
  if R > 0 then ledger.add(T, "release", R, job.job_id, "Reservation released (" .. status .. ")") end
  if status == "completed" and job.credits_consumed > 0 then
    ledger.add(T, "consume", -job.credits_consumed, job.job_id, "Job completed")
  end
end

--- Bring a job up to the sandbox clock (stage, progress, settlement, webhook).
function _M.advance(job)
  if job.terminal then return end
  local el = clock.now() - job.created_sim
  local idx, failing = job_end_index(job)
  if el >= STAGE_END[idx] then
    if failing then
      local stage = STAGES[idx]
      job.current_stage = stage
      job.progress_percent = floor(STAGE_END[idx] / STAGE_END[job.stop_index or 7] * 100)
      job.failed_stage = stage
      job.failure_category = job.fail_category or FAIL_MESSAGES[stage][2]
      job.error_message = FAIL_MESSAGES[stage][1] .. ": " .. job.failure_category
      job.credits_consumed = 0
      _M.finish(job, "failed")
      webhook_event(job, "job.failed")
    else
      local last = job.stop_index or 7
      job.current_stage = last == 7 and "complete" or STAGES[last]
      job.progress_percent = 100
      job.credits_consumed = last == 7 and (job.credits_estimated - job.breakdown.qa_buffer)
        or consumed_through(job, last)
      if last >= 5 then job.final_video_url = state.origin .. "/static/videos/" .. job.job_id .. ".mp4" end
      if last >= 3 then job.thumbnail_url = state.origin .. "/static/thumbnails/" .. job.job_id .. ".jpg" end
      _M.finish(job, "completed")
      webhook_event(job, "job.completed")
    end
    return
  end
  local i = 1
  while el >= STAGE_END[i] do i = i + 1 end
  local stage = STAGES[i]
  if stage ~= job.current_stage then job.updated_at = clock.iso_now() end
  job.current_stage = stage
  job.status = i == 1 and "queued" or "processing"
  job.progress_percent = min(99, floor(el / STAGE_END[job.stop_index or 7] * 100))
end

local PUBLIC_JOB_FIELDS = {
  "job_id", "status", "current_stage", "progress_percent", "product_name", "product_image_url",
  "video_model", "persona_id", "segment_count", "segment_duration", "aspect_ratio", "video_resolution",
  "interaction_mode", "caption_style", "music_enabled", "qai_enabled", "qai_mode", "stop_at_stage",
  "idempotency_key", "webhook_url", "credits_estimated", "credits_reserved", "credits_consumed",
  "final_video_url", "thumbnail_url", "error_message", "failed_stage", "failure_category",
  "created_at", "updated_at", "completed_at",
}

--- The job as the API shows it (advanced first).
function _M.public(job)
  _M.advance(job)
  local o = {}
  for _, k in ipairs(PUBLIC_JOB_FIELDS) do o[k] = util.orNull(job[k]) end
  o.credit_breakdown = job.breakdown
  return o
end

--- The [fail], [fail:STAGE], [fail:STAGE:CATEGORY] marker of a product name
-- -> stage index, category | nil | nil, message (a malformed marker).
function _M.parse_fail_marker(name)
  if type(name) ~= "string" then return nil end
  local inner = name:match("%[fail:?([^%]]*)%]")
  if not inner then return nil end
  local stage, category = inner:match("^([%w_]*):?([%w_]*)$")
  if not stage then return nil, "malformed [fail] marker" end
  if stage == "" then stage = "init" end
  if not STAGE_INDEX[stage] or stage == "complete" then
    return nil, "unknown stage '" .. stage .. "' in the [fail:STAGE] marker"
  end
  return STAGE_INDEX[stage], category ~= "" and category:upper() or nil
end

--- The price of a job body with its model -> total, breakdown, items, duration.
function _M.price(b, model)
  local vs = type(b.voice_settings) == "table" and b.voice_settings or nil
  return ledger.price{
    model = model, segment_count = b.segment_count, segment_duration = b.segment_duration,
    resolution = b.video_resolution, voice = true, custom_voice = vs ~= nil and vs.voice_id ~= nil,
    music = b.music_enabled == true or b.custom_music_id ~= nil,
    custom_captions = type(b.custom_caption_options) == "table" and next(b.custom_caption_options) ~= nil,
    qa = b.qai_enabled ~= false,
  }
end

--- Create and register a job for tenant data T (credits reserved; no checks).
function _M.create(T, b, job_id, idem_key)
  local model = state.models_by_id[b.video_model or "kling3_std"]
  local total, breakdown, _, duration = _M.price(b, model)
  local persona = b.persona_id
  if not persona then
    local ids = {}
    for id in pairs(state.personas) do ids[#ids + 1] = id end
    sort(ids)
    persona = ids[math.random(#ids)]
  end
  local fail_index, fail_category = _M.parse_fail_marker(b.product_name)
  local job = {
    T = T, job_id = job_id or util.uuid4(), created_sim = clock.now(),
    status = "queued", current_stage = "prepare", progress_percent = 0,
    product_name = b.product_name, product_image_url = b.product_image_url,
    video_model = model.id, persona_id = persona, segment_count = b.segment_count,
    segment_duration = duration, aspect_ratio = b.aspect_ratio or "9:16",
    video_resolution = b.video_resolution or "standard", interaction_mode = b.interaction_mode or "holdable",
    caption_style = b.caption_style or "tiktok_karaoke", music_enabled = b.music_enabled == true,
    qai_enabled = b.qai_enabled ~= false, qai_mode = b.qai_mode or "lenient",
    stop_at_stage = b.stop_at_stage, stop_index = b.stop_at_stage and min(7, STAGE_INDEX[b.stop_at_stage]) or nil,
    fail_index = fail_index, fail_category = fail_category,
    idempotency_key = idem_key, webhook_url = b.webhook_url,
    credits_estimated = total, credits_reserved = total, credits_consumed = 0, breakdown = breakdown,
    created_at = clock.iso_now(), updated_at = clock.iso_now(),
  }
  ledger.add(T, "reserve", -total, job.job_id, "Credits reserved for job")
  T.jobs[#T.jobs + 1] = job
  T.jobs_by_id[job.job_id] = job
  state.active[job] = true
  return job
end

return _M
