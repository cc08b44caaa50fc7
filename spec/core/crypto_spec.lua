-- ugen.core primitives: HMAC-SHA256 (RFC 4231), constant-time compare,
-- CSPRNG bytes, hex, clocks, version fields, loading twice.
-- Timing bounds are multiplied by UGEN_TIME_FACTOR (scripts/check.sh sets it
-- for the sanitizer and valgrind runs).
local SLOW = tonumber(os.getenv("UGEN_TIME_FACTOR")) or 1
local core = require "ugen.core"
local unpack = table.unpack or unpack -- luacheck: ignore 143

local function unhex(h)
  return (h:gsub("%x%x", function(b) return string.char(tonumber(b, 16)) end))
end

describe("ugen.core module", function()
  it("publishes version fields", function()
    assert.equal("0.1.0", core._VERSION)
    assert.matches("^%d+%.%d+%.%d+", core.curl_version)
    assert.matches("OpenSSL", core.openssl_version)
  end)

  it("can be loaded twice and shares its classes", function()
    local e1 = core.engine()
    package.loaded["ugen.core"] = nil
    local core2 = require "ugen.core"
    package.loaded["ugen.core"] = core
    local e2 = core2.engine()
    assert.are_not.equal(core, core2)
    assert.equal(getmetatable(e1), getmetatable(e2))
    assert.equal(core.hmac_sha256("k", "m"), core2.hmac_sha256("k", "m"))
    e1:close(); e2:close()
  end)
end)

describe("core.hmac_sha256", function()
  -- RFC 4231 section 4, HMAC-SHA-256 results
  local long_key = string.rep("\170", 131)
  local vectors = {
    { string.rep("\11", 20), "Hi There",
      "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
    { "Jefe", "what do ya want for nothing?",
      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
    { string.rep("\170", 20), string.rep("\221", 50),
      "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
    { unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"), string.rep("\205", 50),
      "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
    -- test case 5: output truncated to 128 bits, compare the prefix
    { string.rep("\12", 20), "Test With Truncation", "a3b6167473100ee06e0c796c2955552b" },
    { long_key, "Test Using Larger Than Block-Size Key - Hash Key First",
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
    { long_key, "This is a test using a larger than block-size key and a larger than block-size "
      .. "data. The key needs to be hashed before being used by the HMAC algorithm.",
      "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
  }

  for i, v in ipairs(vectors) do
    it("matches RFC 4231 test case " .. i, function()
      local mac = core.hmac_sha256(v[1], v[2])
      assert.equal(64, #mac)
      assert.equal(v[3], mac:sub(1, #v[3]))
      local raw = core.hmac_sha256(v[1], v[2], true)
      assert.equal(32, #raw)
      assert.equal(mac, core.hex(raw))
    end)
  end

  it("handles empty key and message", function()
    assert.equal("b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad",
      core.hmac_sha256("", ""))
  end)

  it("handles embedded NUL bytes in key and message", function()
    assert.are_not.equal(core.hmac_sha256("a\0b", "m"), core.hmac_sha256("a\0c", "m"))
    assert.are_not.equal(core.hmac_sha256("k", "x\0y"), core.hmac_sha256("k", "x\0z"))
  end)

  it("raises on wrong argument types, naming the argument", function()
    assert.has_error(function() core.hmac_sha256(nil, "m") end)
    local ok, err = pcall(core.hmac_sha256, "k", {})
    assert.is_false(ok)
    assert.matches("bad argument #2", err)
  end)
end)

describe("core.hmac_key", function()
  local long_key = string.rep("\170", 131)
  it("matches RFC 4231 and one-shot HMAC, over split parts, on every reuse", function()
    local cases = {
      { "Jefe", { "what do ya want ", "for nothing?" },
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
      { long_key, { "Test Using Larger Than Block-Size Key", " - Hash Key First" },
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
      { string.rep("\11", 20), { "Hi There" },
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
    }
    for _, c in ipairs(cases) do
      local k = core.hmac_key(c[1])
      for _ = 1, 3 do  -- the context is re-initialised with the same key each time
        assert.equal(c[3], k:hex(unpack(c[2])))
      end
      assert.equal(c[3], k:hex(table.concat(c[2])))
      k:close()
    end
  end)

  it("agrees with core.hmac_sha256 on random keys and messages, NULs included", function()
    for i = 1, 200 do
      local key = core.random_bytes(1 + i % 150)
      local a, b = core.random_bytes(1 + i * 7 % 300), core.random_bytes(1 + i * 13 % 2000)
      local k = core.hmac_key(key)
      assert.equal(core.hmac_sha256(key, a .. "." .. b), k:hex(a, ".", b))
      assert.equal(core.hmac_sha256(key, ""), k:hex())
      assert.equal(core.hmac_sha256(key, a .. b), k:hex(a, "", b))
    end
  end)

  it("keeps its key apart from other keys' objects", function()
    local k1, k2 = core.hmac_key("one"), core.hmac_key("two")
    assert.equal(core.hmac_sha256("one", "m"), k1:hex("m"))
    assert.equal(core.hmac_sha256("two", "m"), k2:hex("m"))
    assert.equal(core.hmac_sha256("one", "m"), k1:hex("m"))
  end)

  it("has one idempotent close (close, __gc, __close) and refuses use after it", function()
    local k = core.hmac_key("secret-key")
    local mt = getmetatable(k)
    k:close(); k:close(); mt.__gc(k); mt.__close(k); k:close()
    local ok, err = pcall(k.hex, k, "m")
    assert.is_false(ok)
    assert.matches("ugen.hmac_key: handle is closed", err, 1, true)
    assert.equal("ugen.hmac_key (closed)", tostring(k))
  end)

  it("never shows its key in tostring", function()
    local k = core.hmac_key("whsec_do_not_print_me")
    assert.matches("^ugen%.hmac_key %(", tostring(k))
    assert.is_nil(tostring(k):find("print_me", 1, true))
    k:close()
  end)

  it("raises on bad arguments, naming them, before hashing anything", function()
    local ok, err = pcall(core.hmac_key, "")
    assert.is_false(ok); assert.matches("bad argument #1.*key is empty", err)
    ok, err = pcall(core.hmac_key, {})
    assert.is_false(ok); assert.matches("bad argument #1", err)
    local k = core.hmac_key("k")
    ok, err = pcall(k.hex, k, "a", {}, "c")
    assert.is_false(ok); assert.matches("bad argument #3", err)
    ok, err = pcall(function() return k:hex("a", {}) end)
    assert.is_false(ok); assert.matches("bad argument #%d", err)
    -- a refused call leaves nothing half-hashed behind
    assert.equal(core.hmac_sha256("k", "ac"), k:hex("a", "c"))
    ok = pcall(k.hex, "not a key", "m")
    assert.is_false(ok)
    k:close()
  end)

  it("frees its context when collected (no leak under the sanitizers)", function()
    for _ = 1, 2000 do core.hmac_key("k"):hex("m") end
    collectgarbage(); collectgarbage()
  end)
end)

describe("core.consteq", function()
  it("is true for equal strings", function()
    assert.is_true(core.consteq("abcdef", "abcdef"))
    assert.is_true(core.consteq(string.rep("x", 4096), string.rep("x", 4096)))
  end)
  it("is false when the first or the last byte differs", function()
    assert.is_false(core.consteq("xbcdef", "abcdef"))
    assert.is_false(core.consteq("abcdex", "abcdef"))
  end)
  it("is false for different lengths", function()
    assert.is_false(core.consteq("abc", "abcd"))
    assert.is_false(core.consteq("", "a"))
  end)
  it("is true for two empty strings", function()
    assert.is_true(core.consteq("", ""))
  end)
  it("compares past embedded NUL bytes", function()
    assert.is_true(core.consteq("a\0b", "a\0b"))
    assert.is_false(core.consteq("a\0b", "a\0c"))
    assert.is_false(core.consteq("a\0", "a"))
  end)
  it("raises on non-string arguments", function()
    local ok, err = pcall(core.consteq, "a", nil)
    assert.is_false(ok)
    assert.matches("bad argument #2", err)
  end)
end)

describe("core.random_bytes", function()
  it("returns exactly n bytes", function()
    for _, n in ipairs({ 1, 16, 32, 257, 1024 * 1024 }) do
      assert.equal(n, #core.random_bytes(n))
    end
  end)
  it("does not repeat itself", function()
    local seen = {}
    for _ = 1, 200 do
      local r = core.random_bytes(16)
      assert.is_nil(seen[r])
      seen[r] = true
    end
  end)
  it("uses every byte value over a large sample", function()
    local s, seen, n = core.random_bytes(65536), {}, 0
    for i = 1, #s do
      local b = s:byte(i)
      if not seen[b] then seen[b] = true; n = n + 1 end
    end
    assert.equal(256, n)
  end)
  it("raises on bad sizes and types", function()
    assert.has_error(function() core.random_bytes(0) end)
    assert.has_error(function() core.random_bytes(-1) end)
    assert.has_error(function() core.random_bytes(1024 * 1024 + 1) end)
    assert.has_error(function() core.random_bytes("many") end)
    assert.has_error(function() core.random_bytes() end)
  end)
end)

describe("core.hex", function()
  it("encodes lowercase, two digits per byte", function()
    assert.equal("", core.hex(""))
    assert.equal("00ff10", core.hex("\0\255\16"))
    assert.equal("68656c6c6f", core.hex("hello"))
  end)
  it("handles inputs larger than a Lua buffer", function()
    local s = string.rep("\171\205", 10000)
    local h = core.hex(s)
    assert.equal(40000, #h)
    assert.equal(string.rep("abcd", 10000), h)
  end)
  it("raises on non-strings", function()
    assert.has_error(function() core.hex({}) end)
  end)
end)

describe("clocks", function()
  it("core.now is monotonic and core.sleep waits", function()
    local t0 = core.now()
    core.sleep(0.05)
    local dt = core.now() - t0
    assert.is_true(dt >= 0.049, "slept " .. dt)
    assert.is_true(dt < 1 * SLOW, "slept " .. dt)
  end)
  it("core.time is the wall clock", function()
    assert.is_true(math.abs(core.time() - os.time()) < 2)
  end)
  it("core.sleep(0) returns and bad values raise", function()
    core.sleep(0)
    assert.has_error(function() core.sleep(-1) end)
    assert.has_error(function() core.sleep(0 / 0) end)
    assert.has_error(function() core.sleep("x") end)
  end)
end)
