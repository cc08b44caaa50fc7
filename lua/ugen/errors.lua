-- ugen.errors: the one error shape of the SDK.
--
-- Every public call returns `result` or `nil, err`; `err` is a table with this
-- module's metatable:
--   kind         "api" | "validation" | "rate_limit" | "insufficient_credits" |
--                "auth" | "not_found" | "conflict" | "network" | "timeout" |
--                "tls" | "decode" | "signature" | "job_failed" | "cancelled"
--   status       HTTP status, or nil when no response arrived
--   code         API error code ("INSUFFICIENT_CREDITS"), curl code as
--                "CURLE_<n>", or an SDK code ("WAIT_TIMEOUT", "SIGNATURE_MISMATCH")
--   message      one human-readable line
--   details      the API's error.details table (or nil)
--   fields       the 422 `detail` list (validation errors, client- or server-side)
--   retry_after  seconds the server asked to wait (429/503), or nil
--   request_id   X-Request-Id of the response, or nil
--   retryable    boolean: the same call may succeed later
--   job          the last job seen (kind "job_failed", and wait timeouts)
-- tostring(err) is one readable line and never contains a secret.

local type, pairs, ipairs, tostring, setmetatable, getmetatable =
  type, pairs, ipairs, tostring, setmetatable, getmetatable
local concat, string_format, string_find, string_sub = table.concat, string.format, string.find, string.sub

local json = require "ugen.json"

local _M = { _VERSION = "0.1.0" }

_M.KINDS = {
  "api", "validation", "rate_limit", "insufficient_credits", "auth", "not_found", "conflict",
  "network", "timeout", "tls", "decode", "signature", "job_failed",
  "cancelled",  -- a scheduler task was cancelled (ugen.scheduler: task:cancel())
}
local KIND_SET = {}
for _, k in ipairs(_M.KINDS) do KIND_SET[k] = true end

local REASONS = {
  [400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required", [403] = "Forbidden",
  [404] = "Not Found", [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict",
  [413] = "Payload Too Large", [415] = "Unsupported Media Type", [422] = "Unprocessable Entity",
  [429] = "Too Many Requests", [500] = "Internal Server Error", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
}

-- Statuses the pipeline retries (idempotent calls only).
_M.RETRYABLE_STATUS = { [408] = true, [429] = true, [500] = true, [502] = true, [503] = true, [504] = true }

local function field_loc(f)
  if type(f) ~= "table" or type(f.loc) ~= "table" then return "?" end
  local parts = {}
  for i, p in ipairs(f.loc) do
    -- drop the leading "body"/"query"/"path" location for readability
    if not (i == 1 and (p == "body" or p == "query" or p == "path" or p == "form") and #f.loc > 1) then
      parts[#parts + 1] = tostring(p)
    end
  end
  return concat(parts, ".")
end

local mt = { __name = "ugen.error" }

function mt.__tostring(e)
  local out = { "ugen: ", tostring(e.kind or "api"), " error" }
  if e.status then out[#out + 1] = string_format(" (HTTP %s)", tostring(e.status)) end
  if e.code then out[#out + 1] = " " .. tostring(e.code) end
  out[#out + 1] = ": " .. tostring(e.message or "unknown error")
  if type(e.fields) == "table" and #e.fields > 0 then
    local list = {}
    for i, f in ipairs(e.fields) do
      if i > 5 then list[#list + 1] = string_format("and %d more", #e.fields - 5); break end
      list[#list + 1] = field_loc(f) .. ": " .. tostring(type(f) == "table" and f.msg or f)
    end
    out[#out + 1] = " [" .. concat(list, "; ") .. "]"
  end
  if e.retry_after then out[#out + 1] = string_format(" (retry after %gs)", e.retry_after) end
  if e.request_id then out[#out + 1] = " (request " .. tostring(e.request_id) .. ")" end
  return concat(out)
end

_M.mt = mt

-- errors.new{kind=, message=, ...} -> err (fields copied; retryable defaults to false)
function _M.new(t)
  local e = {}
  for k, v in pairs(t) do e[k] = v end
  if e.retryable == nil then e.retryable = false end
  return setmetatable(e, mt)
end

-- errors.is(err, kind): err is an SDK error (of that kind, when kind is given).
function _M.is(e, kind)
  if type(e) ~= "table" or getmetatable(e) ~= mt then return false end
  return kind == nil or e.kind == kind
end

function _M.is_kind(kind) return KIND_SET[kind] == true end

-- Kind for an HTTP error status.
function _M.kind_for_status(status)
  if status == 400 or status == 422 then return "validation" end
  if status == 401 or status == 403 then return "auth" end
  if status == 402 then return "insufficient_credits" end
  if status == 404 then return "not_found" end
  if status == 409 then return "conflict" end
  if status == 429 then return "rate_limit" end
  return "api"
end

function _M.reason(status) return REASONS[status] or "HTTP error" end

-- Build the error for a non-2xx response.
--   status, body (string or nil), request_id, keep_null
-- Decisions (README "Where the docs are silent"):
--   * nested {"error": {code, message, details}} and {"detail": [...]} bodies
--     are both understood for every status; a `detail` list makes the kind
--     "validation" with err.fields = the list;
--   * the kind follows the status (kind_for_status); 400 is "validation" too;
--   * an empty body, or a non-JSON body on 408/429/5xx (e.g. a gateway's HTML
--     page), keeps the status' kind (408/5xx: "api"), retryable as the status;
--   * a non-empty non-JSON (or truncated) body on any other status is kind
--     "decode", with the status kept.
function _M.from_response(status, body, request_id, keep_null)
  local e = {
    status = status, request_id = request_id,
    retryable = _M.RETRYABLE_STATUS[status] == true,
    kind = _M.kind_for_status(status),
  }
  local decoded, derr
  if type(body) == "string" and string_find(body, "%S") then
    decoded, derr = json.decode(body, keep_null)
    if derr ~= nil and not e.retryable and status < 500 then
      e.kind = "decode"
      e.message = string_format("HTTP %d %s with a body that is not valid JSON (%s)",
        status, _M.reason(status), derr)
      return setmetatable(e, mt)
    end
  end
  if type(decoded) == "table" then
    local eo = decoded.error
    if type(eo) == "table" then
      if type(eo.code) == "string" or type(eo.code) == "number" then e.code = tostring(eo.code) end
      if type(eo.message) == "string" then e.message = eo.message end
      if type(eo.details) == "table" then e.details = eo.details end
    elseif type(eo) == "string" then
      e.message = eo
    end
    local detail = decoded.detail
    if type(detail) == "table" then
      e.kind = "validation"
      e.fields = detail
      if not e.message then
        local first = detail[1]
        e.message = (type(first) == "table" and type(first.msg) == "string")
          and (#detail == 1 and "request validation failed" or
               string_format("request validation failed (%d problems)", #detail))
          or "request validation failed"
      end
    elseif type(detail) == "string" and not e.message then
      e.message = detail                 -- FastAPI's {"detail": "Not Found"} form
    end
    if type(decoded.message) == "string" and not e.message then e.message = decoded.message end
  end
  if e.kind == "validation" and e.fields == nil then e.fields = {} end
  if not e.message then
    e.message = string_format("HTTP %d %s", status, _M.reason(status))
    if derr ~= nil then e.message = e.message .. " (body is not JSON)" end
  end
  return setmetatable(e, mt)
end

-- Build the error for a failed transfer (no usable response).
-- t: {kind = "network"|"timeout"|"tls"|"decode", message, curl_code, code, sent, retryable}
-- (any other kind becomes "network"; network/timeout are retryable unless
-- t.retryable == false; tls and decode never are)
function _M.from_transport(t)
  if type(t) == "string" then t = { kind = "network", message = t } end
  if type(t) ~= "table" then t = { kind = "network", message = tostring(t) } end
  if getmetatable(t) == mt then return t end
  local kind = t.kind
  if kind ~= "timeout" and kind ~= "tls" and kind ~= "decode" then kind = "network" end
  local retryable = kind == "network" or kind == "timeout"
  if t.retryable == false then retryable = false end
  local e = {
    kind = kind,
    message = type(t.message) == "string" and t.message or (kind .. " error"),
    code = t.curl_code and ("CURLE_" .. tostring(t.curl_code)) or t.code,
    curl_code = t.curl_code,
    retryable = retryable,
    sent = t.sent,
  }
  return setmetatable(e, mt)
end

-- Replace every occurrence of each secret (strings of >= 8 chars) in the
-- error's strings (message, details, fields, nested) by "<redacted>".
local function scrub(v, secrets, depth)
  if type(v) == "string" then
    for _, s in ipairs(secrets) do
      local i = 1
      while true do
        local a, b = string_find(v, s, i, true)
        if not a then break end
        v = string_sub(v, 1, a - 1) .. "<redacted>" .. string_sub(v, b + 1)
        i = a + 10
      end
    end
    return v
  elseif type(v) == "table" and depth < 16 and getmetatable(v) == nil then
    for k, x in pairs(v) do v[k] = scrub(x, secrets, depth + 1) end
  end
  return v
end

function _M.redact(e, secrets)
  local list = {}
  for _, s in ipairs(secrets) do
    if type(s) == "string" and #s >= 8 then list[#list + 1] = s end
  end
  if #list == 0 then return e end
  for k, v in pairs(e) do
    if k ~= "job" then e[k] = scrub(v, list, 0) end
  end
  return e
end

return _M
