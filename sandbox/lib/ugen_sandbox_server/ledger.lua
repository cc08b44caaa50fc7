-- ugen_sandbox_server.ledger: credit prices, balances and the ledger.
--
-- Every entry's `amount` is the change of the tenant's available credits
-- (balance - reserved); balance_before/balance_after are available credits.
-- A tenant's runtime data T holds balance, reserved and the entry list.

local util = require "ugen_sandbox_server.util"
local clock = require "ugen_sandbox_server.clock"

local type, ceil = type, math.ceil
local array = util.array

local _M = {}

local KEYFRAME_PRICE = { ["1k"] = 8, ["2k"] = 12, ["4k"] = 18 }

-- The one price function: POST /credits/estimate and job reservations.
-- o = { model, segment_count, segment_duration, resolution, voice, custom_voice,
--       music, custom_captions, qa }
function _M.price(o)
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
_M.available = available

--- Add one ledger entry and apply it to the tenant's balance or reservation.
-- kind: "reserve" (amount < 0), "release" (> 0), "consume" (< 0), "purchase",
-- "bonus" (> 0) or "refund"; amount is the change of available credits.
function _M.add(T, kind, amount, job_id, description)
  local before = available(T)
  if kind == "reserve" then T.reserved = T.reserved - amount       -- amount < 0
  elseif kind == "release" then T.reserved = T.reserved - amount   -- amount > 0
  else T.balance = T.balance + amount end                          -- consume < 0, bonus/purchase > 0
  T.ledger[#T.ledger + 1] = {
    id = util.uuid4(), type = kind, amount = amount, balance_before = before,
    balance_after = available(T), job_id = util.orNull(job_id), description = description,
    created_at = clock.iso_now(),
  }
end

return _M
