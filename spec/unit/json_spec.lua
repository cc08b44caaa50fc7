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

-- The decode rule (JSON null dropped unless keep_null; on 5.3+ integral numbers strictly inside
-- +-2^53 are integers), checked through json.decode against literal tables. Number texts are
-- chosen so that a cjson that keeps integers (json.native_integers) decodes them alike.
describe("ugen.json decode rule", function()
  local math_type = rawget(math, "type")
  local null = json.null

  -- v must equal `want` and, where Lua has two number types, be of type `kind`
  local function number_is(want, kind, v, what)
    assert.equal(want, v, what)
    if math_type then assert.equal(kind, math_type(v), what) end
  end

  it("makes integral numbers inside +-2^53 integers and leaves the rest floats", function()
    local cases = {
      { "14", 14, "integer" }, { "1e3", 1000, "integer" }, { "-0.0", 0, "integer" }, { "7.0", 7, "integer" },
      { "9007199254740991.0", 9007199254740991, "integer" }, { "-9007199254740991.0", -9007199254740991, "integer" },
      { "9007199254740992.0", 2^53, "float" }, { "-9007199254740992.0", -2^53, "float" },
      { "1.5", 1.5, "float" }, { "2e-3", 0.002, "float" }, { "1e300", 1e300, "float" },
      { "1.2345678901234568e29", 1.2345678901234568e29, "float" },
    }
    local texts = {}
    for i, c in ipairs(cases) do texts[i] = c[1] end
    local list = "[" .. table.concat(texts, ",") .. "]"
    for _, keep in ipairs({ false, true }) do
      local arr = json.decode(list, keep)
      local obj = json.decode('{"a":{"b":' .. list .. '},"n":null}', keep)
      assert.equal(#cases, #arr)
      for i, c in ipairs(cases) do
        number_is(c[2], c[3], arr[i], c[1] .. " in an array")
        number_is(c[2], c[3], obj.a.b[i], c[1] .. " nested in objects")
        number_is(c[2], c[3], json.decode(c[1], keep), c[1] .. " at the top level")
      end
    end
  end)

  it("drops nulls at every depth, keeps them as json.null with keep_null", function()
    local text = '{"a":null,"b":[1,null,{"c":null,"d":[null]}],"e":{"f":{"g":null,"h":2.0}},"s":"null"}'
    assert.same({ b = { 1, nil, { d = {} } }, e = { f = { h = 2 } }, s = "null" }, json.decode(text))
    assert.same({ a = null, b = { 1, null, { c = null, d = { null } } }, e = { f = { g = null, h = 2 } }, s = "null" },
      json.decode(text, true))
    local v = json.decode("[null,null,3]")
    assert.is_nil(v[1]); assert.is_nil(v[2]); number_is(3, "integer", v[3], "after two holes")
    assert.same({ k = "null" }, json.decode('{"k":"null"}'))
  end)

  it("gives nil for a top-level null (json.null with keep_null) and leaves other scalars alone", function()
    assert.equal(1, select("#", json.decode("null")))
    assert.is_nil(json.decode("null"))
    assert.equal(null, json.decode("null", true))
    assert.equal("null", json.decode('"null"'))
    assert.is_true(json.decode("true"))
    assert.is_false(json.decode("false", true))
    assert.same({}, json.decode("[]"))
  end)

  it("applies the rule down to cjson's depth limit (128)", function()
    local deep = assert(json.decode(string.rep("[", 127) .. '{"x":null,"y":5.0}' .. string.rep("]", 127)))
    for _ = 1, 127 do deep = deep[1] end
    assert.is_nil(deep.x)
    number_is(5, "integer", deep.y, "127 arrays deep")
    assert.is_nil(json.decode(string.rep("[", 129) .. string.rep("]", 129)))
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
