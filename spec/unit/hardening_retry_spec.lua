-- Issue 12, item 13: Retry-After is clamped to a finite number and never
-- shortens the backoff (ugen.retry; the end-to-end spacing of attempts is
-- measured in spec/integration/hardening_deadline_spec.lua).
local retry = require "ugen.retry"

describe("ugen.retry: Retry-After floor and clamp (issue 12 item 13)", function()
  local now = 784111777   -- Sun, 06 Nov 1994 08:49:37 GMT

  it("clamps absurd values to RETRY_AFTER_CAP (one day), never inf", function()
    assert.equal(86400, retry.RETRY_AFTER_CAP)
    for _, v in ipairs{ "1" .. string.rep("0", 400), "99999999999", "1" .. string.rep("0", 400) .. ".5",
                        math.huge, 1e300, "Fri, 31 Dec 9999 23:59:59 GMT" } do
      local ra = retry.parse_retry_after(v, now)
      assert.equal(86400, ra, tostring(v):sub(1, 20))
    end
    assert.equal(86400, retry.parse_retry_after(86400, now))
    assert.equal(3600, retry.parse_retry_after("3600", now))
  end)

  it("a past date, 0 and garbage stay what they were (0, 0, nil)", function()
    assert.equal(0, retry.parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now))
    assert.equal(0, retry.parse_retry_after("0", now))
    assert.is_nil(retry.parse_retry_after(0 / 0, now))
    assert.is_nil(retry.parse_retry_after(-math.huge, now))
    assert.is_nil(retry.parse_retry_after("-1", now))
  end)

  it("delay: the backoff unless Retry-After asks for longer", function()
    local function r0() return 0 end
    assert.equal(0.25, retry.delay(1, 0, r0))
    assert.equal(0.25, retry.delay(1, nil, r0))
    assert.equal(0.5, retry.delay(2, 0.1, r0))
    assert.equal(5, retry.delay(1, 5, r0))
    assert.equal(86400, retry.delay(1, math.huge, r0))
    assert.equal(8, retry.delay(10, 0, function() return 1 end))
  end)
end)
