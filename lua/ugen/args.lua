-- ugen.args: argument errors, one implementation for the whole SDK.
--
-- A wrong argument is a programming error: it raises at the caller's line with Lua's own wording,
-- "bad argument #n to 'fname' (msg)".
--
--   args.argerror(n, fname, msg[, level])
--       raise that message. level counts as error()'s does from the function that calls argerror:
--       1 = that function's own line, 2 = its caller (the usual: a public function checking its
--       arguments), 3 = the caller's caller (a helper the public function calls), ...
--   args.check_table(v, n, fname[, level])         v must be a table ("table expected, got <type>")
--   args.check_keys(t, n, fname, known[, level])   every key of t must be in the set `known`
--       ("unknown option 'k'"); t is returned
--   Predicates (no error; for messages that name the option):
--   args.is_finite(x)            a number, not NaN, not +-inf
--   args.is_positive(x)          finite and > 0
--   args.is_non_negative(x)      finite and >= 0
--   args.is_count(x)             an integer >= 0 (finite; 3.0 counts as 3)
--   args.is_positive_integer(x)  an integer >= 1
--   args.is_non_empty_string(x)
--   args.describe_type(x)        for "<what> expected, got <this>": the type, or "empty string"
--   args.describe(x)             a value for a message: describe_type, or the number itself
--                                ("nan", "inf", "-3")

local type, tostring, pairs, error, math_floor, math_huge, string_format =
  type, tostring, pairs, error, math.floor, math.huge, string.format

local _M = { _VERSION = "0.1.0" }

local function argerror(n, fname, msg, level)
  error(string_format("bad argument #%d to '%s' (%s)", n, fname, msg), (level or 1) + 1)
end
_M.argerror = argerror

function _M.check_table(v, n, fname, level)
  if type(v) ~= "table" then argerror(n, fname, "table expected, got " .. type(v), (level or 1) + 1) end
  return v
end

function _M.check_keys(t, n, fname, known, level)
  for k in pairs(t) do
    if not known[k] then argerror(n, fname, "unknown option '" .. tostring(k) .. "'", (level or 1) + 1) end
  end
  return t
end

local function is_finite(x)
  return type(x) == "number" and x == x and x ~= math_huge and x ~= -math_huge
end
_M.is_finite = is_finite

function _M.is_positive(x) return is_finite(x) and x > 0 end

function _M.is_non_negative(x) return is_finite(x) and x >= 0 end

local function is_count(x)
  return is_finite(x) and x >= 0 and x == math_floor(x)
end
_M.is_count = is_count

function _M.is_positive_integer(x) return is_count(x) and x >= 1 end

function _M.is_non_empty_string(x) return type(x) == "string" and x ~= "" end

local function describe_type(x)
  if x == "" then return "empty string" end
  return type(x)
end
_M.describe_type = describe_type

function _M.describe(x)
  if type(x) == "number" then return tostring(x) end
  return describe_type(x)
end

return _M
