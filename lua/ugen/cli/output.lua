-- ugen.cli.output: how `ugen` prints results and errors.
--
-- Human output: "key: value" lines (nested tables indented, arrays as "- "
-- items), with the job's important keys first; tables of rows for lists.
-- Machine output (--json): one JSON document per command on stdout.
-- Secrets are never printed: keys named like a secret are redacted in every
-- table shown, and error lines are built from the error's fields only.
-- Server data never drives the terminal: in human output every string from a
-- result or an error (keys too) has its control characters escaped ("\n",
-- "\x1b", "\u009b": ugen.errors.escape_controls); JSON output escapes C0 and
-- DEL (cjson) and UTF-8-encoded C1 controls ("\u009b") as well, and prints
-- "/" unescaped (see json_text).

local json = require "ugen.json"
local errors = require "ugen.errors"

local escape_controls = errors.escape_controls

local _M = { _VERSION = "0.1.0" }

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local concat, sort = table.concat, table.sort
local string_format, string_rep = string.format, string.rep

-- Keys shown first, in this order, when present.
local FIRST = {
  "event", "job_id", "id", "status", "current_stage", "progress_percent", "final_video_url",
  "thumbnail_url", "credits_consumed", "error_message", "product_name", "video_model",
  "segment_count", "total_credits", "credit_balance", "credit_reserved", "available_credits",
  "webhook_configured", "webhook_url", "created_at", "updated_at", "completed_at", "timestamp",
}
local RANK = {}
for i, k in ipairs(FIRST) do RANK[k] = i end

-- A key naming a secret (its value is never printed): the SDK's rule, the
-- one its errors are redacted by.
local is_secret_key = errors.is_secret_key

local function is_array(t)
  if json.is_array(t) then return true end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  if n == 0 then return false end
  for i = 1, n do
    if t[i] == nil then return false end
  end
  return true
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  sort(keys, function(a, b)
    local ra, rb = RANK[a], RANK[b]
    if ra and rb then return ra < rb end
    if ra then return true end
    if rb then return false end
    return tostring(a) < tostring(b)
  end)
  return keys
end

-- Copy of v with secret-named keys replaced by "<redacted>" (for output).
local function redacted(v, depth)
  depth = depth or 0
  if type(v) ~= "table" or depth > 32 then return v end
  local out = {}
  for k, x in pairs(v) do
    if is_secret_key(k) and x ~= nil and x ~= json.null then
      out[k] = "<redacted>"
    else
      out[k] = redacted(x, depth + 1)
    end
  end
  if json.is_array(v) then json.array(out) end
  return out
end

--- A value from server data as one line of text, control characters escaped.
local function scalar(v)
  if v == json.null or v == nil then return "null" end
  if type(v) == "string" then return escape_controls(v) end
  if type(v) == "number" then
    if v == math.floor(v) and v > -1e15 and v < 1e15 then return string_format("%d", v) end
    return tostring(v)
  end
  return tostring(v)
end

_M.scalar = scalar

local function emit(lines, v, indent, depth)
  local pad = string_rep("  ", indent)
  if depth > 32 then lines[#lines + 1] = pad .. "..."; return end
  if is_array(v) then
    for _, x in ipairs(v) do
      if type(x) == "table" and next(x) ~= nil then
        -- YAML style: the item's first line follows the dash
        local first = #lines + 1
        emit(lines, x, indent + 1, depth + 1)
        lines[first] = pad .. "- " .. lines[first]:sub(#pad + 3)
      elseif type(x) == "table" then
        lines[#lines + 1] = pad .. "- " .. (json.is_array(x) and "[]" or "{}")
      else
        lines[#lines + 1] = pad .. "- " .. scalar(x)
      end
    end
    return
  end
  for _, k in ipairs(sorted_keys(v)) do
    local x = v[k]
    if type(x) == "table" and x ~= json.null then
      if next(x) == nil then
        lines[#lines + 1] = pad .. escape_controls(tostring(k)) .. ": " .. (json.is_array(x) and "[]" or "{}")
      else
        lines[#lines + 1] = pad .. escape_controls(tostring(k)) .. ":"
        emit(lines, x, indent + 1, depth + 1)
      end
    else
      lines[#lines + 1] = pad .. escape_controls(tostring(k)) .. ": " .. scalar(x)
    end
  end
end

--- Human "key: value" text for a table (secrets redacted).
function _M.format(v)
  if type(v) ~= "table" then return scalar(v) end
  local lines = {}
  emit(lines, redacted(v), 0, 0)
  return concat(lines, "\n")
end

local function c1_escape(c) return string_format("\\u%04x", c:byte()) end

-- The one JSON encoder of the CLI's output (every --json document, the
-- sandbox's and new-secret's raw documents): ugen.json (cjson), then
--   * "/" is printed as "/", not "\/": JSON never requires escaping it
--     (RFC 8259 section 7), and a URL in --json output stays a URL that grep,
--     copy-paste and `cut` see as such. (Escaping it only matters inside an
--     HTML <script>, which is not where a terminal's output goes.) cjson
--     escapes every "/" and nothing else can precede one with a backslash, so
--     dropping the backslash before each "/" is exact;
--   * UTF-8-encoded C1 controls (only possible inside strings) become
--     \u0080..\u009f, as cjson does for C0 and DEL, so no byte of the output
--     drives a terminal.
-- nil, message when v cannot be encoded.
local function encode(v)
  local s, err = json.encode(v)
  if not s then return nil, err end
  if s:find("/", 1, true) then s = s:gsub("\\/", "/") end
  if s:find("\194", 1, true) then s = s:gsub("\194([\128-\159])", c1_escape) end
  return s
end

--- JSON text for v as it is (no redaction): for values meant to be shown.
-- Never raises; an unencodable value gives an error object.
function _M.json_text(v)
  local s, err = encode(v)
  if not s then
    return encode({ error = { kind = "decode", message = "cannot encode output: " .. tostring(err) } })
  end
  return s
end

--- JSON text for v (secrets redacted). Never raises; unencodable values give an error object.
function _M.to_json(v)
  return _M.json_text(redacted(v))
end

--- Rows as an aligned text table. cols = { {key, title}, ... }
function _M.table(rows, cols)
  local widths, cells = {}, {}
  for c, col in ipairs(cols) do widths[c] = #col[2] end
  for r, row in ipairs(rows) do
    cells[r] = {}
    for c, col in ipairs(cols) do
      local v = row[col[1]]
      local s = (v == nil or v == json.null) and "-" or scalar(v)
      if type(v) == "table" and v ~= json.null then s = _M.to_json(v) end
      if is_secret_key(col[1]) then s = "<redacted>" end
      cells[r][c] = s
      if #s > widths[c] then widths[c] = #s end
    end
  end
  local lines = {}
  local head = {}
  for c, col in ipairs(cols) do head[c] = col[2] .. string_rep(" ", widths[c] - #col[2]) end
  lines[1] = (concat(head, "  "):gsub("%s+$", ""))
  for r = 1, #rows do
    local parts = {}
    for c = 1, #cols do parts[c] = cells[r][c] .. string_rep(" ", widths[c] - #cells[r][c]) end
    lines[#lines + 1] = (concat(parts, "  "):gsub("%s+$", ""))
  end
  return concat(lines, "\n")
end

local function field_loc(f)
  if type(f) ~= "table" or type(f.loc) ~= "table" then return "?" end
  local parts = {}
  for i, p in ipairs(f.loc) do
    if not (i == 1 and #f.loc > 1 and (p == "body" or p == "query" or p == "path" or p == "form")) then
      parts[#parts + 1] = tostring(p)
    end
  end
  return concat(parts, ".")
end

--- The kind of an error value (SDK error table, string, anything).
function _M.kind_of(err)
  if type(err) == "table" and type(err.kind) == "string" then return err.kind end
  return "error"
end

--- One line for an SDK error: "<kind>: <message> (HTTP 429, CODE, retry after 5s)".
-- Built from the error's fields (never from request data), so no secret can appear.
function _M.error_text(err)
  if type(err) ~= "table" then
    return escape_controls(tostring(err))
  end
  local kind = _M.kind_of(err)
  local msg = err.message ~= nil and tostring(err.message) or nil
  if not msg then
    local ok, s = pcall(tostring, err)
    msg = ok and s or "unknown error"
  end
  local parts = { kind .. ": " .. msg }
  if type(err.fields) == "table" and #err.fields > 0 then
    local list = {}
    for i, f in ipairs(err.fields) do
      if i > 5 then list[#list + 1] = string_format("and %d more", #err.fields - 5); break end
      list[#list + 1] = field_loc(f) .. ": " .. tostring(type(f) == "table" and f.msg or f)
    end
    parts[#parts + 1] = ": " .. concat(list, "; ")
  end
  local facts = {}
  if err.status then facts[#facts + 1] = "HTTP " .. tostring(err.status) end
  if err.code and tostring(err.code) ~= "" then facts[#facts + 1] = tostring(err.code) end
  if kind == "insufficient_credits" and type(err.details) == "table" then
    if err.details.required then facts[#facts + 1] = "required " .. scalar(err.details.required) end
    if err.details.available then facts[#facts + 1] = "available " .. scalar(err.details.available) end
  end
  if err.retry_after then facts[#facts + 1] = string_format("retry after %gs", err.retry_after) end
  if err.request_id then facts[#facts + 1] = "request " .. tostring(err.request_id) end
  if #facts > 0 then parts[#parts + 1] = " (" .. concat(facts, ", ") .. ")" end
  return escape_controls(concat(parts))
end

--- JSON-able table for an error (for --json): kind, message, status, code, ...
function _M.error_table(err)
  if type(err) ~= "table" then return { error = { kind = "error", message = tostring(err) } } end
  local e = {
    kind = _M.kind_of(err), message = err.message and tostring(err.message) or _M.error_text(err),
    status = err.status, code = err.code, details = err.details, fields = err.fields,
    retry_after = err.retry_after, request_id = err.request_id, retryable = err.retryable,
  }
  if type(err.job) == "table" then e.job = err.job end
  return { error = e }
end

return _M
