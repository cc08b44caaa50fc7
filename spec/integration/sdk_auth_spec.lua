-- SDK authentication against the sandbox: API key, JWT, both (JWT wins), none, bad.
local S = require "support.sandbox"
local ugen = require "ugen"

local function client(o)
  o.base_url = S.info().base_url
  o.rng = function() return 0 end
  return ugen.new(o)
end

describe("sdk auth (sandbox)", function()
  setup(function() S.info() end)

  it("an API key works", function()
    assert.truthy(client{ api_key = S.tenant.acme.api_key }.credits:balance())
  end)

  it("a JWT works (Bearer)", function()
    local b = assert(client{ jwt = S.tenant.acme.jwt }.credits:balance())
    assert.is_number(b.credit_balance)
    assert.equal(b.credit_balance - b.credit_reserved, b.available_credits)
  end)

  it("with both, the JWT wins: a bad key is ignored, an expired JWT fails", function()
    assert.truthy(client{ jwt = S.tenant.acme.jwt, api_key = "ugen_sk_test_wrong_key_0000" }.credits:balance())
    local _, err = client{ jwt = S.tenant.acme.jwt_expired, api_key = S.tenant.acme.api_key }.credits:balance()
    assert.equal("auth", err.kind); assert.equal(401, err.status)
  end)

  it("the key and the JWT of one tenant see the same account", function()
    local a = assert(client{ api_key = S.tenant.lowcredit.api_key }.credits:balance())
    local b = assert(client{ jwt = S.tenant.lowcredit.jwt }.credits:balance())
    assert.equal(a.credit_balance, b.credit_balance)
  end)

  it("a wrong key or no credentials: kind auth, 401, not retried, no secret in the error", function()
    local key = "ugen_sk_test_definitely_not_valid_123"
    local _, err = client{ api_key = key }.credits:balance()
    assert.equal("auth", err.kind); assert.equal(401, err.status); assert.equal(1, err.attempts)
    assert.is_string(err.code)
    assert.is_nil(tostring(err):find(key, 1, true))
    _, err = client{}.credits:balance()
    assert.equal("auth", err.kind); assert.equal(401, err.status)
  end)
end)
