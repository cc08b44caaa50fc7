-- ugen.headers: case-insensitive response headers.
local headers = require "ugen.headers"

describe("ugen.headers", function()
  it("reads the core's flat list case-insensitively", function()
    local h = headers.new({ "content-type", "application/json", "x-request-id", "r1", "retry-after", "3" })
    assert.equal("application/json", h["Content-Type"])
    assert.equal("r1", h["X-Request-ID"])
    assert.equal("r1", h["x-request-id"])
    assert.equal("3", h.retry_after)
    assert.is_nil(h["x-missing"])
  end)

  it("joins repeated headers and keeps every value", function()
    local h = headers.new({ "set-cookie", "a=1", "Set-Cookie", "b=2" })
    assert.equal("a=1, b=2", h["set-cookie"])
    assert.same({ "a=1", "b=2" }, headers.all(h, "Set-Cookie"))
    assert.same({}, headers.all(h, "nope"))
  end)

  it("accepts maps (with list values) and lists of pairs", function()
    local h = headers.new({ ["X-Request-Id"] = "q", Vary = { "a", "b" } })
    assert.equal("q", h["x-request-id"])
    assert.equal("a, b", h.vary)
    local p = headers.new({ { "X-A", "1" }, { name = "X-B", value = "2" } })
    assert.equal("1", p["x-a"]); assert.equal("2", p["X-B"])
    assert.is_true(headers.is(p))
  end)

  it("iterates with lowercase names", function()
    local h = headers.new({ "X-One", "1", "x-two", "2" })
    local names = {}
    for k in pairs(h) do names[#names + 1] = k end
    table.sort(names)
    assert.same({ "x-one", "x-two" }, names)
  end)
  it("adopt: the core's header_map behaves exactly like the same headers through new", function()
    local list = { "x-request-id", "r1", "retry-after", "3", "content-type", "application/json" }
    local map = {}
    for i = 1, #list, 2 do map[list[i]] = list[i + 1] end
    local a, b = headers.adopt(map), headers.new(list)
    assert.equal(map, a)             -- no copy
    assert.is_true(headers.is(a))
    for _, k in ipairs({ "X-Request-ID", "x-request-id", "retry_after", "Content-Type", "x-missing" }) do
      assert.equal(b[k], a[k], k)
      assert.same(headers.all(b, k), headers.all(a, k), k)
    end
    a["X-New"] = "v"
    assert.equal("v", a["x-new"])
  end)
end)

describe("ugen.headers.normalize_received (one rule for received requests)", function()
  it("lower-cases, maps _ to -, and drops a CGI-style HTTP_ prefix", function()
    assert.equal("x-ugen-signature", headers.normalize_received("HTTP_X_UGEN_SIGNATURE"))
    assert.equal("x-ugen-signature", headers.normalize_received("X-UGen-Signature"))
    assert.equal("content-type", headers.normalize_received("Content_Type"))
    assert.equal("x-ugen-timestamp", headers.normalize("X_UGEN_TIMESTAMP"))
    assert.equal("http-x", headers.normalize("HTTP_X"))           -- responses keep the prefix
  end)
end)
