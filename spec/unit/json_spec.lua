-- ugen.json: private cjson instance, null and empty-array handling.
local json = require "ugen.json"
local ugen = require "ugen"

describe("ugen.json", function()
  it("encodes ugen.null as JSON null and ugen.array({}) as []", function()
    assert.equal('{"a":null}', json.encode({ a = ugen.null }))
    assert.equal('{"a":[]}', json.encode({ a = ugen.array({}) }))
    assert.equal('[]', json.encode(ugen.array()))
    assert.equal('{"a":{}}', json.encode({ a = {} }))           -- unmarked empty table: object
    assert.equal('{"a":[1,2]}', json.encode({ a = ugen.array({ 1, 2 }) }))
  end)

  it("handles empty arrays nested deep and does not modify the caller's table", function()
    local inner = ugen.array({})
    local t = { x = { y = { inner, ugen.array({}) } } }
    assert.equal('{"x":{"y":[[],[]]}}', json.encode(t))
    assert.equal(inner, t.x.y[1])                               -- untouched
    assert.is_true(json.is_array(t.x.y[1]))
  end)

  it("keeps a user string equal to nothing special", function()
    assert.equal('["ugen-empty-array"]', json.encode({ "ugen-empty-array" }))
  end)

  it("refuses to mark a table that has another metatable, and non-tables", function()
    assert.has_error(function() ugen.array(setmetatable({}, {})) end,
      "bad argument #1 to 'array' (table already has a metatable)")
    assert.has_error(function() ugen.array("x") end, "bad argument #1 to 'array' (table expected, got string)")
  end)

  it("returns nil, message for values JSON cannot hold", function()
    local s, err = json.encode({ f = function() end })
    assert.is_nil(s)
    assert.is_string(err)
    s, err = json.encode({ n = 0 / 0 })
    assert.is_nil(s)
    assert.is_string(err)
  end)

  it("decodes null to nil by default and keeps it with keep_null", function()
    local v = json.decode('{"a":null,"b":{"c":null,"d":1},"e":[1,null,3]}')
    assert.is_nil(v.a)
    assert.is_nil(v.b.c)
    assert.equal(1, v.b.d)
    assert.equal(1, v.e[1]); assert.is_nil(v.e[2]); assert.equal(3, v.e[3])
    local k = json.decode('{"a":null,"e":[null]}', true)
    assert.equal(ugen.null, k.a)
    assert.equal(ugen.null, k.e[1])
    local top, err = json.decode("null")
    assert.is_nil(top); assert.is_nil(err)
  end)

  it("returns nil, message for invalid or truncated JSON and non-strings", function()
    for _, bad in ipairs({ "{", '{"a":', "<html>", "", "[1,2" }) do
      local v, err = json.decode(bad)
      assert.is_nil(v)
      assert.is_string(err)
    end
    local v, err = json.decode(42)
    assert.is_nil(v); assert.matches("expected a string", err)
  end)

  it("leaves the host's global cjson settings untouched, and is not affected by them", function()
    local cjson = require "cjson"
    local before = { cjson.encode_sparse_array() }
    local mp = { cjson.encode_max_depth() }
    json.encode({ 1, nil, 3 })
    json.decode('{"a":[1,2]}')
    assert.same(before, { cjson.encode_sparse_array() })
    assert.same(mp, { cjson.encode_max_depth() })
    -- the host makes its global instance strict: ours still encodes sparse arrays
    local saved = { cjson.encode_sparse_array() }
    cjson.encode_sparse_array(false, 1, 1)
    local ok = pcall(cjson.encode, { 1, nil, nil, nil, 5 })
    assert.is_false(ok)                                          -- the global one refuses
    assert.equal("[1,null,null,null,5]", json.encode({ 1, nil, nil, nil, 5 }))
    cjson.encode_sparse_array(saved[1], saved[2], saved[3])
  end)
end)

describe("ugen.json numbers", function()
  it("decodes integral numbers as integers where Lua has them", function()
    local v = json.decode('{"a":14,"b":1.5,"c":[3,-2],"d":1e300}')
    assert.equal("14", tostring(v.a))
    assert.equal(1.5, v.b)
    assert.equal("3", tostring(v.c[1])); assert.equal("-2", tostring(v.c[2]))
    assert.equal(1e300, v.d)
    assert.equal("7", tostring(json.decode("7")))
  end)

  it("knows whether the installed cjson keeps integers (then only nulls need a pass)", function()
    local plain = require("cjson.safe").new()
    local math_type = rawget(math, "type")
    local native = math_type ~= nil and rawget(math, "tointeger") ~= nil
      and math_type(plain.decode("[1]")[1]) == "integer"
    assert.equal(native, json.native_integers)
    -- either way the result is the same
    local v = json.decode('{"a":14,"b":null,"c":{"d":2,"e":null}}')
    assert.equal("14", tostring(v.a)); assert.is_nil(v.b)
    assert.equal("2", tostring(v.c.d)); assert.is_nil(v.c.e)
    assert.equal("3", tostring(json.decode('{"x":3}').x))
  end)
end)
