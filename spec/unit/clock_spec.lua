-- ugen.clock: the SDK's one place for time and date arithmetic (clocks, HTTP-date, ISO-8601,
-- Retry-After), checked against the C library's own calendar (os.date) and the RFC 9110 examples.
local clock = require "ugen.clock"

local SUN_06_NOV_1994 = 784111777      -- Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example)

describe("ugen.clock clocks", function()
  it("now() is monotonic seconds; time() is the wall clock", function()
    local a = clock.now()
    local b = clock.now()
    assert.is_true(b >= a)
    assert.is_true(math.abs(clock.time() - os.time()) <= 2)
  end)
end)

describe("ugen.clock calendar", function()
  it("civil_from_days agrees with os.date over 1970..2999, and days_from_civil inverts it", function()
    local s = 12345
    for _ = 1, 3000 do
      s = (s * 1103515245 + 12345) % 2147483648
      local days = s % 376000                          -- 1970-01-01 .. about 2999
      local t = os.date("!*t", days * 86400)
      local y, m, d = clock.civil_from_days(days)
      assert.same({ t.year, t.month, t.day }, { y, m, d }, tostring(days))
      assert.equal(days, clock.days_from_civil(y, m, d))
    end
  end)

  it("round-trips far into the past and the future (year -25000 .. 30000)", function()
    for days = -9850000, 10240000, 9973 do
      local y, m, d = clock.civil_from_days(days)
      assert.equal(days, clock.days_from_civil(y, m, d), tostring(days))
    end
    assert.equal(0, clock.days_from_civil(1970, 1, 1))
    assert.equal(-719162, clock.days_from_civil(1, 1, 1))
    assert.equal(2932896, clock.days_from_civil(9999, 12, 31))
  end)

  it("epoch() refuses fields out of range, counting month lengths and leap years", function()
    assert.equal(SUN_06_NOV_1994, clock.epoch(1994, 11, 6, 8, 49, 37))
    assert.is_number(clock.epoch(2024, 2, 29, 0, 0, 0))
    assert.is_number(clock.epoch(2000, 2, 29, 0, 0, 0))       -- divisible by 400: leap
    assert.is_nil(clock.epoch(1900, 2, 29, 0, 0, 0))          -- divisible by 100: not leap
    assert.is_nil(clock.epoch(2026, 2, 29, 0, 0, 0))
    assert.is_nil(clock.epoch(2026, 2, 30, 0, 0, 0))
    assert.is_nil(clock.epoch(2026, 4, 31, 0, 0, 0))
    assert.is_number(clock.epoch(2026, 12, 31, 23, 59, 60))   -- a leap second
    for _, f in ipairs { { 2026, 0, 1, 0, 0, 0 }, { 2026, 13, 1, 0, 0, 0 }, { 2026, 1, 0, 0, 0, 0 },
                         { 2026, 1, 32, 0, 0, 0 }, { 2026, 1, 1, 24, 0, 0 }, { 2026, 1, 1, 0, 60, 0 },
                         { 2026, 1, 1, 0, 0, 61 }, { 2026, 1, 1, -1, 0, 0 } } do
      assert.is_nil(clock.epoch(f[1], f[2], f[3], f[4], f[5], f[6]), table.concat(f, ","))
    end
  end)
end)

describe("ugen.clock.parse_http_date", function()
  it("reads the three forms of RFC 9110's example as the same instant", function()
    assert.equal(SUN_06_NOV_1994, clock.parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"))
    assert.equal(SUN_06_NOV_1994, clock.parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", SUN_06_NOV_1994))
    assert.equal(SUN_06_NOV_1994, clock.parse_http_date("Sun Nov  6 08:49:37 1994"))
    assert.equal(SUN_06_NOV_1994, clock.parse_http_date("Sun Nov 06 08:49:37 1994"))
  end)

  it("accepts any case of the month, blanks around the value, a one-digit day", function()
    assert.equal(SUN_06_NOV_1994, clock.parse_http_date("  Sun, 06 NOV 1994 08:49:37 GMT \t"))
    assert.equal(SUN_06_NOV_1994, clock.parse_http_date("Sun, 6 nov 1994 08:49:37 GMT"))
  end)

  it("matches os.date's formatting for any time", function()
    for _, t in ipairs { 0, 86399, 951782400, 1767225600, 4102444800, 32503680000 } do
      assert.equal(t, clock.parse_http_date(os.date("!%a, %d %b %Y %H:%M:%S GMT", t)), tostring(t))
    end
  end)

  it("far past and far future dates", function()
    assert.equal(0, clock.parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"))
    assert.equal(-62135596800, clock.parse_http_date("Mon, 01 Jan 0001 00:00:00 GMT"))
    assert.equal(253402300799, clock.parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT"))
    assert.equal(253402300799, clock.parse_http_date("Fri Dec 31 23:59:59 9999"))
  end)

  it("RFC 850's two-digit year: not more than 50 years after now (RFC 9110 5.6.7)", function()
    local now2026 = 1767225600                                -- 2026-01-01
    local function year(s, now) return os.date("!*t", clock.parse_http_date(s, now)).year end
    assert.equal(1994, year("Sunday, 06-Nov-94 08:49:37 GMT", now2026))
    assert.equal(2030, year("Wednesday, 06-Nov-30 08:49:37 GMT", now2026))
    assert.equal(2076, year("Friday, 06-Nov-76 08:49:37 GMT", now2026))   -- 50 years ahead
    assert.equal(1977, year("Sunday, 06-Nov-77 08:49:37 GMT", now2026))   -- 51: the past one
    assert.equal(2044, year("Sunday, 06-Nov-44 08:49:37 GMT", SUN_06_NOV_1994))
    assert.equal(1945, year("Tuesday, 06-Nov-45 08:49:37 GMT", SUN_06_NOV_1994))
  end)

  it("refuses garbage and impossible dates", function()
    for _, bad in ipairs { "", "soon", "120", "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 06 Nov 1994 08:49:37",
                           "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 32 Nov 1994 08:49:37 GMT",
                           "Sun, 31 Nov 1994 08:49:37 GMT", "Mon, 29 Feb 2027 00:00:00 GMT",
                           "Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 06 Nov 1994 08:60:37 GMT",
                           "Sun, 06 Nov 1994 08:49:61 GMT", "Sun, 06 Nov 94 08:49:37 GMT",
                           "Sunday, 06-Nov-1994 08:49:37 GMT", "Sun Nov  6 08:49:37 94",
                           "Sun, 06 Nov 1994 08:49:37 GMT trailing", "2026-05-02T09:12:44Z",
                           "Sun, 06 Nov 19940 08:49:37 GMT", string.rep("9", 400) } do
      assert.is_nil(clock.parse_http_date(bad, SUN_06_NOV_1994), bad)
    end
    assert.is_nil(clock.parse_http_date(nil))
    assert.is_nil(clock.parse_http_date(784111777))
  end)
end)

describe("ugen.clock.parse_iso8601", function()
  local TS = 1777713164                                     -- 2026-05-02T09:12:44Z
  it("UTC, offsets, fractions, separators", function()
    assert.equal(TS, clock.parse_iso8601("2026-05-02T09:12:44Z"))
    assert.equal(TS, clock.parse_iso8601("2026-05-02t09:12:44z"))
    assert.equal(TS, clock.parse_iso8601("2026-05-02 09:12:44Z"))
    assert.equal(TS, clock.parse_iso8601(" 2026-05-02T09:12:44Z "))
    assert.equal(TS, clock.parse_iso8601("2026-05-02T04:12:44-05:00"))
    assert.equal(TS, clock.parse_iso8601("2026-05-02T14:42:44+0530"))
    assert.equal(TS + 0.25, clock.parse_iso8601("2026-05-02T09:12:44.250Z"))
    assert.equal(0, clock.parse_iso8601("1970-01-01T00:00:00Z"))
    assert.equal(253402300799, clock.parse_iso8601("9999-12-31T23:59:59Z"))
  end)

  it("refuses impossible dates, missing zones and malformed offsets", function()
    for _, bad in ipairs { "2026-13-02T09:12:44Z", "2026-02-30T09:12:44Z", "2026-04-31T00:00:00Z",
                           "2026-05-02T24:00:00Z", "2026-05-02T09:12:44", "2026-05-02T09:12:44.Z",
                           "2026-05-02T09:12:44+24:00", "2026-05-02T09:12:44+05:60", "2026-05-02T09:12:44+5",
                           "2026-05-02", "26-05-02T09:12:44Z", "2026-05-02T09:12:44Zjunk", "" } do
      assert.is_nil(clock.parse_iso8601(bad), bad)
    end
    assert.is_nil(clock.parse_iso8601(nil))
  end)
end)

describe("ugen.clock.retry_after", function()
  local now = SUN_06_NOV_1994
  it("delta-seconds as text or number", function()
    assert.equal(0, clock.retry_after("0", now))
    assert.equal(120, clock.retry_after(" 120 ", now))
    assert.equal(1.5, clock.retry_after("1.5", now))
    assert.equal(7, clock.retry_after(7, now))
  end)

  it("an HTTP-date: seconds from now, 0 when past, not clamped when far ahead", function()
    assert.equal(30, clock.retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now))
    assert.equal(3600, clock.retry_after("Sunday, 06-Nov-94 09:49:37 GMT", now))
    assert.equal(86400, clock.retry_after("Mon Nov  7 08:49:37 1994", now))
    assert.equal(0, clock.retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now))
    assert.equal(253402300799 - now, clock.retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now))
    local t = os.time()
    assert.equal(90, clock.retry_after(os.date("!%a, %d %b %Y %H:%M:%S GMT", t + 90), t))
    -- now defaults to the wall clock
    local d = clock.retry_after(os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 100))
    assert.is_true(d >= 97 and d <= 100, tostring(d))
  end)

  it("refuses garbage, negatives and NaN; a huge delta stays huge (the policy clamps)", function()
    for _, bad in ipairs { "", "soon", "-5", "1e3", "12abc", "0x10", "Sun, 30 Feb 1994 08:49:37 GMT" } do
      assert.is_nil(clock.retry_after(bad, now), bad)
    end
    assert.is_nil(clock.retry_after(nil, now))
    assert.is_nil(clock.retry_after({}, now))
    assert.is_nil(clock.retry_after(-1, now))
    assert.is_nil(clock.retry_after(0 / 0, now))
    assert.equal(math.huge, clock.retry_after(math.huge, now))
    assert.is_true(clock.retry_after(string.rep("9", 400), now) > 1e300)
  end)
end)
