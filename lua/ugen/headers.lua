-- ugen.headers: case-insensitive response header tables.
--
--   local h = headers.new(src)
--     src: the core's flat list {"content-type", "application/json", ...},
--          a list of {name, value} pairs, or a map {["Content-Type"] = "..."}
--          whose values are strings or lists of strings.
--   h["Retry-After"], h["retry-after"], h.retry_after   -> value (repeated
--          headers joined with ", ", RFC 9110 5.3), or nil
--   headers.all(h, name) -> list of every value of that header (maybe empty)
--   pairs(h) gives lowercase names and joined values.

local type, pairs, ipairs, tostring, rawget, rawset, setmetatable, getmetatable =
  type, pairs, ipairs, tostring, rawget, rawset, setmetatable, getmetatable
local string_lower, string_gsub, concat = string.lower, string.gsub, table.concat

local _M = { _VERSION = "0.1.0" }

local lists = setmetatable({}, { __mode = "k" })

local function norm(name)
  return (string_gsub(string_lower(name), "_", "-"))
end
_M.normalize = norm

local mt = { __name = "ugen.headers" }
function mt.__index(t, k)
  if type(k) ~= "string" then return nil end
  return rawget(t, norm(k))
end
function mt.__newindex(t, k, v)
  if type(k) ~= "string" then return end
  local n = norm(k)
  rawset(t, n, v)
  local l = lists[t]
  if l then l[n] = v ~= nil and { v } or nil end
end

function _M.new(src)
  local h, l = {}, {}
  local function add(name, value)
    if type(name) ~= "string" then return end
    local n = norm(name)
    if type(value) == "table" then
      for _, v in ipairs(value) do add(name, v) end
      return
    end
    if value == nil then return end
    value = tostring(value)
    local list = l[n]
    if not list then list = {}; l[n] = list end
    list[#list + 1] = value
  end
  if type(src) == "table" then
    local first = rawget(src, 1)
    if type(first) == "string" then
      for i = 1, #src, 2 do add(src[i], src[i + 1]) end
    elseif type(first) == "table" then
      for _, p in ipairs(src) do add(p[1] or p.name, p[2] or p.value) end
    else
      for k, v in pairs(src) do add(k, v) end
    end
  end
  for n, list in pairs(l) do h[n] = concat(list, ", ") end
  lists[h] = l
  return setmetatable(h, mt)
end

function _M.all(h, name)
  local l = lists[h]
  local n = norm(name)
  if l then
    local list = l[n]
    if not list then return {} end
    local copy = {}
    for i, v in ipairs(list) do copy[i] = v end
    return copy
  end
  local v = h[name]
  return v ~= nil and { v } or {}
end

function _M.is(h) return getmetatable(h) == mt end

return _M
