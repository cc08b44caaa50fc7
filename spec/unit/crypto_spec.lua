-- ugen.crypto over the C core: UUID v4 and secrets.
local crypto = require "ugen.crypto"

describe("ugen.crypto", function()
  it("makes RFC 4122 version 4 UUIDs", function()
    for _ = 1, 200 do
      local u = crypto.uuid4()
      assert.matches("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$", u)
      assert.equal(u:lower(), u)
    end
  end)

  it("makes unique UUIDs", function()
    local seen = {}
    for _ = 1, 5000 do
      local u = crypto.uuid4()
      assert.is_nil(seen[u])
      seen[u] = true
    end
  end)

  it("makes 64-hex-char secrets, all different", function()
    local a, b = crypto.new_secret(), crypto.new_secret()
    assert.matches("^%x+$", a)
    assert.equal(64, #a)
    assert.not_equal(a, b)
  end)

  it("computes HMAC-SHA256 as lowercase hex (RFC 4231 case 2)", function()
    assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
      crypto.hmac_sha256("Jefe", "what do ya want for nothing?"))
  end)

  it("hmac_hex: HMAC-SHA256 over the concatenated parts, any number of keys", function()
    assert.equal(crypto.hmac_sha256("Jefe", "what do ya want for nothing?"),
      crypto.hmac_hex("Jefe", "what do ya want ", "for nothing?"))
    for round = 1, 2 do
      for i = 1, 30 do  -- more keys than the cache holds: evicted keys come back right
        local key = "key-" .. i
        assert.equal(crypto.hmac_sha256(key, "a.b" .. round), crypto.hmac_hex(key, "a", ".", "b" .. round))
      end
    end
    assert.has_error(function() crypto.hmac_hex("", "m") end,
      "bad argument #1 to 'hmac_hex' (non-empty string expected, got empty string)")
    assert.has_error(function() crypto.hmac_hex(nil, "m") end,
      "bad argument #1 to 'hmac_hex' (non-empty string expected, got nil)")
  end)

  it("compares strings", function()
    assert.is_true(crypto.consteq("abc", "abc"))
    assert.is_false(crypto.consteq("abc", "abd"))
    assert.is_false(crypto.consteq("abc", "abcd"))
  end)
end)

describe("ugen.crypto keyed-context cache", function()
  local function cache()
    for i = 1, 20 do
      local name, v = debug.getupvalue(crypto.hmac_hex, i)
      if name == nil then break end
      if name == "keys" then return v end
    end
    error("hmac_hex has no 'keys' upvalue")
  end

  it("does not keep a secret alive once nothing uses its keyed context (issue 13)", function()
    local secret = "whsec-" .. string.rep("k", 40)
    assert.equal(crypto.hmac_sha256(secret, "a.b"), crypto.hmac_hex(secret, "a", ".", "b"))
    assert.is_not_nil(cache()[secret])          -- cached while in use
    collectgarbage("collect"); collectgarbage("collect")
    assert.is_nil(next(cache()))                -- gone at the next collection
    -- and works again afterwards
    assert.equal(crypto.hmac_sha256(secret, "x"), crypto.hmac_hex(secret, "x"))
  end)
end)
