-- ugen.retry: backoff bounds and Retry-After parsing.
local retry = require "ugen.retry"

-- a deterministic RNG (LCG) so the bounds are checked over many draws
local function seeded(seed)
  local s = seed
  return function()
    s = (s * 1103515245 + 12345) % 2147483648
    return s / 2147483648
  end
end

describe("ugen.retry.backoff", function()
  it("starts at 0.5 s, doubles, caps at 8 s, times a factor in [0.5, 1]", function()
    local rng = seeded(42)
    for attempt = 1, 12 do
      local base = math.min(0.5 * 2 ^ (attempt - 1), 8)
      for _ = 1, 200 do
        local d = retry.backoff(attempt, rng)
        assert.is_true(d >= base * 0.5 and d <= base, ("attempt %d: %g"):format(attempt, d))
      end
    end
  end)

  it("hits the exact ends of the jitter range", function()
    assert.equal(0.25, retry.backoff(1, function() return 0 end))
    assert.equal(0.5, retry.backoff(1, function() return 1 end))
    assert.equal(4, retry.backoff(5, function() return 0 end))
    assert.equal(8, retry.backoff(5, function() return 1 end))
    assert.equal(8, retry.backoff(30, function() return 1 end))
  end)

  it("spreads values with a seeded RNG (jitter is real)", function()
    local rng, seen = seeded(7), {}
    for _ = 1, 50 do seen[("%.3f"):format(retry.backoff(3, rng))] = true end
    local n = 0
    for _ in pairs(seen) do n = n + 1 end
    assert.is_true(n > 20)
  end)

  it("clamps a misbehaving RNG", function()
    assert.equal(1, retry.backoff(2, function() return 5 end))
    assert.equal(0.5, retry.backoff(2, function() return -1 end))
    assert.equal(0.5, retry.backoff(2, function() return 0 / 0 end))
  end)
end)

describe("ugen.retry.parse_retry_after", function()
  local now = 784111777 -- Sun, 06 Nov 1994 08:49:37 GMT

  it("parses delta-seconds", function()
    assert.equal(0, retry.parse_retry_after("0", now))
    assert.equal(120, retry.parse_retry_after("120", now))
    assert.equal(120, retry.parse_retry_after(" 120 ", now))
    assert.equal(1.5, retry.parse_retry_after("1.5", now))
    assert.equal(7, retry.parse_retry_after(7, now))
  end)

  it("parses the three HTTP date forms relative to now", function()
    assert.equal(0, retry.parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now))
    assert.equal(30, retry.parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now))
    assert.equal(3600, retry.parse_retry_after("Sunday, 06-Nov-94 09:49:37 GMT", now))
    assert.equal(86400, retry.parse_retry_after("Mon Nov  7 08:49:37 1994", now))
  end)

  it("treats a date in the past as 0", function()
    assert.equal(0, retry.parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now))
  end)

  it("matches os.time for a date in the future", function()
    local t = os.time()
    local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", t + 90)
    assert.equal(90, retry.parse_retry_after(date, t))
  end)

  it("rejects garbage", function()
    for _, bad in ipairs({ "", "soon", "-5", "1e3", "12abc", "Sun, 06 Nov 1994 08:49:37 PST",
                           "Sun, 32 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT" }) do
      assert.is_nil(retry.parse_retry_after(bad, now), bad)
    end
    assert.is_nil(retry.parse_retry_after(nil, now))
    assert.is_nil(retry.parse_retry_after({}, now))
    assert.is_nil(retry.parse_retry_after(-1, now))
    assert.is_nil(retry.parse_retry_after(0 / 0, now))
  end)
end)
