-- ugen.clock: time and date arithmetic, in one place.
--
--   clock.now()   -> monotonic seconds (deadlines, intervals; never jumps with the wall clock)
--   clock.time()  -> wall-clock epoch seconds (Retry-After dates, webhook timestamps)
--   clock.days_from_civil(y, m, d) -> days since 1970-01-01 (proleptic Gregorian; any integer year)
--   clock.civil_from_days(days)    -> y, m, d (the inverse)
--   clock.epoch(y, m, d, hh, mm, ss) -> epoch seconds (UTC) | nil when a field is out of range:
--       m 1..12, d 1..the month's length (leap years counted), hh 0..23, mm 0..59, ss 0..60 (a leap
--       second reads as the next minute's first)
--   clock.parse_http_date(s[, now]) -> epoch seconds | nil
--       An HTTP-date (RFC 9110 5.6.7) in any of its three forms: IMF-fixdate
--       ("Sun, 06 Nov 1994 08:49:37 GMT"), RFC 850 ("Sunday, 06-Nov-94 08:49:37 GMT"; its two-digit
--       year is the one within 50 years of `now`, never more than 50 years ahead, as RFC 9110 asks;
--       now defaults to clock.time()) and asctime ("Sun Nov  6 08:49:37 1994"). Month names in any case; blanks around
--       the value allowed; the weekday is not checked (RFC 9110 lets recipients ignore it).
--   clock.parse_iso8601(s) -> epoch seconds | nil
--       "2026-05-02T09:12:44Z", with an optional fraction (".250"), "t" or a space as the separator,
--       "Z"/"z" or an offset ("+02:00", "-0530"). Blanks around the value allowed.
--   clock.retry_after(value[, now]) -> seconds >= 0 | nil
--       A Retry-After value: delta-seconds ("120", also "1.5", or a number) or an HTTP-date (the
--       seconds from `now` to it, 0 when it is past). Garbage, negative numbers, NaN -> nil. Not
--       clamped: a huge delta (or a far-future date, or math.huge) stays huge; the retry policy
--       (ugen.retry) decides how long it is willing to wait.

local native = require "ugen.native"

local type, tonumber, math_floor, math_huge, string_match, string_lower =
  type, tonumber, math.floor, math.huge, string.match, string.lower

local _M = { _VERSION = "0.1.0" }

_M.now = native.now
_M.time = native.time

-- H. Hinnant's days_from_civil / civil_from_days (http://howardhinnant.github.io/date_algorithms.html),
-- in floor division so that years before 0 and far ahead work too.
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

local function civil_from_days(z)
  z = z + 719468
  local era = math_floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math_floor((doe - math_floor(doe / 1460) + math_floor(doe / 36524) - math_floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math_floor(yoe / 4) - math_floor(yoe / 100))
  local mp = math_floor((5 * doy + 2) / 153)
  local d = doy - math_floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end
_M.civil_from_days = civil_from_days

local MONTH_DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

local function leap(y)
  return y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)
end

local function month_length(y, m)
  if m == 2 and leap(y) then return 29 end
  return MONTH_DAYS[m]
end

-- Fields as numbers (integral); nil when one is out of range.
local function epoch(y, m, d, hh, mm, ss)
  if not (y and m and d and hh and mm and ss) then return nil end
  if m < 1 or m > 12 or m ~= math_floor(m) or d < 1 or d > month_length(y, m) or hh < 0 or hh > 23
     or mm < 0 or mm > 59 or ss < 0 or ss > 60 then
    return nil
  end
  return days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss
end
_M.epoch = epoch

local MONTHS = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6,
                 jul = 7, aug = 8, sep = 9, oct = 10, nov = 11, dec = 12 }

local function from_parts(y, mon, d, hh, mm, ss)
  return epoch(tonumber(y), MONTHS[string_lower(mon)], tonumber(d), tonumber(hh), tonumber(mm), tonumber(ss))
end

-- RFC 9110 5.6.7: a two-digit year is the one with those digits in the 100 years that end 50
-- years after now (one more than 50 years ahead is the most recent past year with its digits).
local function full_year(yy, now)
  local this_year = civil_from_days(math_floor((now or _M.time()) / 86400))
  local y = this_year - this_year % 100 + yy
  if y > this_year + 50 then
    y = y - 100
  elseif y <= this_year - 50 then
    y = y + 100
  end
  return y
end

function _M.parse_http_date(s, now)
  if type(s) ~= "string" then return nil end
  -- IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
  local d, mon, y, hh, mm, ss = string_match(s,
    "^%s*%a%a%a, (%d%d?) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT%s*$")
  if d then return from_parts(y, mon, d, hh, mm, ss) end
  -- RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
  d, mon, y, hh, mm, ss = string_match(s,
    "^%s*%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT%s*$")
  if d then
    if type(now) ~= "number" or now ~= now or now == math_huge or now == -math_huge then now = nil end
    return from_parts(full_year(tonumber(y), now), mon, d, hh, mm, ss)
  end
  -- asctime: Sun Nov  6 08:49:37 1994
  mon, d, hh, mm, ss, y = string_match(s,
    "^%s*%a%a%a (%a%a%a) +(%d%d?) (%d%d):(%d%d):(%d%d) (%d%d%d%d)%s*$")
  if mon then return from_parts(y, mon, d, hh, mm, ss) end
  return nil
end

function _M.parse_iso8601(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, hh, mm, ss, frac, zone = string_match(s,
    "^%s*(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(%.?%d*)(.-)%s*$")
  if not y then return nil end
  local t = epoch(tonumber(y), tonumber(mo), tonumber(d), tonumber(hh), tonumber(mm), tonumber(ss))
  if not t then return nil end
  if frac ~= "" then
    if frac == "." then return nil end
    t = t + tonumber("0" .. frac)
  end
  if zone == "Z" or zone == "z" then return t end
  local sign, oh, om = string_match(zone, "^([%+%-])(%d%d):?(%d%d)$")
  if not sign then return nil end
  oh, om = tonumber(oh), tonumber(om)
  if oh > 23 or om > 59 then return nil end
  local off = oh * 3600 + om * 60
  if sign == "+" then return t - off end
  return t + off
end

function _M.retry_after(v, now)
  if type(v) == "number" then
    if v ~= v or v < 0 then return nil end
    return v
  end
  if type(v) ~= "string" then return nil end
  local num = string_match(v, "^%s*(%d+%.?%d*)%s*$")
  if num then return tonumber(num) end
  now = now or _M.time()
  local t = _M.parse_http_date(v, now)
  if not t then return nil end
  local delta = t - now
  if delta ~= delta then return nil end      -- now = +-inf
  if delta < 0 then delta = 0 end
  return delta
end

return _M
