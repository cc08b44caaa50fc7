-- ugen.errors: the one error shape of the SDK.
--
-- Every public call returns `result` or `nil, err`; `err` is a table with this
-- module's metatable:
--   kind         "api" | "validation" | "rate_limit" | "insufficient_credits" |
--                "auth" | "not_found" | "conflict" | "network" | "timeout" |
--                "tls" | "decode" | "signature" | "job_failed" | "cancelled" | "io" |
--                "budget"
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
--   attempts     how many times the call was sent (set by the pipeline)
-- tostring(err) is one readable line and never contains a secret; after the
-- message it names the job (id, status, stage) of err.job, the credits
-- required and available of a 402, and the attempts of a network/timeout
-- error (of any error sent more than once). Control
-- characters (newlines, ESC, other C0 bytes, DEL, UTF-8-encoded C1) in the
-- fields are shown escaped ("\n", "\x1b", "\u009b"). The fields themselves
-- keep the server's text as sent (minus secrets, see "Secrets" below).

local type, pairs, ipairs, tostring, setmetatable, getmetatable, select =
  type, pairs, ipairs, tostring, setmetatable, getmetatable, select
local concat, sort, string_format, string_find, string_sub, string_lower, string_gsub, string_byte =
  table.concat, table.sort, string.format, string.find, string.sub, string.lower, string.gsub, string.byte
local math_floor, math_huge = math.floor, math.huge

local json = require "ugen.json"

local _M = { _VERSION = "0.1.0" }

_M.KINDS = {
  "api", "validation", "rate_limit", "insufficient_credits", "auth", "not_found", "conflict",
  "network", "timeout", "tls", "decode", "signature", "job_failed",
  "cancelled",  -- a scheduler task was cancelled (ugen.scheduler: task:cancel())
  "io",         -- a local file cannot be read or written (download target, upload file)
  "budget",     -- jobs:create's credit guard (opts.max_credits) refused the job: OVER_BUDGET
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

local CONTROL_ESCAPES = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function escape_byte(c) return CONTROL_ESCAPES[c] or string_format("\\x%02x", string_byte(c)) end
local function escape_c1(c) return string_format("\\u%04x", string_byte(c)) end

--- s with control characters escaped, for one-line display on a terminal:
-- C0 bytes and DEL as "\n", "\r", "\t" or "\xHH"; UTF-8-encoded C1 controls
-- (U+0080..U+009F: CSI, OSC, ...) as "\u00HH". Other bytes are kept.
local function escape_controls(s)
  if not string_find(s, "[%z\1-\31\127\194]") then return s end
  s = string_gsub(s, "[%z\1-\31\127]", escape_byte)
  return (string_gsub(s, "\194([\128-\159])", escape_c1))
end
_M.escape_controls = escape_controls

local secret_list, scrub_string   -- defined with the redaction below

-- 140 and 140.0 both as "140"; anything else as tostring gives it ("?" for nil)
local function number_text(v)
  if v == nil then return "?" end
  if type(v) == "number" and v == math_floor(v) and v > -2^53 and v < 2^53 then
    return string_format("%d", v)
  end
  return tostring(v)
end

-- kinds whose attempt count tostring shows even for a single attempt
local RETRIED_KINDS = { network = true, timeout = true }

function mt.__tostring(e)
  local list = secret_list()
  local function show(v) return escape_controls(scrub_string(tostring(v), list)) end
  local out = { "ugen: ", show(e.kind or "api"), " error" }
  if e.status then out[#out + 1] = " (HTTP " .. show(e.status) .. ")" end
  if e.code then out[#out + 1] = " " .. show(e.code) end
  out[#out + 1] = ": " .. show(e.message or "unknown error")
  if type(e.fields) == "table" and #e.fields > 0 then
    local list2 = {}
    for i, f in ipairs(e.fields) do
      if i > 5 then list2[#list2 + 1] = string_format("and %d more", #e.fields - 5); break end
      list2[#list2 + 1] = show(field_loc(f)) .. ": " .. show(type(f) == "table" and f.msg or f)
    end
    out[#out + 1] = " [" .. concat(list2, "; ") .. "]"
  end
  local job = e.job
  if type(job) == "table" then
    local facts = { "job " .. show(job.job_id or "?") }
    if job.status ~= nil then facts[#facts + 1] = "status " .. show(job.status) end
    if job.current_stage ~= nil then facts[#facts + 1] = "stage " .. show(job.current_stage) end
    out[#out + 1] = " (" .. concat(facts, ", ") .. ")"
  end
  local details = e.details
  if e.kind == "insufficient_credits" and type(details) == "table"
      and (details.required ~= nil or details.available ~= nil) then
    out[#out + 1] = string_format(" (credits required %s, available %s)",
      show(number_text(details.required)), show(number_text(details.available)))
  end
  local attempts = e.attempts
  if type(attempts) == "number" and (attempts > 1 or (attempts == 1 and RETRIED_KINDS[e.kind])) then
    out[#out + 1] = string_format(" (after %d attempt%s)", attempts, attempts == 1 and "" or "s")
  end
  if type(e.retry_after) == "number" then out[#out + 1] = string_format(" (retry after %gs)", e.retry_after) end
  if e.request_id then out[#out + 1] = " (request " .. show(e.request_id) .. ")" end
  return concat(out)
end

_M.mt = mt

-- errors.new{kind=, message=, ...} -> err (fields copied; retryable defaults to false)
function _M.new(t)
  local e = {}
  for k, v in pairs(t) do e[k] = v end
  if e.retryable == nil then e.retryable = false end
  return _M.redact(setmetatable(e, mt))
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

-- A 404 body that says the server has no route for the path (a wrong
-- base_url), not that an id is unknown: the sandbox's {"error": {"message":
-- "No route for GET /api/v2/..."}} and FastAPI's default {"detail": "Not
-- Found"} (the API answers an unknown id with an {"error": {...}} body).
local function is_route_miss(decoded)
  if type(decoded) ~= "table" then return false end
  local eo = decoded.error
  if type(eo) == "table" then
    return type(eo.message) == "string" and string_find(eo.message, "^No route for ") ~= nil
  end
  return eo == nil and decoded.detail == "Not Found"
end

-- Build the error for a non-2xx response.
--   status, body (string or nil), request_id, keep_null
-- Decisions (docs/api-choices.md):
--   * nested {"error": {code, message, details}} and {"detail": [...]} bodies
--     are both understood for every status; a `detail` list makes the kind
--     "validation" with err.fields = the list;
--   * the kind follows the status (kind_for_status); 400 is "validation" too;
--   * an empty body, or a non-JSON body on 408/429/5xx (e.g. a gateway's HTML
--     page), keeps the status' kind (408/5xx: "api"), retryable as the status;
--   * a non-empty non-JSON (or truncated) body on any other status is kind
--     "decode", with the status kept;
--   * a 404 whose body says the path has no route (is_route_miss) is kind
--     "api", code "ROUTE_NOT_FOUND", its message pointing at base_url: a
--     wrong base path must not read like a missing job.
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
      return _M.redact(setmetatable(e, mt))
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
  if status == 404 and is_route_miss(decoded) then
    e.kind, e.code = "api", "ROUTE_NOT_FOUND"
    e.message = (e.message or "HTTP 404 Not Found") .. " (the server has no such endpoint, whatever the id:"
      .. " check the client's base_url, whose path must be /api/v1, and the path called)"
  end
  if e.kind == "validation" and e.fields == nil then e.fields = {} end
  if not e.message then
    e.message = string_format("HTTP %d %s", status, _M.reason(status))
    if derr ~= nil then e.message = e.message .. " (body is not JSON)" end
  end
  return _M.redact(setmetatable(e, mt))
end

-- Build the error for a failed transfer (no usable response).
-- t: {kind = "network"|"timeout"|"tls"|"decode"|"io", message, curl_code, code, sent, retryable}
-- (any other kind becomes "network"; network/timeout are retryable unless
-- t.retryable == false; tls, decode and io (a local file cannot be read or
-- written) never are)
function _M.from_transport(t)
  if type(t) == "string" then t = { kind = "network", message = t } end
  if type(t) ~= "table" then t = { kind = "network", message = tostring(t) } end
  if getmetatable(t) == mt then return t end
  local kind = t.kind
  if kind ~= "timeout" and kind ~= "tls" and kind ~= "decode" and kind ~= "io" then kind = "network" end
  local retryable = kind == "network" or kind == "timeout"
  if t.retryable == false then retryable = false end
  local e = {
    kind = kind,
    message = type(t.message) == "string" and t.message or (kind .. " error"),
    code = t.code or (t.curl_code and ("CURLE_" .. tostring(t.curl_code))),
    curl_code = t.curl_code,
    retryable = retryable,
    sent = t.sent,
  }
  return _M.redact(setmetatable(e, mt))
end

---------------------------------------------------------------------------
-- Secrets and redaction
--
-- Every secret a client is configured with (api_key, jwt, credentials in its
-- base_url, credential headers) or has sent (any *_secret parameter, e.g.
-- webhooks:set's webhook_secret) is registered here under its owner (the
-- client, weakly held: the entry goes when the client is collected). Every
-- error this module builds (new, from_response, from_transport) is scrubbed
-- of every registered secret of every live owner, so an error made anywhere
-- in the SDK (jobs:wait's job_failed, downloads, the scheduler) is covered,
-- whatever client it came from. Scrubbing: each occurrence of a secret (as
-- given, and in its JSON-escaped form) in any string of the error, at any
-- depth, keys included, becomes "<redacted>"; values under secret-named keys
-- (webhook_secret, api_key, jwt, authorization, ...) and the `input` of a
-- validation problem about such a field are replaced whole, whatever their
-- type or length. Free-text search needs MIN_SECRET characters: a shorter
-- secret would turn ordinary words into "<redacted>".

local REDACTED = "<redacted>"
local MIN_SECRET = 8
_M.MIN_SECRET = MIN_SECRET

local owners = setmetatable({}, { __mode = "k" })   -- owner -> { [secret string] = true }

local SECRET_KEYS = {
  api_key = true, apikey = true, ["api-key"] = true, x_api_key = true, ["x-api-key"] = true, jwt = true,
  authorization = true, ["proxy-authorization"] = true, proxy_authorization = true, cookie = true,
  password = true, passwd = true, secret = true,
}

-- A key naming a secret: the list above (any case) or anything ending in "secret"/"password".
local function is_secret_key(k)
  if type(k) ~= "string" then return false end
  local l = string_lower(k)
  return SECRET_KEYS[l] == true or string_find(l, "secret$") ~= nil or string_find(l, "password$") ~= nil
end
_M.is_secret_key = is_secret_key

-- The text forms of a secret value that can appear in a message: the string
-- as given and JSON-escaped; a number as Lua, JSON and %.17g print it.
local function forms_of(v, out)
  if type(v) == "number" then
    if v ~= v or v == math_huge or v == -math_huge then return out end
    local list = { tostring(v), json.encode(v), string_format("%.17g", v) }
    if v == math_floor(v) and v > -2^63 and v < 2^63 then list[#list + 1] = string_format("%d", v) end
    for _, x in ipairs(list) do if type(x) == "string" then forms_of(x, out) end end
    return out
  end
  if type(v) ~= "string" or #v < MIN_SECRET then return out end
  out[v] = true
  local j = json.encode(v)
  if type(j) == "string" then
    j = string_sub(j, 2, -2)
    if j ~= v then out[j] = true end
  end
  return out
end

--- Register secret values (strings or numbers; anything else is ignored) for owner.
function _M.add_secrets(owner, ...)
  local set = owners[owner]
  if not set then
    set = {}
    owners[owner] = set
  end
  for i = 1, select("#", ...) do forms_of((select(i, ...)), set) end
end

local function longest_first(a, b) return #a > #b end

local function sorted(set)
  local list = {}
  for v in pairs(set) do list[#list + 1] = v end
  if #list > 1 then sort(list, longest_first) end
  return list
end

--- The text forms of the given values only (no registered ones), longest
-- first: the list scrub_string takes.
function _M.secret_forms(values)
  local set = {}
  for _, v in ipairs(values) do forms_of(v, set) end
  return sorted(set)
end

-- Every registered secret (plus extra), longest first so a secret that holds
-- another is replaced whole.
secret_list = function(extra)
  local set = {}
  for _, s in pairs(owners) do
    for v in pairs(s) do set[v] = true end
  end
  if extra then
    for _, v in ipairs(extra) do forms_of(v, set) end
  end
  return sorted(set)
end
_M.secret_list = secret_list

-- s with every occurrence of each secret in list replaced by "<redacted>".
scrub_string = function(s, list)
  for i = 1, #list do
    local sec = list[i]
    local a = string_find(s, sec, 1, true)
    if a then
      local parts, from = {}, 1
      while a do
        parts[#parts + 1] = string_sub(s, from, a - 1)
        parts[#parts + 1] = REDACTED
        from = a + #sec
        a = string_find(s, sec, from, true)
      end
      parts[#parts + 1] = string_sub(s, from)
      s = concat(parts)
    end
  end
  return s
end
_M.scrub_string = scrub_string

-- v with secrets scrubbed; tables are copied where something changes (the
-- caller's tables, e.g. the job in err.job, are never modified). Plain
-- tables, JSON arrays and nested errors are walked; other objects are kept.
local scrub
scrub = function(v, list, depth)
  local tv = type(v)
  if tv == "string" then return scrub_string(v, list) end
  if tv ~= "table" or depth > 32 then return v end
  local m = getmetatable(v)
  if m ~= nil and m ~= mt and not json.is_array(v) then return v end
  local copy
  for k, x in pairs(v) do
    local nk = type(k) == "string" and scrub_string(k, list) or k
    local nx
    if is_secret_key(k) and (type(x) == "string" or type(x) == "number") then
      nx = REDACTED
    else
      nx = scrub(x, list, depth + 1)
    end
    if nk ~= k or nx ~= x then
      if not copy then
        copy = {}
        for k2, x2 in pairs(v) do copy[k2] = x2 end
      end
      if nk ~= k then copy[k] = nil end
      copy[nk] = nx
    end
  end
  -- a validation problem about a secret field: its input is the secret (a
  -- table input was walked above)
  local loc, input = v.loc, v.input
  if type(loc) == "table" and input ~= nil and input ~= REDACTED and type(input) ~= "table"
      and is_secret_key(loc[#loc]) then
    if not copy then
      copy = {}
      for k2, x2 in pairs(v) do copy[k2] = x2 end
    end
    copy.input = REDACTED
  end
  if copy then return setmetatable(copy, m) end
  return v
end

--- Scrub err in place (every field, any depth; tables are replaced by scrubbed
-- copies) of every registered secret and of `extra` (a list of values). Returns err.
function _M.redact(e, extra)
  local list = secret_list(extra)
  for k, v in pairs(e) do
    local nv
    if is_secret_key(k) and (type(v) == "string" or type(v) == "number") then
      nv = REDACTED
    else
      nv = scrub(v, list, 0)
    end
    if nv ~= v then e[k] = nv end
  end
  return e
end

return _M
