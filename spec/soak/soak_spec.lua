-- The full fault soak (make soak): 1,000 sequential job creates and 200 concurrent ones under
-- ugen.run, each with about 20% injected faults (resets before and after processing, 5xx, 429
-- with Retry-After, answers slower than the timeout), against a private sandbox at high speed.
-- Exactly 1,000 (+200) jobs must exist afterwards; every error the SDK returned must be final.
-- Invariants: spec/soak/lib.lua. The short version runs in make test:
-- spec/integration/soak_short_spec.lua.
local soak = require "soak.lib"

describe("fault soak #soak", function()
  local env
  setup(function() env = soak.start{ speed = 1000 } end)
  teardown(function() soak.stop(env) end)

  it("1,000 sequential creates under 20% faults: exactly 1,000 jobs, none lost or duplicated", function()
    local n = tonumber(os.getenv("UGEN_SOAK_JOBS") or "") or 1000
    local rep = soak.run(env, { n = n, seed = 1, tag = "seq", timeout = 0.5 })
    print("\n  soak(sequential): " .. soak.format(rep))
    assert.equal(n, rep.n)
    assert.is_true(rep.faulted >= n * 0.15 and rep.faulted <= n * 0.25, tostring(rep.faulted))
  end)

  it("200 concurrent creates under ugen.run with 20% faults: exactly 200 more jobs", function()
    local n = tonumber(os.getenv("UGEN_SOAK_CONCURRENT") or "") or 200
    local rep = soak.run(env, { n = n, seed = 2, tag = "conc", concurrent = true, timeout = 2 })
    print("\n  soak(concurrent): " .. soak.format(rep))
    assert.is_true(rep.faulted >= n * 0.12 and rep.faulted <= n * 0.28, tostring(rep.faulted))
  end)
end)
