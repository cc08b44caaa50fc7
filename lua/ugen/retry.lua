-- ugen.retry: backoff schedule and Retry-After parsing (pure functions).
--
--   retry.backoff(attempt, rng) -> seconds
--       attempt 1, 2, 3, ...: min(0.5 * 2^(attempt-1), 8) * f, f in [0.5, 1]
--       rng() must return a number in [0, 1) (math.random by default).
--   retry.parse_retry_after(value, now) -> seconds in [0, RETRY_AFTER_CAP] | nil
--       value: delta-seconds ("120", also "1.5") or an HTTP date (ugen.clock:
--       IMF-fixdate, RFC 850, asctime); now: wall-clock epoch seconds for dates. A date in
--       the past is 0; anything larger than RETRY_AFTER_CAP (a 400-digit number,
--       a date centuries ahead, a JSON number that decoded to inf) is clamped to
--       it, so the result is always a finite number.
--       Anything else (garbage, negative, NaN, empty) -> nil.
--   retry.delay(attempt, retry_after, rng) -> seconds to sleep before the next
--       attempt: the backoff, or the server's Retry-After when that is longer.
--       A Retry-After of 0 (or a past date) never makes the retry immediate.
--   retry.MAX_RETRY_AFTER = 60   longest server-requested wait the pipeline sleeps
--   retry.RETRY_AFTER_CAP = 86400  clamp of a parsed Retry-After (one day)

local clock = require "ugen.clock"

local type, math_min, math_random = type, math.min, math.random

local _M = {
  _VERSION = "0.1.0",
  BASE = 0.5,
  CAP = 8,
  MAX_RETRY_AFTER = 60,
  RETRY_AFTER_CAP = 86400,
}

function _M.backoff(attempt, rng)
  rng = rng or math_random
  local base = math_min(_M.BASE * 2 ^ (attempt - 1), _M.CAP)
  local r = rng()
  if type(r) ~= "number" or r ~= r then r = 0 end
  if r < 0 then r = 0 elseif r > 1 then r = 1 end
  return base * (0.5 + 0.5 * r)
end

local function clamp(v)
  if v > _M.RETRY_AFTER_CAP then return _M.RETRY_AFTER_CAP end
  return v
end

-- The date arithmetic is ugen.clock's; this adds the clamp.
function _M.parse_retry_after(v, now)
  local s = clock.retry_after(v, now)
  if s == nil or s ~= s then return nil end
  return clamp(s)
end

function _M.delay(attempt, retry_after, rng)
  local b = _M.backoff(attempt, rng)
  if type(retry_after) == "number" and retry_after > b then return clamp(retry_after) end
  return b
end

return _M
