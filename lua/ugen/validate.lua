-- ugen.validate: request validation driven by the endpoint table (ugen.endpoints).
--
-- The same module is used by the SDK (client-side checks before sending) and by
-- the sandbox server (server-side 422 responses), so the two cannot drift.
-- Pure Lua (5.1-5.4, LuaJIT), no ngx, no JSON library: it receives decoded
-- tables.
--
--   local validate = require "ugen.validate"
--   local details, clean = validate.check(endpoint, params[, opts])
--   -- valid:   details == nil, clean = copy of params with query/path/form
--   --          strings coerced to their declared type (integers, numbers, booleans)
--   -- invalid: details = list of FastAPI/pydantic-style entries:
--   --          { type = "missing", loc = { "body", "segment_count" },
--   --            msg = "Field required", input = <offending input>[, ctx = {...}] }
--
-- `endpoint` is an entry of ugen.endpoints.list or its "resource.name" key
-- (e.g. "jobs.create"). `params` is one flat table of every parameter (path,
-- query, body and form fields together, as SDK methods receive them). Unknown
-- fields are allowed unless opts.unknown == "error" (the SDK asks for it; the
-- sandbox, like the API, ignores them): then each one is an "extra_forbidden"
-- entry naming the closest known field, e.g.
--   { type = "extra_forbidden", loc = { "body", "segmnt_count" }, input = 2,
--     msg = "Unknown field 'segmnt_count'; did you mean 'segment_count'?",
--     ctx = { suggestion = "segment_count" } }
-- Endpoints with an open body (ep.open_body) accept any field.
--
-- opts (all optional):
--   null      the JSON null sentinel: a value equal to it counts as absent
--   body      the raw request body object, reported as `input` of a missing
--             body field (default: the params that are not path/query params)
--   is_array  function(t) -> true when t is known to be an array (e.g. marked
--             with ugen.array); other tables are judged by their keys (keys
--             1..n: array; other keys: object; empty: either)
--   unknown   "error": a field the endpoint does not declare is a problem
--             (default: ignored)
--
-- Error `type` values used: extra_forbidden, missing, string_type, int_type, float_type,
-- bool_type, list_type, dict_type, enum, greater_than_equal, less_than_equal.
-- `loc[1]` is "path", "query" or "body" (form fields are "body", as FastAPI
-- reports them); array items add a 0-based index: {"body", "key_selling_points", 2}.
-- Server-only rules (model constraints, file formats and sizes) are not here.

local argerror = require("ugen.args").argerror
local endpoints = require "ugen.endpoints"

local _M = { _VERSION = "0.1.0" }

local type, pairs, ipairs, tostring, tonumber, select = type, pairs, ipairs, tostring, tonumber, select
local floor, huge = math.floor, math.huge
local concat = table.concat
local tointeger = rawget(math, "tointeger") -- 5.3+ only

local LOC = { path = "path", query = "query", body = "body", form = "body" }

local function is_finite_number(v)
  return type(v) == "number" and v == v and v ~= huge and v ~= -huge
end

local function as_integer(v)
  if tointeger then
    local i = tointeger(v)
    if i then return i end
  end
  return v
end

-- Is table t array-shaped (keys exactly 1..n)? Empty tables are both shapes
-- unless opts.is_array says it is an array.
local function array_shape(t, is_array)
  if is_array and is_array(t) then return "array" end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k ~= floor(k) then return "object" end
    n = n + 1
  end
  if n == 0 then return "empty" end
  for i = 1, n do
    if t[i] == nil then return "object" end
  end
  return "array"
end

local function quote_list(values)
  local q = {}
  for i, v in ipairs(values) do q[i] = "'" .. tostring(v) .. "'" end
  if #q <= 1 then return q[1] or "" end
  return concat(q, ", ", 1, #q - 1) .. " or " .. q[#q]
end

local BOOL_STRINGS = {
  ["true"] = true, ["1"] = true, yes = true, on = true, t = true, y = true,
  ["false"] = false, ["0"] = false, no = false, off = false, f = false, n = false,
}

-- Scalar conversion. `lax` (query, path and form values arrive as strings)
-- accepts numeric/boolean strings as pydantic does. Returns ok, value.
local function convert(kind, v, lax)
  if kind == "string" then
    return type(v) == "string", v
  elseif kind == "integer" then
    if lax and type(v) == "string" then
      local s = v:match("^%s*([+-]?%d+)%s*$")
      if not s then return false end
      v = tonumber(s)
    end
    if not is_finite_number(v) or v ~= floor(v) then return false end
    return true, as_integer(v)
  elseif kind == "number" then
    if lax and type(v) == "string" then
      if not v:match("^%s*[+-]?%d*%.?%d+[eE]?[+-]?%d*%s*$") then return false end
      v = tonumber(v)
    end
    return is_finite_number(v), v
  elseif kind == "boolean" then
    if lax and type(v) == "string" then
      local b = BOOL_STRINGS[v:lower()]
      if b == nil then return false end
      return true, b
    end
    return type(v) == "boolean", v
  elseif kind == "file" then
    return type(v) == "string" or type(v) == "table", v
  end
  return true, v -- unknown kinds are not checked
end

local TYPE_ERR = {
  string = { "string_type", "Input should be a valid string" },
  integer = { "int_type", "Input should be a valid integer" },
  number = { "float_type", "Input should be a valid number" },
  boolean = { "bool_type", "Input should be a valid boolean" },
  file = { "value_error", "Value error, Expected UploadFile" },
  array = { "list_type", "Input should be a valid list" },
  object = { "dict_type", "Input should be a valid dictionary" },
}

local function loc_of(p, ...)
  local loc = { LOC[p["in"]] or p["in"] or "body", p.name }
  for i = 1, select("#", ...) do loc[#loc + 1] = (select(i, ...)) end
  return loc
end

local function add(details, etype, loc, msg, input, ctx)
  details[#details + 1] = { type = etype, loc = loc, msg = msg, input = input, ctx = ctx }
end

local function type_error(details, kind, loc, input)
  local e = TYPE_ERR[kind]
  add(details, e[1], loc, e[2], input)
end

-- Enum and range rules on an already converted scalar.
local function check_rules(details, p, v, loc)
  if p.enum then
    local found = false
    for _, e in ipairs(p.enum) do
      if e == v then found = true; break end
    end
    if not found then
      local expected = quote_list(p.enum)
      add(details, "enum", loc, "Input should be " .. expected, v, { expected = expected })
      return false
    end
  end
  if type(v) == "number" then
    if p.min and v < p.min then
      add(details, "greater_than_equal", loc, "Input should be greater than or equal to " .. tostring(p.min),
          v, { ge = p.min })
      return false
    end
    if p.max and v > p.max then
      add(details, "less_than_equal", loc, "Input should be less than or equal to " .. tostring(p.max),
          v, { le = p.max })
      return false
    end
  end
  return true
end

local function resolve(endpoint)
  if type(endpoint) == "string" then
    local ep = endpoints.by_name[endpoint]
    if not ep then argerror(1, "check", "unknown endpoint '" .. endpoint .. "'", 3) end
    return ep
  end
  if type(endpoint) ~= "table" or type(endpoint.params) ~= "table" then
    argerror(1, "check", "endpoint table or name expected, got " .. type(endpoint), 3)
  end
  return endpoint
end

-- Damerau-Levenshtein distance (optimal string alignment: insertions,
-- deletions, substitutions and swaps of two neighbours cost 1).
local function distance(a, b)
  local la, lb = #a, #b
  local d = {}
  for i = 0, la do d[i] = { [0] = i } end
  for j = 1, lb do d[0][j] = j end
  for i = 1, la do
    local ca = a:byte(i)
    for j = 1, lb do
      local cb = b:byte(j)
      local cost = ca == cb and 0 or 1
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and ca == b:byte(j - 1) and a:byte(i - 1) == cb then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[la][lb]
end
_M.distance = distance

--- The declared field of `endpoint` closest to `name` (case-insensitive), or
-- nil when none is close: at most a third of the longer name's length may
-- differ (at least one edit is always allowed).
function _M.suggest(endpoint, name)
  local ep = resolve(endpoint)
  if type(name) ~= "string" or name == "" then return nil end
  local lname = name:lower()
  local best, best_d
  local function try(pname)
    local d = distance(lname, pname:lower())
    local limit = math.max(1, floor(math.max(#name, #pname) / 3))
    if d <= limit and (not best_d or d < best_d) then best, best_d = pname, d end
  end
  for _, p in ipairs(ep.params) do try(p.name) end
  if ep.also_accepts then
    for pname in pairs(ep.also_accepts) do
      if not ep.by_param[pname] then try(pname) end
    end
  end
  return best
end

-- Where an undeclared field would go: the body of a body endpoint, else the query.
local function extra_loc(ep)
  return ep.body and "body" or "query"
end

--- Validate `params` against `endpoint`. Returns nil, clean when valid, or the
-- detail list when not.
function _M.check(endpoint, params, opts)
  local ep = resolve(endpoint)
  if params == nil then params = {} end
  if type(params) ~= "table" then
    argerror(2, "check", "table expected, got " .. type(params), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    argerror(3, "check", "table expected, got " .. type(opts), 2)
  end
  opts = opts or {}
  local null, is_array = opts.null, opts.is_array

  local details, clean = {}, {}
  for k, v in pairs(params) do clean[k] = v end

  local body_input = opts.body
  local function missing_input(p)
    if p["in"] == "body" or p["in"] == "form" then
      if body_input == nil then
        body_input = {}
        for k, v in pairs(params) do
          local q = ep.by_param and ep.by_param[k]
          if not (q and (q["in"] == "path" or q["in"] == "query")) then body_input[k] = v end
        end
      end
      return body_input
    end
    return null
  end

  for _, p in ipairs(ep.params) do
    local v = params[p.name]
    if v ~= nil and null ~= nil and v == null then v = nil end
    if v == nil then
      if p.required then add(details, "missing", loc_of(p), "Field required", missing_input(p)) end
    else
      local kind, lax = p.type, p["in"] ~= "body"
      if kind == "array" then
        if type(v) ~= "table" or array_shape(v, is_array) == "object" then
          type_error(details, "array", loc_of(p), v)
        elseif p.items then
          local out, bad = {}, false
          for i = 1, #v do
            local ok, cv = convert(p.items, v[i], false)
            if ok then
              out[i] = cv
            else
              bad = true
              type_error(details, p.items, loc_of(p, i - 1), v[i])
            end
          end
          if not bad then clean[p.name] = out end
        end
      elseif kind == "object" then
        if type(v) ~= "table" or array_shape(v, is_array) == "array" then
          type_error(details, "object", loc_of(p), v)
        end
      else
        local ok, cv = convert(kind, v, lax)
        if not ok then
          type_error(details, kind, loc_of(p), v)
        elseif check_rules(details, p, cv, loc_of(p)) then
          clean[p.name] = cv
        end
      end
    end
  end

  if opts.unknown == "error" and not ep.open_body then
    local unknown = {}
    for k in pairs(params) do
      local known = type(k) == "string"
        and ((ep.by_param and ep.by_param[k]) or (ep.also_accepts and ep.also_accepts[k]))
      if not known then unknown[#unknown + 1] = k end
    end
    -- a stable order: by type name, then by value
    table.sort(unknown, function(x, y)
      if type(x) ~= type(y) then return type(x) < type(y) end
      if type(x) == "number" or type(x) == "string" then return x < y end
      return tostring(x) < tostring(y)
    end)
    for _, k in ipairs(unknown) do
      local s = _M.suggest(ep, k)
      local msg = "Unknown field '" .. tostring(k) .. "'"
      if s then msg = msg .. "; did you mean '" .. s .. "'?" end
      add(details, "extra_forbidden", { extra_loc(ep), k }, msg, params[k], s and { suggestion = s } or nil)
    end
  end

  if #details > 0 then return details end
  return nil, clean
end

--- Validation messages as one readable line (for error strings).
function _M.summary(details)
  local parts = {}
  for i, d in ipairs(details or {}) do
    local loc = {}
    for j, l in ipairs(d.loc or {}) do loc[j] = tostring(l) end
    parts[i] = concat(loc, ".") .. ": " .. tostring(d.msg)
  end
  return concat(parts, "; ")
end

return _M
