-- ugen_sandbox_server.http: requests and responses of the sandbox server.
--
-- Handlers return a response table { status, body | raw, headers,
-- content_type } built by response / error_response / unprocessable /
-- value_error; send() encodes it (JSON), applies the output side of an
-- X-Sandbox-Fault and ends the request. Request bodies: read_body (size
-- limit), json_body (a JSON object; NaN/Infinity refused), query_args.

local util = require "ugen_sandbox_server.util"
local faults = require "ugen_sandbox_server.faults"

local ngx = ngx
local json, null = util.json, util.null
local type, pairs, tostring, tonumber, floor, huge = type, pairs, tostring, tonumber, math.floor, math.huge

local _M = {}

local JSON_MAX = 1024 * 1024             -- JSON request bodies (413 above)

--- The nested error body {"error": {code, message, details?}}.
function _M.err_body(code, message, details)
  local e = { code = code, message = message }
  if details then e.details = details end
  return { error = e }
end

--- An error response in the nested shape.
function _M.error_response(status, code, message, details, headers)
  return { status = status, body = _M.err_body(code, message, details), headers = headers }
end
local E = _M.error_response

--- A response: status, body (a table, sent as JSON), extra headers.
function _M.response(status, body, headers)
  return { status = status, body = body, headers = headers }
end
local R = _M.response

--- A 422 {"detail": [...]} (FastAPI/pydantic shape).
function _M.unprocessable(details)
  return R(422, { detail = details })
end

--- A 422 with one value_error entry.
function _M.value_error(loc, msg, input)
  return _M.unprocessable({ { type = "value_error", loc = loc, msg = msg, input = util.orNull(input) } })
end

local function set_headers(h)
  if not h then return end
  for k, v in pairs(h) do ngx.header[k] = v end
end

--- Send a response (honouring the output side of a fault) and end the request.
function _M.send(resp, fault)
  local body = resp.raw
  if body == nil then
    local err
    body, err = json.encode(resp.body)
    -- cjson 2.1.0 always escapes "/"; it never emits a bare "/", so "\\/" is
    -- always an escaped slash and unescaping it keeps the JSON identical.
    if body then body = body:gsub("\\/", "/") end
    if not body then
      ngx.log(ngx.ERR, "sandbox: cannot encode response: ", err)
      resp = E(500, "INTERNAL_ERROR", "The sandbox could not encode its response")
      body = json.encode(resp.body)
    end
  end
  if fault and fault.badjson then body = faults.badjson(body) end
  if fault and fault.delay and fault.delay > 0 then ngx.sleep(fault.delay) end
  if fault and fault.reset_after then return ngx.exit(444) end
  ngx.status = resp.status
  set_headers(resp.headers)
  ngx.header["Content-Type"] = resp.content_type or "application/json"
  ngx.header["Content-Length"] = #body
  if fault and fault.truncate then
    ngx.print(body:sub(1, floor(#body / 2)))
    ngx.flush(true)
    return ngx.exit(ngx.ERROR)
  end
  ngx.print(body)
  return ngx.exit(ngx.HTTP_OK)
end

--- The request body, at most limit bytes -> string | nil, resp (413).
function _M.read_body(limit)
  local cl = tonumber(ngx.var.http_content_length or "")
  if cl and cl > limit then
    return nil, E(413, "PAYLOAD_TOO_LARGE", ("Request body too large (limit %d bytes)"):format(limit),
                  { max_bytes = limit })
  end
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if not data then
    local path = ngx.req.get_body_file()
    if path then
      local f = io.open(path, "rb")
      if f then data = f:read("*a"); f:close() end
    end
  end
  data = data or ""
  if #data > limit then
    return nil, E(413, "PAYLOAD_TOO_LARGE", ("Request body too large (limit %d bytes)"):format(limit),
                  { max_bytes = limit })
  end
  return data
end

local function is_json_type(ct)
  if ct == nil then return true end
  if type(ct) == "table" then ct = ct[1] end
  ct = ct:lower():match("^%s*([^;%s]+)")
  return ct == nil or ct == "application/json" or (ct:match("^application/[%w.%-]+%+json$") ~= nil)
end

local function is_finite(x) return x == x and x ~= huge and x ~= -huge end

-- Does a decoded JSON value hold a NaN or an infinity anywhere? (Nesting is
-- bounded by the decoder's depth limit.)
local function has_non_finite(v)
  local tv = type(v)
  if tv == "number" then return not is_finite(v) end
  if tv == "table" then
    for k, x in pairs(v) do
      if has_non_finite(x) or (type(k) == "number" and not is_finite(k)) then return true end
    end
  end
  return false
end

--- Decode a JSON object request body -> table | nil, resp (415, 413, 422).
function _M.json_body()
  if not is_json_type(ngx.var.http_content_type) then
    return nil, E(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json")
  end
  local data, resp = _M.read_body(JSON_MAX)
  if not data then return nil, resp end
  if data:match("^%s*$") then return {} end
  local v, err = json.decode(data, true)
  if v ~= nil and has_non_finite(v) then
    -- cjson accepts NaN, Infinity, -Infinity (and 1e999 overflows to inf):
    -- none is a JSON number, and no handler or response can carry one.
    v, err = nil, "NaN, Infinity or a number out of range is not a JSON number"
  end
  if v == nil then
    return nil, _M.unprocessable({ { type = "json_invalid", loc = { "body", 0 }, msg = "JSON decode error",
                                     input = {}, ctx = { error = tostring(err) } } })
  end
  if type(v) ~= "table" or v == null or (#v > 0) then
    return nil, _M.unprocessable({ { type = "dict_type", loc = { "body" },
      msg = "Input should be a valid dictionary or object to extract fields from", input = v } })
  end
  return v
end

--- The query arguments (a repeated one: the last) -> table.
function _M.query_args()
  local args = ngx.req.get_uri_args(100)
  local out = {}
  for k, v in pairs(args) do
    if type(v) == "table" then v = v[#v] end
    out[k] = v
  end
  return out
end

return _M
