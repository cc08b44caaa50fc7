-- ugen_sandbox_server.util: small helpers shared by the sandbox server modules
-- (runs inside the nginx worker: LuaJIT + ngx).

local json = require "ugen.json"
local crypto = require "ugen.crypto"

local _M = {}

local type, pairs, ipairs, tostring, floor, concat, sort, format =
  type, pairs, ipairs, tostring, math.floor, table.concat, table.sort, string.format

_M.json = json
_M.null = json.null
_M.array = json.array
_M.crypto = crypto

function _M.uuid4() return crypto.uuid4() end

--- ISO-8601 UTC with seconds, e.g. 2026-04-09T14:30:00Z (t: epoch seconds).
function _M.iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", floor(t))
end

--- Value or JSON null.
function _M.orNull(v)
  if v == nil then return json.null end
  return v
end

--- Canonical JSON (sorted keys) used to compare request bodies for idempotency.
local function canonical(v, out)
  local tv = type(v)
  if v == json.null then
    out[#out + 1] = "null"
  elseif tv == "table" then
    local n, is_arr = 0, true
    for k in pairs(v) do
      n = n + 1
      if type(k) ~= "number" then is_arr = false end
    end
    if is_arr and n > 0 then
      out[#out + 1] = "["
      for i = 1, n do
        if i > 1 then out[#out + 1] = "," end
        canonical(v[i], out)
      end
      out[#out + 1] = "]"
      return
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    sort(keys)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = format("%q:", k)
      local val = v[k]
      if val == nil then val = v[tonumber(k)] end
      canonical(val, out)
    end
    out[#out + 1] = "}"
  elseif tv == "string" then
    out[#out + 1] = format("%q", v)
  elseif tv == "number" then
    if v == floor(v) and v > -2^53 and v < 2^53 then out[#out + 1] = format("%d", v)
    else out[#out + 1] = format("%.17g", v) end
  else
    out[#out + 1] = tostring(v)
  end
end

function _M.canonical(v)
  local out = {}
  canonical(v, out)
  return concat(out)
end

function _M.copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = _M.copy(v) end
  return c
end

function _M.ceil_pos(x)
  local c = math.ceil(x)
  if c < 1 then c = 1 end
  return c
end

--- Paginate list (already ordered) -> envelope.
function _M.page(list, page, page_size)
  local total = #list
  local items = json.array()
  local first = (page - 1) * page_size + 1
  for i = first, math.min(total, first + page_size - 1) do items[#items + 1] = list[i] end
  return { items = items, total = total, page = page, page_size = page_size,
           total_pages = math.ceil(total / page_size) }
end

return _M
