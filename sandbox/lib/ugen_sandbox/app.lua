-- ugen_sandbox.app: the local U-Gen API server (one nginx worker, LuaJIT).
--
-- Routing and request validation come from the shared endpoint table
-- (ugen.endpoints + ugen.validate), so the SDK and the sandbox cannot drift.
-- All state lives in this worker's Lua tables (hence worker_processes 1):
-- idempotency and limit checks run without yielding, so concurrent requests
-- cannot interleave inside them.
--
-- Entry points (called from the generated nginx.conf):
--   app.init(cfg)      init_by_lua (master): static seed data
--   app.init_worker()  init_worker_by_lua: state, clock, ticker
--   app.handle()       content_by_lua for every dynamic path
--   app.error_page()   content_by_lua of the error_page location

local endpoints = require "ugen.endpoints"
local validate = require "ugen.validate"
local util = require "ugen_sandbox.util"
local seed = require "ugen_sandbox.seed"
local faults = require "ugen_sandbox.faults"
local multipart = require "ugen_sandbox.multipart"
local webhooks = require "ugen_sandbox.webhooks"

local ngx = ngx
local json, null, array, crypto = util.json, util.null, util.array, util.crypto
local type, pairs, ipairs, tostring, tonumber, floor, ceil, min, max, huge =
  type, pairs, ipairs, tostring, tonumber, math.floor, math.ceil, math.min, math.max, math.huge
local concat, sort, insert = table.concat, table.sort, table.insert

local _M = { _VERSION = "0.1.0" }

local API = "/api/v1"
local JSON_MAX = 1024 * 1024             -- JSON request bodies (413 above)
local UPLOAD_MAX = 21 * 1024 * 1024      -- multipart bodies (nginx client_max_body_size)
local DAY = 86400
local TEMPLATE_CAP = 20

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

----------------------------------------------------------------------------
-- State
----------------------------------------------------------------------------

local cfg                      -- { seed, speed, dir, port, root, owner_pid }
local TENANTS, BY_KEY, BY_ID = {}, {}, {}
local MODELS, MODELS_BY_ID = {}, {}
local PERSONAS = {}
local CATALOG = {}
local JWT_SECRET
local ORIGIN                   -- http://127.0.0.1:PORT
local DATA = {}                -- tenant id -> runtime data
local ACTIVE = {}              -- job/task -> true while not terminal
local clock = { t0 = 0, offset = 0 }
local started_at

local function sim_now() return (ngx.now() - clock.t0) * cfg.speed + clock.offset end
local function iso_now() return util.iso(ngx.now()) end

function _M.init(conf)
  cfg = conf
  cfg.speed = tonumber(cfg.speed) or 1
  cfg.start_speed = cfg.speed
  ORIGIN = "http://127.0.0.1:" .. tostring(cfg.port)
  TENANTS = seed.tenants(cfg.seed, crypto.hmac_sha256)
  for _, t in ipairs(TENANTS) do BY_KEY[t.api_key] = t; BY_ID[t.id] = t end
  JWT_SECRET = seed.jwt_secret(cfg.seed)
  MODELS = seed.models
  for _, m in ipairs(MODELS) do MODELS_BY_ID[m.id] = m end
  for _, p in ipairs(seed.personas) do PERSONAS[p.id] = p end
  CATALOG = seed.music_catalog(cfg.seed)
  webhooks.init(cfg)
end

----------------------------------------------------------------------------
-- Credits
----------------------------------------------------------------------------

local KEYFRAME_PRICE = { ["1k"] = 8, ["2k"] = 12, ["4k"] = 18 }

-- The one price function: POST /credits/estimate and job reservations.
-- o = { model, segment_count, segment_duration, resolution, voice, custom_voice,
--       music, custom_captions, qa }
local function price(o)
  local m, n = o.model, o.segment_count
  local duration = m.capabilities.fixed_duration or o.segment_duration or 8
  local video, video_desc
  if m.pricing.per_segment then
    video = m.pricing.per_segment * n
    video_desc = ("%d segment(s) x %d credits (flat per segment)"):format(n, m.pricing.per_segment)
  else
    video = m.pricing.per_second * duration * n
    video_desc = ("%d segment(s) x %d s x %d credits/s"):format(n, duration, m.pricing.per_second)
  end
  local tier = m.keyframe_tier or "1k"
  local res = type(o.resolution) == "string" and o.resolution:lower() or nil
  if res == "4k" then tier = "4k" elseif (res == "2k" or res == "hd") and tier == "1k" then tier = "2k" end
  local kf_unit = KEYFRAME_PRICE[tier]
  local keyframes = (n + 1) * kf_unit
  local voice = o.voice and (o.custom_voice and 20 or 15) or 0
  local music = o.music and 15 or 0
  local captions = o.custom_captions and 20 or 0
  local post = 10
  local qa = o.qa and ceil(0.15 * (video + keyframes)) or 0
  local breakdown = { video = video, keyframes = keyframes, voice = voice, music = music,
                      captions = captions, post_processing = post, qa_buffer = qa }
  local total = video + keyframes + voice + music + captions + post + qa
  local items = array{
    { component = "video", description = video_desc, credits = video },
    { component = "keyframes", description = ("%d keyframes x %d credits (%s)"):format(n + 1, kf_unit,
      tier:upper()), credits = keyframes },
    { component = "voice", description = o.voice and (o.custom_voice and "voice-over, custom voice"
      or "voice-over") or "no voice-over", credits = voice },
    { component = "music", description = o.music and "background music" or "no music", credits = music },
    { component = "captions", description = o.custom_captions and "custom caption style"
      or "standard captions (free)", credits = captions },
    { component = "post_processing", description = "concat, mix, burn-in (flat)", credits = post },
    { component = "qa_buffer", description = o.qa and "QA retry buffer (15% of video + keyframes)"
      or "QA off", credits = qa },
  }
  return total, breakdown, items, duration
end

local function available(T) return T.balance - T.reserved end

local function ledger(T, kind, amount, job_id, description)
  local before = available(T)
  if kind == "reserve" then T.reserved = T.reserved - amount       -- amount < 0
  elseif kind == "release" then T.reserved = T.reserved - amount   -- amount > 0
  else T.balance = T.balance + amount end                          -- consume < 0, bonus/purchase > 0
  T.ledger[#T.ledger + 1] = {
    id = util.uuid4(), type = kind, amount = amount, balance_before = before,
    balance_after = available(T), job_id = util.orNull(job_id), description = description,
    created_at = iso_now(),
  }
end

----------------------------------------------------------------------------
-- Tenant data
----------------------------------------------------------------------------

local create_job_record -- forward

local function fresh_tenant(t)
  local T = {
    tenant = t, balance = 0, reserved = 0, ledger = {}, jobs = {}, jobs_by_id = {}, idem = {},
    webhook = nil, templates = {}, music = {}, music_by_id = {}, uploads = 0, avatar_url = nil,
    logo_url = nil, tasks = {}, deliveries = {},
    concurrent_limit = t.concurrent_limit, daily_limit = t.daily_limit,
  }
  ledger(T, "purchase", t.credits, nil, "Sandbox starting balance")
  return T
end

local function reset_tenant(t)
  local old = DATA[t.id]
  if old then
    for _, j in ipairs(old.jobs) do ACTIVE[j] = nil end
    for _, k in pairs(old.tasks) do ACTIVE[k] = nil end
  end
  local T = fresh_tenant(t)
  DATA[t.id] = T
  if t.slug == "default" then
    -- The docs' example job id (UGEN-API.md section 15, workflow 2), running
    -- from the moment of the (re)seed with the docs' workflow 1 values.
    create_job_record(T, {
      product_name = "Premium Wireless Headphones", product_image_url = "https://example.com/headphones.jpg",
      persona_id = "09d3a33a-3eb0-480a-80df-0c64dbf7c98f", video_model = "veo3_fast", segment_count = 3,
      interaction_mode = "holdable", caption_style = "tiktok_karaoke", music_enabled = true,
    }, "550e8400-e29b-41d4-a716-446655440000", "seed-example-job")
  end
  return T
end

----------------------------------------------------------------------------
-- Jobs
----------------------------------------------------------------------------

local function job_end_index(job)
  local last = job.stop_index or 7
  if job.fail_index and job.fail_index <= last then return job.fail_index, true end
  return last, false
end

local function job_remaining_sim(job)
  local idx = job_end_index(job)
  return STAGE_END[idx] - (sim_now() - job.created_sim)
end

local function webhook_event(job, event)
  local T = job.T
  local url = job.webhook_url or (T.webhook and T.webhook.url)
  if not url then return end
  local secret = T.webhook and T.webhook.secret or nil
  webhooks.dispatch(T.deliveries, event, {
    event = event, job_id = job.job_id, status = job.status,
    final_video_url = util.orNull(job.final_video_url), thumbnail_url = util.orNull(job.thumbnail_url),
    credits_consumed = job.credits_consumed, error_message = util.orNull(job.error_message),
    timestamp = iso_now(),
  }, url, secret)
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

local function finish(job, status)
  local T = job.T
  job.status = status
  job.terminal = true
  job.updated_at = iso_now()
  job.completed_at = job.updated_at
  ACTIVE[job] = nil
  local R = job.credits_reserved
  job.credits_reserved = 0
  if R > 0 then ledger(T, "release", R, job.job_id, "Reservation released (" .. status .. ")") end
  if status == "completed" and job.credits_consumed > 0 then
    ledger(T, "consume", -job.credits_consumed, job.job_id, "Job completed")
  end
end

local function advance(job)
  if job.terminal then return end
  local el = sim_now() - job.created_sim
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
      finish(job, "failed")
      webhook_event(job, "job.failed")
    else
      local last = job.stop_index or 7
      job.current_stage = last == 7 and "complete" or STAGES[last]
      job.progress_percent = 100
      job.credits_consumed = last == 7 and (job.credits_estimated - job.breakdown.qa_buffer)
        or consumed_through(job, last)
      if last >= 5 then job.final_video_url = ORIGIN .. "/static/videos/" .. job.job_id .. ".mp4" end
      if last >= 3 then job.thumbnail_url = ORIGIN .. "/static/thumbnails/" .. job.job_id .. ".jpg" end
      finish(job, "completed")
      webhook_event(job, "job.completed")
    end
    return
  end
  local i = 1
  while el >= STAGE_END[i] do i = i + 1 end
  local stage = STAGES[i]
  if stage ~= job.current_stage then job.updated_at = iso_now() end
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

local function public_job(job)
  advance(job)
  local o = {}
  for _, k in ipairs(PUBLIC_JOB_FIELDS) do o[k] = util.orNull(job[k]) end
  o.credit_breakdown = job.breakdown
  return o
end

local function parse_fail_marker(name)
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

local function job_price(b, model)
  local vs = type(b.voice_settings) == "table" and b.voice_settings or nil
  return price{
    model = model, segment_count = b.segment_count, segment_duration = b.segment_duration,
    resolution = b.video_resolution, voice = true, custom_voice = vs ~= nil and vs.voice_id ~= nil,
    music = b.music_enabled == true or b.custom_music_id ~= nil,
    custom_captions = type(b.custom_caption_options) == "table" and next(b.custom_caption_options) ~= nil,
    qa = b.qai_enabled ~= false,
  }
end

create_job_record = function(T, b, job_id, idem_key)
  local model = MODELS_BY_ID[b.video_model or "kling3_std"]
  local total, breakdown, _, duration = job_price(b, model)
  local persona = b.persona_id
  if not persona then
    local ids = {}
    for id in pairs(PERSONAS) do ids[#ids + 1] = id end
    sort(ids)
    persona = ids[math.random(#ids)]
  end
  local fail_index, fail_category = parse_fail_marker(b.product_name)
  local job = {
    T = T, job_id = job_id or util.uuid4(), created_sim = sim_now(),
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
    created_at = iso_now(), updated_at = iso_now(),
  }
  ledger(T, "reserve", -total, job.job_id, "Credits reserved for job")
  T.jobs[#T.jobs + 1] = job
  T.jobs_by_id[job.job_id] = job
  ACTIVE[job] = true
  return job
end

----------------------------------------------------------------------------
-- Playground tasks
----------------------------------------------------------------------------

local TASK_SECONDS = 5

local function advance_task(task)
  if task.terminal then return end
  local el = sim_now() - task.created_sim
  if el >= TASK_SECONDS then
    task.terminal = true
    ACTIVE[task] = nil
    task.progress_percent = 100
    task.completed_at = iso_now()
    if task.fail then
      task.status = "failed"
      task.error_message = "Generation failed: CONTENT_POLICY"
    else
      task.status = "completed"
      task.result_url = task.category == "image" and (ORIGIN .. "/static/playground/" .. task.task_id .. ".png")
        or (ORIGIN .. "/static/videos/" .. task.task_id .. ".mp4")
    end
  else
    task.status = el < 0.5 and "queued" or "processing"
    task.progress_percent = floor(el / TASK_SECONDS * 100)
  end
end

local function public_task(task)
  advance_task(task)
  return {
    task_id = task.task_id, model_id = task.model_id, status = task.status,
    progress_percent = task.progress_percent, result_url = util.orNull(task.result_url),
    error_message = util.orNull(task.error_message), input = task.input,
    created_at = task.created_at, completed_at = util.orNull(task.completed_at),
  }
end

----------------------------------------------------------------------------
-- Ticker (job side effects happen even when nobody polls)
----------------------------------------------------------------------------

local function tick(premature)
  if premature then return end
  local list = {}
  for x in pairs(ACTIVE) do list[#list + 1] = x end
  for _, x in ipairs(list) do
    local ok, err = pcall(x.task_id and advance_task or advance, x)
    if not ok then ngx.log(ngx.ERR, "sandbox tick: ", err) end
  end
end

local function watchdog(premature)
  if premature or not cfg.owner_pid then return end
  local f = io.open("/proc/" .. tostring(cfg.owner_pid) .. "/stat", "r")
  if f then f:close(); return end
  ngx.log(ngx.WARN, "sandbox: owner process ", cfg.owner_pid, " is gone; shutting down")
  -- the master is this worker's parent (field 4 of /proc/self/stat)
  local sf = io.open("/proc/self/stat", "r")
  local stat = sf and sf:read("*l")
  if sf then sf:close() end
  local master = stat and tonumber(stat:match("^%d+ %b() %S+ (%d+)"))
  if master and master > 1 then os.execute("kill -TERM " .. master) end
end

function _M.init_worker()
  math.randomseed(floor(ngx.now() * 1000) % 2147483647)
  clock.t0, clock.offset = ngx.now(), 0
  started_at = iso_now()
  for _, t in ipairs(TENANTS) do reset_tenant(t) end
  assert(ngx.timer.every(0.05, tick))
  if cfg.owner_pid then assert(ngx.timer.every(1, watchdog)) end
end

----------------------------------------------------------------------------
-- HTTP helpers
----------------------------------------------------------------------------

local function err_body(code, message, details)
  local e = { code = code, message = message }
  if details then e.details = details end
  return { error = e }
end

local function E(status, code, message, details, headers)
  return { status = status, body = err_body(code, message, details), headers = headers }
end

local function R(status, body, headers)
  return { status = status, body = body, headers = headers }
end

local function unprocessable(details)
  return R(422, { detail = details })
end

local function value_error(loc, msg, input)
  return unprocessable({ { type = "value_error", loc = loc, msg = msg, input = util.orNull(input) } })
end

local function set_headers(h)
  if not h then return end
  for k, v in pairs(h) do ngx.header[k] = v end
end

-- Send a response (honouring the output side of a fault).
local function send(resp, fault)
  local body = resp.raw
  if body == nil then
    local err
    body, err = json.encode(resp.body)
    -- cjson 2.1.0 always escapes "/"; it never emits a bare "/", so "\\/" is
    -- always an escaped slash and unescaping it keeps the JSON identical.
    if body then body = body:gsub("\\/", "/") end
    if not body then
      ngx.log(ngx.ERR, "sandbox: cannot encode response: ", err)
      resp = E(500, "INTERNAL_ERROR", "The sandbox could not encode its response")
      body = json.encode(resp.body)
    end
  end
  if fault and fault.badjson then body = faults.badjson(body) end
  if fault and fault.delay and fault.delay > 0 then ngx.sleep(fault.delay) end
  if fault and fault.reset_after then return ngx.exit(444) end
  ngx.status = resp.status
  set_headers(resp.headers)
  ngx.header["Content-Type"] = resp.content_type or "application/json"
  ngx.header["Content-Length"] = #body
  if fault and fault.truncate then
    ngx.print(body:sub(1, floor(#body / 2)))
    ngx.flush(true)
    return ngx.exit(ngx.ERROR)
  end
  ngx.print(body)
  return ngx.exit(ngx.HTTP_OK)
end

-- -> body string | nil, resp
local function read_body(limit)
  local cl = tonumber(ngx.var.http_content_length or "")
  if cl and cl > limit then
    return nil, E(413, "PAYLOAD_TOO_LARGE", ("Request body too large (limit %d bytes)"):format(limit),
                  { max_bytes = limit })
  end
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if not data then
    local path = ngx.req.get_body_file()
    if path then
      local f = io.open(path, "rb")
      if f then data = f:read("*a"); f:close() end
    end
  end
  data = data or ""
  if #data > limit then
    return nil, E(413, "PAYLOAD_TOO_LARGE", ("Request body too large (limit %d bytes)"):format(limit),
                  { max_bytes = limit })
  end
  return data
end

local function is_json_type(ct)
  if ct == nil then return true end
  if type(ct) == "table" then ct = ct[1] end
  ct = ct:lower():match("^%s*([^;%s]+)")
  return ct == nil or ct == "application/json" or (ct:match("^application/[%w.%-]+%+json$") ~= nil)
end

local function is_finite(x) return x == x and x ~= huge and x ~= -huge end

-- Does a decoded JSON value hold a NaN or an infinity anywhere? (Nesting is
-- bounded by the decoder's depth limit.)
local function has_non_finite(v)
  local tv = type(v)
  if tv == "number" then return not is_finite(v) end
  if tv == "table" then
    for k, x in pairs(v) do
      if has_non_finite(x) or (type(k) == "number" and not is_finite(k)) then return true end
    end
  end
  return false
end

-- Decode a JSON request body -> table | nil, resp
local function json_body()
  if not is_json_type(ngx.var.http_content_type) then
    return nil, E(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json")
  end
  local data, resp = read_body(JSON_MAX)
  if not data then return nil, resp end
  if data:match("^%s*$") then return {} end
  local v, err = json.decode(data, true)
  if v ~= nil and has_non_finite(v) then
    -- cjson accepts NaN, Infinity, -Infinity (and 1e999 overflows to inf):
    -- none is a JSON number, and no handler or response can carry one.
    v, err = nil, "NaN, Infinity or a number out of range is not a JSON number"
  end
  if v == nil then
    return nil, unprocessable({ { type = "json_invalid", loc = { "body", 0 }, msg = "JSON decode error",
                                  input = {}, ctx = { error = tostring(err) } } })
  end
  if type(v) ~= "table" or v == null or (#v > 0) then
    return nil, unprocessable({ { type = "dict_type", loc = { "body" },
      msg = "Input should be a valid dictionary or object to extract fields from", input = v } })
  end
  return v
end

local function query_args()
  local args = ngx.req.get_uri_args(100)
  local out = {}
  for k, v in pairs(args) do
    if type(v) == "table" then v = v[#v] end
    out[k] = v
  end
  return out
end

----------------------------------------------------------------------------
-- Auth
----------------------------------------------------------------------------

local function unauthorized(code, message)
  return E(401, code, message, nil, { ["WWW-Authenticate"] = 'Bearer realm="u-gen sandbox"' })
end

local function verify_jwt(token)
  local h, p, s = token:match("^([%w_%-]+)%.([%w_%-]+)%.([%w_%-]+)$")
  if not h then return nil end
  local header = json.decode(seed.base64url_decode(h) or "")
  if type(header) ~= "table" or header.alg ~= "HS256" then return nil end
  local expected = seed.base64url(seed.from_hex(crypto.hmac_sha256(JWT_SECRET, h .. "." .. p)))
  if not crypto.consteq(expected, s) then return nil end
  local payload = json.decode(seed.base64url_decode(p) or "")
  if type(payload) ~= "table" or type(payload.exp) ~= "number" or payload.exp <= ngx.time() then
    return nil
  end
  return BY_ID[payload.sub]
end

-- -> T | nil, resp. A Bearer token wins over X-API-Key when both are sent.
local function authenticate()
  local authz = ngx.var.http_authorization
  if authz then
    local token = authz:match("^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
    if not token then
      return nil, unauthorized("INVALID_TOKEN", "Authorization header must be 'Bearer <token>'")
    end
    local t = verify_jwt(token)
    if not t then return nil, unauthorized("INVALID_TOKEN", "Invalid or expired token") end
    return DATA[t.id]
  end
  local key = ngx.var.http_x_api_key
  if key then
    local t = BY_KEY[key]
    if not t then return nil, unauthorized("INVALID_API_KEY", "Invalid API key") end
    return DATA[t.id]
  end
  return nil, unauthorized("AUTHENTICATION_REQUIRED",
                           "Missing credentials: send X-API-Key or Authorization: Bearer <token>")
end

----------------------------------------------------------------------------
-- Uploads
----------------------------------------------------------------------------

-- Parse a multipart request for endpoint ep -> parts | nil, resp
local function multipart_body(ep)
  local ct = ngx.var.http_content_type
  local boundary = multipart.boundary(ct)
  if not boundary then
    return nil, E(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be multipart/form-data with a boundary")
  end
  local data, resp = read_body(UPLOAD_MAX)
  if not data then return nil, resp end
  local parts, err = multipart.parse(data, boundary)
  if not parts then return nil, E(400, "INVALID_MULTIPART", "Malformed multipart body: " .. err) end
  local params = {}
  for _, p in ipairs(ep.params) do
    local part = parts[p.name]
    if part then
      if p.type == "file" then params[p.name] = part else params[p.name] = part.data end
    end
  end
  local details = validate.check(ep, params, { body = {} })
  if details then
    for _, d in ipairs(details) do
      if type(d.input) == "table" and d.input.data then d.input = d.input.filename or "<file>" end
    end
    return nil, unprocessable(details)
  end
  return parts
end

-- Check the file part against the endpoint's formats and size; store it.
-- -> record | nil, resp
local function store_file(T, ep, part, kind)
  local spec = ep.by_param.file
  if not part.filename then
    return nil, E(400, "INVALID_FILE", "The file field must be a file upload (with a filename)")
  end
  local allowed = {}
  for k in pairs(spec.formats) do allowed[#allowed + 1] = k end
  sort(allowed)
  if #part.data == 0 then return nil, E(400, "EMPTY_FILE", "The uploaded file is empty") end
  local declared = part.content_type and part.content_type:lower():match("^%s*([^;%s]+)")
  local declared_fmt = declared and multipart.mime_alias[declared]
  local sniffed = multipart.sniff(part.data)
  local fmt = sniffed
  if declared and declared ~= "application/octet-stream" and declared_fmt ~= sniffed then fmt = nil end
  if not fmt or not spec.formats[fmt] then
    return nil, E(400, "UNSUPPORTED_FILE_TYPE",
      ("Unsupported file type%s; allowed: %s"):format(declared and (" '" .. declared .. "'") or "",
        concat(allowed, ", ")), { allowed = array(allowed), content_type = util.orNull(declared) })
  end
  if #part.data > spec.max_bytes then
    return nil, E(413, "FILE_TOO_LARGE", ("File too large: %d bytes (limit %d)"):format(#part.data, spec.max_bytes),
                  { max_bytes = spec.max_bytes, size_bytes = #part.data })
  end
  local id = util.uuid4()
  local rel = ("%s/%s/%s.%s"):format(T.tenant.id, kind, id, multipart.extension[fmt])
  local dir = cfg.dir .. "/files/" .. T.tenant.id .. "/" .. kind
  os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
  local f, ferr = io.open(cfg.dir .. "/files/" .. rel, "wb")
  if not f then
    ngx.log(ngx.ERR, "sandbox: cannot store upload: ", ferr)
    return nil, E(500, "INTERNAL_ERROR", "The sandbox could not store the file")
  end
  f:write(part.data)
  f:close()
  T.uploads = T.uploads + 1
  return { id = id, url = ORIGIN .. "/files/" .. rel, filename = part.filename,
           content_type = spec.formats[fmt], size_bytes = #part.data, created_at = iso_now() }
end

----------------------------------------------------------------------------
-- Handlers: name -> function(T, params, ctx) -> resp
----------------------------------------------------------------------------

local H = {}

local function model_public(m)
  return {
    id = m.id, name = m.name, family = m.family, vendor = m.vendor, category = m.category,
    status = m.status, tier = m.tier, default_variant = m.default_variant,
    usable_in_jobs = m.jobs, usable_in_playground = m.playground, capabilities = m.capabilities,
    pricing = m.pricing and { per_second = util.orNull(m.pricing.per_second),
                              per_segment = util.orNull(m.pricing.per_segment),
                              keyframe_tier = m.keyframe_tier } or null,
  }
end

H["models.list"] = function()
  local out = array()
  for _, m in ipairs(MODELS) do
    if m.status ~= "coming_soon" then out[#out + 1] = model_public(m) end
  end
  return R(200, out)
end

H["models.get"] = function(_, p)
  local m = MODELS_BY_ID[p.model_id]
  if not m then return E(404, "MODEL_NOT_FOUND", "Model '" .. p.model_id .. "' not found") end
  return R(200, model_public(m))
end

H["models.try"] = function(T, p, ctx)
  local m = MODELS_BY_ID[p.model_id]
  if not m then return E(404, "MODEL_NOT_FOUND", "Model '" .. p.model_id .. "' not found") end
  if not m.playground then
    return value_error({ "path", "model_id" }, "Value error, model '" .. m.id .. "' is not available yet ("
                       .. m.status .. ")", m.id)
  end
  local body = ctx.body
  local task = {
    task_id = util.uuid4(), model_id = m.id, category = m.category, created_sim = sim_now(),
    created_at = iso_now(), status = "queued", progress_percent = 0, input = body,
    fail = type(body.prompt) == "string" and body.prompt:find("[fail]", 1, true) ~= nil,
  }
  T.tasks[task.task_id] = task
  ACTIVE[task] = true
  return R(202, { task_id = task.task_id, model_id = m.id, status = "queued",
                  status_url = API .. "/playground/tasks/" .. task.task_id, created_at = task.created_at },
           { Location = API .. "/playground/tasks/" .. task.task_id })
end

H["playground.task"] = function(T, p)
  local task = T.tasks[p.task_id]
  if not task then return E(404, "TASK_NOT_FOUND", "Task not found") end
  return R(200, public_task(task))
end

H["jobs.create"] = function(T, b, ctx)
  local model_id = b.video_model or "kling3_std"
  local model = MODELS_BY_ID[model_id]
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
  if b.persona_id and not PERSONAS[b.persona_id] then verr("persona_id", "unknown persona_id") end
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
  local fidx, ferr = parse_fail_marker(b.product_name)
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
        return R(200, public_job(T.jobs_by_id[prev.job_id]), { ["X-Idempotent-Replay"] = "true" })
      end
      return E(409, "IDEMPOTENCY_CONFLICT",
        "idempotency_key was already used with different parameters",
        { idempotency_key = key, job_id = prev.job_id })
    end
  end

  -- Limits.
  local active, oldest_active_left = 0, nil
  local day_count, oldest_day = 0, nil
  local s_now = sim_now()
  for _, j in ipairs(T.jobs) do
    advance(j)
    if not j.terminal then
      active = active + 1
      local left = job_remaining_sim(j)
      if not oldest_active_left or left < oldest_active_left then oldest_active_left = left end
    end
    if s_now - j.created_sim < DAY and j.idempotency_key ~= "seed-example-job" then
      day_count = day_count + 1
      if not oldest_day or j.created_sim < oldest_day then oldest_day = j.created_sim end
    end
  end
  if active >= T.concurrent_limit then
    local ra = util.ceil_pos(max(oldest_active_left or 1, 0) / cfg.speed)
    return E(429, "RATE_LIMIT_EXCEEDED", ("Concurrent job limit reached (%d running)"):format(active),
      { limit_type = "concurrent", limit = T.concurrent_limit, retry_after = ra }, { ["Retry-After"] = tostring(ra) })
  end
  if day_count >= T.daily_limit then
    local ra = util.ceil_pos((oldest_day + DAY - s_now) / cfg.speed)
    return E(429, "RATE_LIMIT_EXCEEDED", ("Daily job limit reached (%d per day)"):format(T.daily_limit),
      { limit_type = "daily", limit = T.daily_limit, retry_after = ra }, { ["Retry-After"] = tostring(ra) })
  end

  -- Credits.
  local total = job_price(b, model)
  if available(T) < total then
    return E(402, "INSUFFICIENT_CREDITS", "Not enough credits for this job",
             { required = total, available = available(T) })
  end

  local job = create_job_record(T, b, nil, key or util.uuid4())
  if key then T.idem[key] = { fingerprint = fingerprint, job_id = job.job_id } end
  return R(201, public_job(job), { Location = API .. "/jobs/" .. job.job_id })
end

H["jobs.get"] = function(T, p)
  local job = T.jobs_by_id[p.job_id]
  if not job then return E(404, "JOB_NOT_FOUND", "Job not found") end
  return R(200, public_job(job))
end

H["jobs.list"] = function(T, p, ctx)
  local list = {}
  local status = ctx.query.status
  for i = #T.jobs, 1, -1 do
    local j = T.jobs[i]
    advance(j)
    if not status or j.status == status then list[#list + 1] = j end
  end
  local env = util.page(list, p.page or 1, p.page_size or 20)
  for i, j in ipairs(env.items) do env.items[i] = public_job(j) end
  return R(200, env)
end

H["credits.balance"] = function(T)
  return R(200, { credit_balance = T.balance, credit_reserved = T.reserved, available_credits = available(T) })
end

H["credits.transactions"] = function(T, p)
  local list = {}
  for i = #T.ledger, 1, -1 do
    local e = T.ledger[i]
    if not p.job_id or e.job_id == p.job_id then list[#list + 1] = e end
  end
  return R(200, util.page(list, p.page or 1, p.page_size or 20))
end

-- jobs.create's rules for the extra fields POST /credits/estimate honours.
local ESTIMATE_EXTRA_EP
do
  local params = {}
  for _, name in ipairs({ "segment_duration", "video_resolution", "voice_settings", "custom_caption_options",
                          "qai_enabled" }) do
    params[#params + 1] = endpoints.by_name["jobs.create"].by_param[name]
  end
  ESTIMATE_EXTRA_EP = { params = params }
end

H["credits.estimate"] = function(_, b, ctx)
  local model_id = b.model_id or "kling3_std"
  local model = MODELS_BY_ID[model_id]
  if not model then
    return value_error({ "body", "model_id" }, "Value error, unknown model_id '" .. model_id .. "'", model_id)
  end
  if not model.jobs then
    return value_error({ "body", "model_id" }, "Value error, '" .. model_id .. "' cannot be used for jobs",
                       model_id)
  end
  -- The job fields the estimate honours beyond the documented ones, checked
  -- with the jobs.create rules (segment_duration: an integer 3-10).
  local details, extra = validate.check(ESTIMATE_EXTRA_EP, b, { null = null, body = ctx.body })
  if details then return unprocessable(details) end
  local sd = extra.segment_duration
  if model.capabilities.fixed_duration and sd and sd ~= model.capabilities.fixed_duration then
    return value_error({ "body", "segment_duration" }, ("Value error, %s segments have a fixed duration of %d seconds")
      :format(model_id, model.capabilities.fixed_duration), sd)
  end
  local n = b.segment_count or 1
  local vs = type(b.voice_settings) == "table" and b.voice_settings or nil
  local total, breakdown, items, duration = price{
    model = model, segment_count = n, segment_duration = sd, resolution = b.video_resolution,
    voice = b.voice_enabled ~= false, custom_voice = vs ~= nil and vs.voice_id ~= nil,
    music = b.music_enabled == true, custom_captions = type(b.custom_caption_options) == "table",
    qa = b.qai_enabled ~= false,
  }
  return R(200, {
    total_credits = total, breakdown = breakdown, line_items = items,
    model_id = model_id, variant = b.variant or model.default_variant, segment_count = n,
    segment_duration = duration, currency = "credits",
    note = "Estimates may differ from the final charge; the QA buffer is only consumed when QA retries run.",
  })
end

local function webhook_view(T)
  local w = T.webhook
  return { webhook_configured = w ~= nil, webhook_url = w and w.url or null,
           webhook_secret_set = w ~= nil and w.secret ~= nil, updated_at = w and w.updated_at or null }
end

H["webhooks.set"] = function(T, b)
  local msg = webhooks.check_url(b.webhook_url)
  if msg then return value_error({ "body", "webhook_url" }, msg, b.webhook_url) end
  if b.webhook_secret == "" then
    return value_error({ "body", "webhook_secret" }, "Value error, webhook_secret must not be empty "
                       .. "(omit it for unsigned deliveries)", "")
  end
  T.webhook = { url = b.webhook_url, secret = b.webhook_secret, updated_at = iso_now() }
  return R(200, webhook_view(T))
end

H["webhooks.get"] = function(T) return R(200, webhook_view(T)) end

H["webhooks.delete"] = function(T)
  T.webhook = nil
  return R(200, webhook_view(T))
end

local function profile(T)
  local t = T.tenant
  return {
    id = t.id, name = t.name, slug = t.slug, email = t.email, plan = "sandbox",
    avatar_url = util.orNull(T.avatar_url),
    brand_kit = { logo_url = util.orNull(T.logo_url), enabled = T.logo_url ~= nil, position = "bottom_right",
                  opacity = 0.8, size = 0.15, margin = 24 },
    credit_balance = T.balance, available_credits = available(T),
    limits = { concurrent_jobs = T.concurrent_limit, jobs_per_day = T.daily_limit },
    webhook_configured = T.webhook ~= nil, created_at = started_at,
  }
end

H["tenant.get"] = function(T) return R(200, profile(T)) end

H["tenant.upload_avatar"] = function(T, _, ctx)
  local rec, resp = store_file(T, ctx.ep, ctx.parts.file, "avatars")
  if not rec then return resp end
  T.avatar_url = rec.url
  return R(200, { avatar_url = rec.url, content_type = rec.content_type, size_bytes = rec.size_bytes,
                  updated_at = rec.created_at })
end

H["brand_kit.upload_logo"] = function(T, _, ctx)
  local rec, resp = store_file(T, ctx.ep, ctx.parts.file, "brand-kit")
  if not rec then return resp end
  T.logo_url = rec.url
  return R(200, { logo_url = rec.url, content_type = rec.content_type, size_bytes = rec.size_bytes,
                  updated_at = rec.created_at })
end

H["uploads.product_image"] = function(T, _, ctx)
  local rec, resp = store_file(T, ctx.ep, ctx.parts.file, "products")
  if not rec then return resp end
  return R(201, rec)
end

H["music.catalog"] = function(_, p)
  local out = array()
  local limit = p.limit or 50
  for _, tr in ipairs(CATALOG) do
    if #out >= limit then break end
    if (not p.mood or tr.mood == p.mood:lower()) and (not p.tempo or tr.tempo == p.tempo:lower()) then
      out[#out + 1] = tr
    end
  end
  return R(200, out)
end

local function track_public(tr)
  return { id = tr.id, title = tr.title, url = tr.url, filename = tr.filename, content_type = tr.content_type,
           size_bytes = tr.size_bytes, is_active = tr.is_active, created_at = tr.created_at,
           deleted_at = util.orNull(tr.deleted_at) }
end

H["music.list"] = function(T)
  local out = array()
  for i = #T.music, 1, -1 do
    if T.music[i].is_active then out[#out + 1] = track_public(T.music[i]) end
  end
  return R(200, out)
end

H["music.upload"] = function(T, _, ctx)
  local rec, resp = store_file(T, ctx.ep, ctx.parts.file, "music")
  if not rec then return resp end
  local tr = { id = rec.id, title = ctx.parts.title.data, url = rec.url, filename = rec.filename,
               content_type = rec.content_type, size_bytes = rec.size_bytes, is_active = true,
               created_at = rec.created_at }
  T.music[#T.music + 1] = tr
  T.music_by_id[tr.id] = tr
  return R(201, track_public(tr))
end

H["music.delete"] = function(T, p)
  local tr = T.music_by_id[p.music_id]
  if not tr or not tr.is_active then
    for _, c in ipairs(CATALOG) do
      if c.id == p.music_id then
        return E(403, "FORBIDDEN", "Catalog tracks cannot be deleted")
      end
    end
    return E(404, "MUSIC_NOT_FOUND", "Music track not found")
  end
  tr.is_active = false
  tr.deleted_at = iso_now()
  return R(200, track_public(tr))
end

local function template_sorted(T)
  local list = {}
  for _, t in ipairs(T.templates) do list[#list + 1] = t end
  sort(list, function(a, b)
    if a.is_default ~= b.is_default then return a.is_default end
    if a.use_count ~= b.use_count then return a.use_count > b.use_count end
    if a.updated_seq ~= b.updated_seq then return a.updated_seq > b.updated_seq end
    return a.id < b.id
  end)
  return list
end

H["templates.list"] = function(T, p)
  local out = array()
  for _, t in ipairs(template_sorted(T)) do
    if #out >= (p.limit or 50) then break end
    out[#out + 1] = t.public
  end
  return R(200, out)
end

-- Template config: any subset of job settings, checked with the jobs.create
-- parameter rules (none required); `output_aspect_ratio` is the config's name
-- for aspect_ratio (UGEN-API.md section 13).
local CONFIG_EP
do
  local params = {}
  for _, p in ipairs(endpoints.by_name["jobs.create"].params) do
    local c = {}
    for k, v in pairs(p) do c[k] = v end
    c.required = nil
    params[#params + 1] = c
  end
  params[#params + 1] = { name = "output_aspect_ratio", ["in"] = "body", type = "string" }
  CONFIG_EP = { params = params }
end

local template_seq = 0

H["templates.create"] = function(T, b)
  local config = {}
  for k, v in pairs(b.config) do if v ~= null then config[k] = v end end
  local details = validate.check(CONFIG_EP, config)
  if details then
    for _, d in ipairs(details) do insert(d.loc, 2, "config") end
    return unprocessable(details)
  end
  if config.webhook_url ~= nil then
    local msg = webhooks.check_url(config.webhook_url)
    if msg then return value_error({ "body", "config", "webhook_url" }, msg, config.webhook_url) end
  end
  if config.product_name ~= nil or config.product_image_url ~= nil then
    return value_error({ "body", "config" }, "Value error, templates hold no product data "
                       .. "(product_name, product_image_url)", b.config)
  end
  if #T.templates >= TEMPLATE_CAP then
    return E(409, "TEMPLATE_LIMIT_REACHED", ("At most %d templates per account"):format(TEMPLATE_CAP),
             { limit = TEMPLATE_CAP })
  end
  if b.is_default then
    for _, t in ipairs(T.templates) do
      t.is_default = false
      t.public.is_default = false
    end
  end
  template_seq = template_seq + 1
  local now_iso = iso_now()
  local t = { id = util.uuid4(), is_default = b.is_default == true, use_count = 0, updated_seq = template_seq }
  t.public = { id = t.id, name = b.name, description = util.orNull(b.description), config = config,
               is_default = t.is_default, use_count = 0, created_at = now_iso, updated_at = now_iso }
  T.templates[#T.templates + 1] = t
  return R(201, t.public)
end

----------------------------------------------------------------------------
-- Routing (driven by ugen.endpoints)
----------------------------------------------------------------------------

local ROUTES = {}
do
  local by_path = {}
  local function add_route(path, method, ep, name)
    local r = by_path[path]
    if not r then
      local names = {}
      local pat = "^" .. path:gsub("[%-%.]", "%%%0"):gsub("{([%w_]+)}", function(n)
        names[#names + 1] = n
        return "([^/]+)"
      end) .. "$"
      r = { path = path, pattern = pat, names = names, methods = {} }
      by_path[path] = r
      ROUTES[#ROUTES + 1] = r
    end
    r.methods[method] = { ep = ep, name = name }
  end
  for _, ep in ipairs(endpoints.list) do
    add_route(ep.path, ep.method, ep, ep.resource .. "." .. ep.name)
  end
  -- Sandbox choice for the undocumented playground task-status endpoint.
  add_route("/playground/tasks/{task_id}", "GET", {
    method = "GET", path = "/playground/tasks/{task_id}", success = 200,
    params = { { name = "task_id", ["in"] = "path", type = "string", required = true } },
    by_param = {},
  }, "playground.task")
  -- Literal routes before parameterised ones.
  sort(ROUTES, function(a, b)
    if #a.names ~= #b.names then return #a.names < #b.names end
    return a.path < b.path
  end)
end

local function match_route(path)
  for _, r in ipairs(ROUTES) do
    local caps = { path:match(r.pattern) }
    if caps[1] or path:match(r.pattern) then
      local params = {}
      for i, n in ipairs(r.names) do params[n] = ngx.unescape_uri(caps[i]) end
      return r, params
    end
  end
  return nil
end

local function allow_header(r)
  local m = {}
  for k in pairs(r.methods) do m[#m + 1] = k end
  if r.methods.GET then m[#m + 1] = "HEAD" end
  sort(m)
  return concat(m, ", ")
end

local function dispatch(method, path)
  local r, path_params = match_route(path)
  if not r then
    return E(404, "NOT_FOUND", "No route for " .. method .. " " .. API .. path)
  end
  local entry = r.methods[method]
  if not entry then
    return E(405, "METHOD_NOT_ALLOWED", "Method " .. method .. " not allowed on " .. API .. path, nil,
             { Allow = allow_header(r) })
  end
  local T, aresp = authenticate()
  if not T then return aresp end

  local ep = entry.ep
  local ctx = { ep = ep, query = query_args(), body = {} }
  local params = {}
  for k, v in pairs(ctx.query) do params[k] = v end
  if ep.body == "json" then
    local b, resp = json_body()
    if not b then return resp end
    ctx.body = b
    for k, v in pairs(b) do params[k] = v end
  elseif ep.body == "multipart" then
    local parts, resp = multipart_body(ep)
    if not parts then return resp end
    ctx.parts = parts
    return H[entry.name](T, params, ctx)
  end
  for k, v in pairs(path_params) do params[k] = v end
  local details, clean = validate.check(ep, params, { null = null, body = ctx.body })
  if details then return unprocessable(details) end
  -- Treat JSON nulls as absent from here on.
  for k, v in pairs(clean) do if v == null then clean[k] = nil end end
  return H[entry.name](T, clean, ctx)
end

----------------------------------------------------------------------------
-- /_sandbox admin endpoints (not part of the U-Gen API)
----------------------------------------------------------------------------

-- Bounds of the admin numbers: every value the clock, the ledger and the
-- limits hold stays finite and exact (no NaN, no infinity, no 1e308 that
-- makes the next arithmetic overflow or lose the sandbox clock's precision).
local ADMIN_MAX, ADMIN_MAX_TEXT = 1e9, "1000000000"
local SPEED_MAX, SPEED_MAX_TEXT = 1e6, "1000000"

local function admin(method, path)
  if path == "/_sandbox/health" then
    if method ~= "GET" then return E(405, "METHOD_NOT_ALLOWED", "Use GET", nil, { Allow = "GET, HEAD" }) end
    return R(200, { status = "ok", service = "u-gen sandbox", version = _M._VERSION, port = cfg.port,
                    speed = cfg.speed, started_at = started_at, worker_pid = ngx.worker.pid() })
  end
  local routes = {
    ["/_sandbox/deliveries"] = "GET", ["/_sandbox/reset"] = "POST", ["/_sandbox/clock"] = "GET POST",
    ["/_sandbox/credits"] = "POST", ["/_sandbox/limits"] = "PUT",
  }
  local job_id = path:match("^/_sandbox/jobs/([^/]+)/cancel$")
  local allowed = job_id and "POST" or routes[path]
  if not allowed then return E(404, "NOT_FOUND", "No route for " .. method .. " " .. path) end
  if not allowed:find(method, 1, true) then
    return E(405, "METHOD_NOT_ALLOWED", "Method " .. method .. " not allowed on " .. path, nil,
             { Allow = allowed:gsub(" ", ", ") })
  end
  local T, aresp = authenticate()
  if not T then return aresp end
  local q = query_args()
  local b = {}
  if method ~= "GET" then
    local body, resp = json_body()
    if not body then return resp end
    b = body
  end

  if path == "/_sandbox/deliveries" then
    local out = array()
    for _, d in ipairs(T.deliveries) do
      if (not q.job_id or d.job_id == q.job_id) and (not q.event or d.event == q.event) then out[#out + 1] = d end
    end
    return R(200, out)
  elseif path == "/_sandbox/reset" then
    local done = array()
    if q.all == "true" or b.all == true then
      faults.clear()
      local s = sim_now()
      clock.t0, clock.offset = ngx.now(), 0
      cfg.speed = cfg.start_speed
      -- keep still-running jobs of other tenants on the new clock
      for x in pairs(ACTIVE) do x.created_sim = x.created_sim - s end
      for _, t in ipairs(TENANTS) do reset_tenant(t); done[#done + 1] = t.slug end
    else
      reset_tenant(T.tenant)
      done[1] = T.tenant.slug
    end
    return R(200, { reset = done })
  elseif path == "/_sandbox/clock" then
    if method == "POST" then
      local adv, speed = b.advance, b.speed
      if adv ~= nil and not (type(adv) == "number" and adv >= 0 and adv <= ADMIN_MAX) then
        return value_error({ "body", "advance" }, "Value error, advance must be a number of seconds from 0 to "
                           .. ADMIN_MAX_TEXT, adv)
      end
      if speed ~= nil and not (type(speed) == "number" and speed > 0 and speed <= SPEED_MAX) then
        return value_error({ "body", "speed" }, "Value error, speed must be a number above 0, at most "
                           .. SPEED_MAX_TEXT, speed)
      end
      if speed then
        -- continue the sandbox clock from where it is at the new rate
        clock.offset, clock.t0 = sim_now(), ngx.now()
        cfg.speed = speed
      end
      clock.offset = clock.offset + (adv or 0)
      tick()
    end
    return R(200, { sim_time = sim_now(), speed = cfg.speed })
  elseif path == "/_sandbox/credits" then
    local n = b.amount
    if not (type(n) == "number" and n == floor(n) and n ~= 0 and n >= -ADMIN_MAX and n <= ADMIN_MAX) then
      return value_error({ "body", "amount" }, "Value error, amount must be a non-zero integer from -"
                         .. ADMIN_MAX_TEXT .. " to " .. ADMIN_MAX_TEXT, b.amount)
    end
    ledger(T, n > 0 and "bonus" or "refund", n, nil, "Sandbox adjustment")
    return H["credits.balance"](T)
  elseif path == "/_sandbox/limits" then
    for _, k in ipairs({ "concurrent_limit", "daily_limit" }) do
      local n = b[k]
      if n ~= nil then
        if not (type(n) == "number" and n == floor(n) and n >= 0 and n <= ADMIN_MAX) then
          return value_error({ "body", k }, "Value error, must be an integer from 0 to " .. ADMIN_MAX_TEXT, n)
        end
        T[k] = n
      end
    end
    return R(200, { concurrent_limit = T.concurrent_limit, daily_limit = T.daily_limit })
  else -- cancel
    local job = T.jobs_by_id[ngx.unescape_uri(job_id)]
    if not job then return E(404, "JOB_NOT_FOUND", "Job not found") end
    advance(job)
    if job.terminal then
      return E(409, "JOB_ALREADY_FINISHED", "Job is already " .. job.status, { status = job.status })
    end
    job.credits_consumed = 0
    finish(job, "cancelled")
    return R(200, public_job(job))
  end
end

----------------------------------------------------------------------------
-- Entry points
----------------------------------------------------------------------------

local function handle_inner()
  ngx.header["X-Request-Id"] = ngx.var.request_id
  local method = ngx.req.get_method()
  if method == "HEAD" then method = "GET" end
  local path = (ngx.var.request_uri or "/"):match("^[^?#]*")

  if path:sub(1, 10) == "/_sandbox/" then return send(admin(method, path)) end

  if path:sub(1, #API + 1) ~= API .. "/" then
    return send(E(404, "NOT_FOUND", "No route for " .. method .. " " .. path))
  end

  local fault
  local fh = ngx.req.get_headers()["x-sandbox-fault"]
  if fh then
    local f, ferr = faults.parse(fh)
    if not f then return send(E(400, "INVALID_SANDBOX_FAULT", "X-Sandbox-Fault: " .. ferr)) end
    if faults.applies(f) then fault = f end
  end
  if fault then
    if fault.reset then return ngx.exit(444) end
    if fault.status then
      if fault.delay and fault.delay > 0 then ngx.sleep(fault.delay) end
      local codes = { [429] = "RATE_LIMIT_EXCEEDED", [500] = "INTERNAL_ERROR", [502] = "BAD_GATEWAY",
                      [503] = "SERVICE_UNAVAILABLE", [504] = "GATEWAY_TIMEOUT" }
      local headers, details = {}, nil
      if fault.retry_after then
        headers["Retry-After"] = tostring(fault.retry_after)
        details = { retry_after = fault.retry_after }
      end
      if fault.html then
        return send({ status = fault.status, headers = headers, content_type = "text/html",
          raw = ("<html><head><title>%d</title></head><body><h1>%d</h1><p>sandbox fault</p></body></html>\n")
            :format(fault.status, fault.status) })
      end
      return send(E(fault.status, codes[fault.status] or "SANDBOX_FAULT",
                    "Injected fault (X-Sandbox-Fault): HTTP " .. fault.status, details, headers))
    end
  end
  return send(dispatch(method, path:sub(#API + 1)), fault)
end

function _M.handle()
  local ok, err = xpcall(handle_inner, debug.traceback)
  if not ok then
    ngx.log(ngx.ERR, "sandbox: unhandled error: ", err)
    if not ngx.headers_sent then
      ngx.status = 500
      ngx.header["Content-Type"] = "application/json"
      ngx.print(json.encode(err_body("INTERNAL_ERROR", "Internal sandbox error")))
    end
    return ngx.exit(ngx.HTTP_OK)
  end
end

local NGINX_CODES = {
  [400] = { "BAD_REQUEST", "Bad request" }, [404] = { "NOT_FOUND", "Not found" },
  [405] = { "METHOD_NOT_ALLOWED", "Method not allowed" }, [408] = { "REQUEST_TIMEOUT", "Request timeout" },
  [411] = { "LENGTH_REQUIRED", "Length required" },
  [413] = { "PAYLOAD_TOO_LARGE", "Request body too large" }, [414] = { "URI_TOO_LONG", "URI too long" },
  [494] = { "HEADERS_TOO_LARGE", "Request headers too large" },
  [500] = { "INTERNAL_ERROR", "Internal sandbox error" }, [501] = { "NOT_IMPLEMENTED", "Not implemented" },
  [502] = { "BAD_GATEWAY", "Bad gateway" }, [503] = { "SERVICE_UNAVAILABLE", "Service unavailable" },
  [504] = { "GATEWAY_TIMEOUT", "Gateway timeout" },
  [505] = { "HTTP_VERSION_NOT_SUPPORTED", "HTTP version not supported" },
}

-- nginx's own errors (body too large, bad requests, static 404s, ...) in the
-- nested error format.
function _M.error_page()
  local status = tonumber(ngx.var.status) or ngx.status or 500
  if status == 494 then status = 400 end
  local c = NGINX_CODES[status] or { "HTTP_" .. status, "HTTP error " .. status }
  local body = json.encode(err_body(c[1], c[2]))
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["X-Request-Id"] = ngx.var.request_id
  if status == 405 then ngx.header["Allow"] = "GET, HEAD" end
  ngx.header["Content-Length"] = #body
  ngx.print(body)
  return ngx.exit(ngx.HTTP_OK)
end

return _M
