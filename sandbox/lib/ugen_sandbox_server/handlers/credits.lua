-- ugen_sandbox_server.handlers.credits: GET /credits/balance, GET
-- /credits/transactions, POST /credits/estimate (the price function and the
-- ledger are ugen_sandbox_server.ledger).
-- Handlers: name -> function(T, params, ctx) -> response (ugen_sandbox_server.http).

local endpoints = require "ugen.endpoints"
local validate = require "ugen.validate"
local util = require "ugen_sandbox_server.util"
local state = require "ugen_sandbox_server.state"
local ledger = require "ugen_sandbox_server.ledger"
local http = require "ugen_sandbox_server.http"

local type, ipairs = type, ipairs
local null = util.null
local R, unprocessable, value_error = http.response, http.unprocessable, http.value_error

local H = {}

H["credits.balance"] = function(T)
  return R(200, { credit_balance = T.balance, credit_reserved = T.reserved, available_credits = ledger.available(T) })
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
  local model = state.models_by_id[model_id]
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
  local total, breakdown, items, duration = ledger.price{
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

return H
