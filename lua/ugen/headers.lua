-- ugen.headers: case-insensitive response header tables.
--
--   local h = headers.new(src)
--     src: the core's flat list {"content-type", "application/json", ...},
--          a list of {name, value} pairs, or a map {["Content-Type"] = "..."}
--          whose values are strings or lists of strings.
--   h["Retry-After"], h["retry-after"], h.retry_after   -> value (repeated
--          headers joined with ", ", RFC 9110 5.3), or nil
--   headers.all(h, name) -> list of every value of that header (maybe empty)
--   headers.adopt(map) -> h over the core's res.header_map, which is already
--          normalized (lowercase names without "_", each once): no copy
--   pairs(h) gives lowercase names and joined values.

local type, pairs, ipairs, tostring, rawget, rawset, setmetatable, getmetatable =
  type, pairs, ipairs, tostring, rawget, rawset, setmetatable, getmetatable
local string_lower, string_gsub, string_sub, concat = string.lower, string.gsub, string.sub, table.concat

local _M = { _VERSION = "0.1.0" }

local lists = setmetatable({}, { __mode = "k" })

-- Header names are normalized by one rule (lower case, "_" as "-") and the
-- result is memoized (names repeat on every message); the cache is dropped
-- when it reaches NORM_CACHE_MAX entries, so it stays bounded whatever names a
-- peer sends.
local NORM_CACHE_MAX = 512
local norm_cache, norm_count = {}, 0

local function norm(name)
  local n = norm_cache[name]
  if n then return n end
  n = string_gsub(string_lower(name), "_", "-")
  if norm_count >= NORM_CACHE_MAX then norm_cache, norm_count = {}, 0 end
  norm_cache[name] = n
  norm_count = norm_count + 1
  return n
end
_M.normalize = norm

-- The same for the headers of a received request, which hosts may hand over
-- CGI-style ("HTTP_X_UGEN_SIGNATURE" -> "x-ugen-signature"): norm, then an
-- "http-" prefix dropped. Memoized the same way.
local recv_cache, recv_count = {}, 0
function _M.normalize_received(name)
  local n = recv_cache[name]
  if n then return n end
  n = norm(name)
  if string_sub(n, 1, 5) == "http-" then n = string_sub(n, 6) end
  if recv_count >= NORM_CACHE_MAX then recv_cache, recv_count = {}, 0 end
  recv_cache[name] = n
  recv_count = recv_count + 1
  return n
end

local mt = { __name = "ugen.headers" }
function mt.__index(t, k)
  if type(k) ~= "string" then return nil end
  return rawget(t, norm(k))
end
function mt.__newindex(t, k, v)
  if type(k) ~= "string" then return end
  local n = norm(k)
  rawset(t, n, v)
  -- a repeated header's value list no longer applies: all() falls back to the value
  local l = lists[t]
  if l then l[n] = nil end
end

-- lists[h] (weak) holds {name = {v1, v2, ...}} only for names that came more
-- than once; a name seen once is just h[name] (no per-header allocation).
local function add(h, multi, name, value)
  if type(name) ~= "string" then return multi end
  if type(value) == "table" then
    for _, v in ipairs(value) do multi = add(h, multi, name, v) end
    return multi
  end
  if value == nil then return multi end
  if type(value) ~= "string" then value = tostring(value) end
  local n = norm(name)
  local prev = rawget(h, n)
  if prev == nil then
    rawset(h, n, value)
    return multi
  end
  multi = multi or {}
  local list = multi[n]
  if not list then list = { prev }; multi[n] = list end
  list[#list + 1] = value
  return multi
end

function _M.new(src)
  local h, multi = {}, nil
  if type(src) == "table" then
    local first = rawget(src, 1)
    if type(first) == "string" then
      -- the core's flat list: string names and values (the fast path; h has no
      -- metatable yet, so plain indexing is raw)
      for i = 1, #src, 2 do
        local name, value = src[i], src[i + 1]
        local n = norm_cache[name]        -- only string names are ever cached (a nil name reads nil)
        if n and h[n] == nil and type(value) == "string" then
          h[n] = value
        else
          multi = add(h, multi, name, value)
        end
      end
    elseif type(first) == "table" then
      for _, p in ipairs(src) do
        if type(p) == "table" then multi = add(h, multi, p[1] or p.name, p[2] or p.value) end
      end
    else
      for k, v in pairs(src) do multi = add(h, multi, k, v) end
    end
  end
  if multi then
    for n, list in pairs(multi) do rawset(h, n, concat(list, ", ")) end
    lists[h] = multi
  end
  return setmetatable(h, mt)
end

-- The core's header_map (names already lowercase without "_", each once,
-- string values): taken as it is, no copy.
function _M.adopt(map)
  return setmetatable(map, mt)
end

function _M.all(h, name)
  local l = lists[h]
  local list = l and l[norm(name)]
  if list then
    local copy = {}
    for i, v in ipairs(list) do copy[i] = v end
    return copy
  end
  local v = h[name]
  return v ~= nil and { v } or {}
end

function _M.is(h) return getmetatable(h) == mt end

return _M
