-- The short fault soak (make test): 100 sequential and 200 concurrent job creates under ~20%
-- injected faults against a private sandbox; nothing lost, nothing duplicated, every error final.
-- The full version (1,000 + 200 concurrent) is spec/soak/soak_spec.lua (make soak).
-- Invariants: see spec/soak/lib.lua.
local soak = require "soak.lib"

describe("fault soak (short)", function()
  local env
  setup(function() env = soak.start{ speed = 1000 } end)
  teardown(function() soak.stop(env) end)

  it("100 sequential creates under 20% faults: exactly 100 jobs, errors final", function()
    local rep = soak.run(env, { n = 100, seed = 11, tag = "short-seq", timeout = 0.5 })
    print("\n  soak(short, sequential): " .. soak.format(rep))
    assert.equal(100, rep.n)
    assert.is_true(rep.faulted > 0)
  end)

  it("200 concurrent creates under ugen.run with 20% faults: exactly 200 more jobs", function()
    local rep = soak.run(env, { n = 200, seed = 12, tag = "short-conc", concurrent = true, timeout = 2 })
    print("\n  soak(short, concurrent): " .. soak.format(rep))
    assert.is_true(rep.faulted > 0)
  end)
end)

-- Found by the soak: libcurl silently re-sends a request when a REUSED keep-alive connection
-- dies before any response byte. For a request that may only be sent once (a POST without an
-- idempotency key) the SDK now asks for a fresh connection, which libcurl never retries.
describe("nothing sent twice (sandbox reset_after on a warm connection)", function()
  local env
  setup(function() env = soak.start{ speed = 1000 } end)
  teardown(function() soak.stop(env) end)

  local function count_templates(c)
    local r = assert(c.templates:list())
    return #(r.items or r.templates or r)
  end

  it("a non-idempotent POST whose answer is lost is sent exactly once", function()
    local ugen = require "ugen"
    local c = ugen.new{ base_url = env.info.base_url, api_key = env.info.api_key, max_retries = 2 }
    local before = count_templates(c)   -- also warms the keep-alive connection
    assert(c.credits:balance())
    local r, err = c:request("POST", "/templates", { name = "once", config = {} },
      { headers = { ["X-Sandbox-Fault"] = "reset_after;count=5;key=once-" .. os.time() } })
    assert.is_nil(r)
    assert.equal("network", err.kind)
    assert.equal(before + 1, count_templates(c))
  end)

  it("an idempotent create with a key keeps the warm connection and is still created once", function()
    local ugen = require "ugen"
    local c = ugen.new{ base_url = env.info.base_url, api_key = env.info.api_key, max_retries = 2,
                        rng = function() return 0 end }
    assert(c.credits:balance())
    local key = "once-create-" .. os.time()
    local job, err = c.jobs:create({ product_name = "once", product_image_url = "https://e.com/x.png",
      segment_count = 1, idempotency_key = key },
      { headers = { ["X-Sandbox-Fault"] = "reset_after;count=1;key=" .. key } })
    assert.is_table(job, tostring(err))
    local n = 0
    for j, e in c.jobs:each{ page_size = 100 } do
      assert(j, tostring(e))
      if j.idempotency_key == key then n = n + 1 end
    end
    assert.equal(1, n)
  end)
end)
