-- ugen.args: the one implementation of argument errors. The message is Lua's own wording and
-- the position is the line the level names (the checks' callers rely on it).
local args = require "ugen.args"

local function line() return debug.getinfo(2, "l").currentline end

-- a public function `f` checking its argument with a helper one level down
local function helper(v, level) args.check_table(v, 1, "f", level) end
local function f(v) helper(v, 3) end

describe("ugen.args.argerror", function()
  it("raises \"bad argument #n to 'fname' (msg)\" at the level given", function()
    local function pub(x) if not x then args.argerror(2, "pub", "boom", 2) end end
    local ok, e = pcall(function() pub(false) end); local l = line()
    assert.is_false(ok)
    assert.equal(("spec/unit/args_spec.lua:%d: bad argument #2 to 'pub' (boom)"):format(l), e)
    -- level 1: the line of the function that calls argerror
    local function own() args.argerror(1, "own", "here", 1) end; local l1 = line()
    ok, e = pcall(own)
    assert.is_false(ok)
    assert.equal(("spec/unit/args_spec.lua:%d: bad argument #1 to 'own' (here)"):format(l1), e)
    -- no level: as 1
    local function dflt() args.argerror(1, "dflt", "x") end; local l2 = line()
    ok, e = pcall(dflt)
    assert.is_false(ok)
    assert.equal(("spec/unit/args_spec.lua:%d: bad argument #1 to 'dflt' (x)"):format(l2), e)
  end)
end)

describe("ugen.args.check_table / check_keys", function()
  it("check_table names the type, at the level of its caller's caller", function()
    local ok, e = pcall(function() f("x") end); local l = line()
    assert.is_false(ok)
    assert.equal(("spec/unit/args_spec.lua:%d: bad argument #1 to 'f' (table expected, got string)"):format(l), e)
    local t = {}
    assert.equal(t, args.check_table(t, 1, "f"))
  end)

  it("check_keys refuses a key outside the set, naming it", function()
    local known = { a = true, b = true }
    local t = { a = 1, b = 2 }
    assert.equal(t, args.check_keys(t, 3, "g", known))
    local function g(o) args.check_keys(o, 3, "g", known, 2) end
    local ok, e = pcall(function() g{ a = 1, c = 2 } end); local l = line()
    assert.is_false(ok)
    assert.equal(("spec/unit/args_spec.lua:%d: bad argument #3 to 'g' (unknown option 'c')"):format(l), e)
  end)
end)

describe("ugen.args predicates", function()
  local nan, inf = 0 / 0, math.huge
  it("is_finite / is_positive / is_non_negative", function()
    for _, v in ipairs { 0, 1, -1, 0.5, 2 ^ 60 } do assert.is_true(args.is_finite(v), tostring(v)) end
    for _, v in ipairs { nan, inf, -inf, "1", true } do assert.is_false(args.is_finite(v), tostring(v)) end
    assert.is_false(args.is_finite(nil))
    assert.is_true(args.is_positive(0.001)); assert.is_false(args.is_positive(0))
    assert.is_false(args.is_positive(nan)); assert.is_false(args.is_positive(inf))
    assert.is_true(args.is_non_negative(0)); assert.is_false(args.is_non_negative(-0.5))
    assert.is_false(args.is_non_negative(nan))
  end)

  it("is_count / is_positive_integer: integral, finite", function()
    assert.is_true(args.is_count(0)); assert.is_true(args.is_count(3)); assert.is_true(args.is_count(3.0))
    for _, v in ipairs { -1, 1.5, nan, inf, "2" } do assert.is_false(args.is_count(v), tostring(v)) end
    assert.is_true(args.is_positive_integer(1)); assert.is_false(args.is_positive_integer(0))
    assert.is_false(args.is_positive_integer(inf))
  end)

  it("is_non_empty_string, describe_type, describe", function()
    assert.is_true(args.is_non_empty_string("a"))
    assert.is_false(args.is_non_empty_string("")); assert.is_false(args.is_non_empty_string(1))
    assert.equal("empty string", args.describe_type(""))
    assert.equal("string", args.describe_type("x")); assert.equal("nil", args.describe_type(nil))
    assert.equal("number", args.describe_type(-3))
    assert.equal("-3", args.describe(-3)); assert.equal("inf", args.describe(inf))
    assert.equal("table", args.describe({})); assert.equal("empty string", args.describe(""))
  end)
end)
