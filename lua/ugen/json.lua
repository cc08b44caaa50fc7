-- ugen.json: the SDK's only JSON codec.
--
-- One private `cjson.safe.new()` instance, so the host's global cjson settings
-- (and other libraries' instances) are never read or changed, and ours cannot
-- be changed by them.
--
--   json.null          sentinel for JSON null when sending (== ugen.null)
--   json.array(t)      mark t so it encodes as a JSON array, `[]` when empty
--   json.is_array(t)   true when t was marked by json.array
--   json.encode(v)     -> string | nil, message
--   json.decode(s[, keep_null]) -> value | nil, message
--                      JSON null becomes nil (object members disappear, array
--                      elements become holes) unless keep_null is true, in
--                      which case it stays json.null.

local cjson = require("cjson.safe").new()
local argerror = require("ugen.args").argerror

local type, pairs, next, setmetatable, getmetatable, rawget, require =
  type, pairs, next, setmetatable, getmetatable, rawget, require

local tostring, math_random, string_format, string_gsub, string_find =
  tostring, math.random, string.format, string.gsub, string.find

local _M = { _VERSION = "0.1.0" }

cjson.encode_sparse_array(true)           -- {1, nil, 3} -> [1,null,3]; never raise on holes
cjson.encode_max_depth(128)
cjson.decode_max_depth(128)
cjson.encode_invalid_numbers(false)        -- NaN/inf are an encode error, not invalid JSON

_M.null = cjson.null

local array_mt = { __name = "ugen.array" }

function _M.array(t)
  if t == nil then t = {} end
  if type(t) ~= "table" then
    argerror(1, "array", "table expected, got " .. type(t), 2)
  end
  local mt = getmetatable(t)
  if mt ~= nil and mt ~= array_mt then
    argerror(1, "array", "table already has a metatable", 2)
  end
  return setmetatable(t, array_mt)
end

function _M.is_array(t)
  return type(t) == "table" and getmetatable(t) == array_mt
end

-- cjson 2.1.0 (Debian's) has no empty-array support, so an empty marked array
-- is replaced by a per-process random token string, and the token's quoted
-- form is swapped for [] in the output. A user string can only collide by
-- being exactly that 32-hex-digit token.
local EMPTY_TOKEN
do
  local parts = { "ugenEmptyArray" }   -- alphanumeric only: used as a gsub pattern
  for i = 2, 9 do parts[i] = string_format("%04x", math_random(0, 0xffff)) end
  EMPTY_TOKEN = table.concat(parts)
end
local QUOTED_EMPTY = '"' .. EMPTY_TOKEN .. '"'

-- Copy v, replacing empty marked arrays by the token. Returns v itself when
-- nothing needs changing (the common case: no allocation).
local function prepare(v, depth)
  if type(v) ~= "table" or depth > 128 then return v, false end
  if getmetatable(v) == array_mt and next(v) == nil then return EMPTY_TOKEN, true end
  local copy, changed = nil, false
  for k, x in pairs(v) do
    local nx, c = prepare(x, depth + 1)
    if c then
      if not copy then
        copy = {}
        for k2, x2 in pairs(v) do copy[k2] = x2 end
      end
      copy[k] = nx
      changed = true
    end
  end
  if changed then return copy, true end
  return v, false
end

function _M.encode(v)
  local prepared, changed = prepare(v, 0)
  local s, err = cjson.encode(prepared)
  if not s then return nil, err end
  if changed then s = string_gsub(s, QUOTED_EMPTY, "[]") end
  return s
end

local null = cjson.null

-- The pass after cjson.decode (the SDK's rule: JSON null dropped unless keep_null, and on Lua 5.3+
-- integral numbers inside +-2^53 made integers, so 14 prints as 14, not 14.0) has one
-- implementation: core.json_clean in csrc/ugen_json.c, which every PUC Lua (5.1, 5.3, 5.4) runs.
-- The SDK cannot work without the C core (requests, ids, signatures), so it is required here
-- (through ugen.native, which says what to do when the core cannot be loaded).
-- LuaJIT has one number type, so there the rule is only "drop nulls", and this loop, compiled by
-- the JIT, does that about 2.5x faster than a C function can through LuaJIT's C API (a 100-job
-- page: 25 us against 61; bench/json_decode.lua), so LuaJIT (and nginx) run it instead.
local clean
if rawget(_G, "jit") ~= nil then
  local function drop_nulls(v)
    for k, x in pairs(v) do
      if x == null then
        v[k] = nil                            -- assigning nil to an existing field is allowed during pairs
      elseif type(x) == "table" then
        drop_nulls(x)
      end
    end
  end
  clean = function(v, _, keep_null)
    if keep_null then return v end
    if v == null then return nil end
    if type(v) == "table" then drop_nulls(v) end
    return v
  end
else
  clean = require("ugen.native").json_clean
end

-- A lua-cjson that decodes integers as integers (OpenResty's 2.1.0.9+, on 5.3+), or one number
-- type (5.1, LuaJIT), leaves only the nulls to remove: then the pass runs only when the text has one.
local math_type = rawget(math, "type")
local native_integers = math_type ~= nil and math_type((cjson.decode("[1]") or {})[1]) == "integer"
_M.native_integers = native_integers
local numbers_fixed = math_type == nil or native_integers

function _M.decode(s, keep_null)
  if type(s) ~= "string" then return nil, "expected a string to decode, got " .. type(s) end
  local v, err = cjson.decode(s)
  if err ~= nil then return nil, tostring(err) end
  if numbers_fixed and (keep_null or not string_find(s, "null", 1, true)) then return v end
  return clean(v, null, keep_null)
end

return _M
