-- ugen.retry: backoff schedule and Retry-After parsing (pure functions).
--
--   retry.backoff(attempt, rng) -> seconds
--       attempt 1, 2, 3, ...: min(0.5 * 2^(attempt-1), 8) * f, f in [0.5, 1]
--       rng() must return a number in [0, 1) (math.random by default).
--   retry.parse_retry_after(value, now) -> seconds in [0, RETRY_AFTER_CAP] | nil
--       value: delta-seconds ("120", also "1.5") or an HTTP date (IMF-fixdate,
--       RFC 850, asctime); now: wall-clock epoch seconds for dates. A date in
--       the past is 0; anything larger than RETRY_AFTER_CAP (a 400-digit number,
--       a date centuries ahead, a JSON number that decoded to inf) is clamped to
--       it, so the result is always a finite number.
--       Anything else (garbage, negative, NaN, empty) -> nil.
--   retry.delay(attempt, retry_after, rng) -> seconds to sleep before the next
--       attempt: the backoff, or the server's Retry-After when that is longer.
--       A Retry-After of 0 (or a past date) never makes the retry immediate.
--   retry.MAX_RETRY_AFTER = 60   longest server-requested wait the pipeline sleeps
--   retry.RETRY_AFTER_CAP = 86400  clamp of a parsed Retry-After (one day)

local type, tonumber, math_min, math_floor, math_random, string_match, string_lower =
  type, tonumber, math.min, math.floor, math.random, string.match, string.lower

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

local MONTHS = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6,
                 jul = 7, aug = 8, sep = 9, oct = 10, nov = 11, dec = 12 }

-- days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math_floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math_floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math_floor(yoe / 4) - math_floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
_M.days_from_civil = days_from_civil

local function epoch(y, mon, d, hh, mm, ss)
  local m = MONTHS[string_lower(mon)]
  y, d, hh, mm, ss = tonumber(y), tonumber(d), tonumber(hh), tonumber(mm), tonumber(ss)
  if not m or not y or d < 1 or d > 31 or hh > 23 or mm > 59 or ss > 60 then return nil end
  return days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss
end

-- HTTP-date (RFC 9110 5.6.7) -> epoch seconds, or nil.
function _M.parse_http_date(s)
  if type(s) ~= "string" then return nil end
  -- IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
  local d, mon, y, hh, mm, ss = string_match(s,
    "^%s*%a%a%a, (%d%d?) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT%s*$")
  if d then return epoch(y, mon, d, hh, mm, ss) end
  -- RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
  d, mon, y, hh, mm, ss = string_match(s,
    "^%s*%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT%s*$")
  if d then
    y = tonumber(y)
    y = y + (y < 70 and 2000 or 1900)
    return epoch(y, mon, d, hh, mm, ss)
  end
  -- asctime: Sun Nov  6 08:49:37 1994
  mon, d, hh, mm, ss, y = string_match(s,
    "^%s*%a%a%a (%a%a%a) +(%d%d?) (%d%d):(%d%d):(%d%d) (%d%d%d%d)%s*$")
  if mon then return epoch(y, mon, d, hh, mm, ss) end
  return nil
end

local function clamp(v)
  if v > _M.RETRY_AFTER_CAP then return _M.RETRY_AFTER_CAP end
  return v
end

function _M.parse_retry_after(v, now)
  if type(v) == "number" then
    if v ~= v or v < 0 then return nil end
    return clamp(v)
  end
  if type(v) ~= "string" then return nil end
  local num = string_match(v, "^%s*(%d+%.?%d*)%s*$")
  if num then
    local n = tonumber(num)
    if n == nil or n ~= n then return nil end
    return clamp(n)
  end
  local t = _M.parse_http_date(v)
  if not t then return nil end
  local delta = t - (now or os.time())
  if delta ~= delta then return nil end
  if delta < 0 then delta = 0 end
  return clamp(delta)
end

function _M.delay(attempt, retry_after, rng)
  local b = _M.backoff(attempt, rng)
  if type(retry_after) == "number" and retry_after > b then return clamp(retry_after) end
  return b
end

return _M
