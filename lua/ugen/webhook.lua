-- ugen.webhook: the receiving side of U-Gen webhooks (and the sending side's
-- signature, for tests and the sandbox).
--
--   webhook.verify(secret, headers, raw_body[, {tolerance = 300, now = <epoch s>, decode = true}])
--       -> event table (true with decode = false) | nil, err
--   webhook.sign(secret, timestamp, raw_body) -> lowercase hex signature
--   webhook.headers(secret, raw_body[, timestamp]) -> {["X-UGen-Timestamp"]=, ["X-UGen-Signature"]=}
--   webhook.new_secret() -> 64 hex characters (32 CSPRNG bytes)
--
-- Scheme (UGEN-API.md 11.4): X-UGen-Signature = hex(HMAC-SHA256(secret,
-- X-UGen-Timestamp .. "." .. raw_body)). The secret string's bytes are the key
-- (it is not hex-decoded); the timestamp header is signed verbatim.
--
-- verify fails closed: a missing or garbled header, a non-string body, a
-- signature that does not match (compared in constant time) or a timestamp
-- outside the tolerance is `nil, err` with err.kind == "signature" and err.code
-- one of SIGNATURE_MISSING, SIGNATURE_INVALID, SIGNATURE_MISMATCH,
-- TIMESTAMP_MISSING, TIMESTAMP_INVALID, TIMESTAMP_OUT_OF_TOLERANCE, BODY_INVALID.
-- A unix-seconds timestamp of 2^53 or more (no real time; not exact as a
-- double) is TIMESTAMP_INVALID on every Lua version.
-- A correctly signed body that is not a JSON object (not JSON, or an array,
-- string, number, true/false or null) is err.kind == "decode", code BODY_INVALID.
-- With opts.decode == false the body is authenticated only and verify returns
-- true (for receivers that queue the raw body, or decode it with their own JSON).
-- opts are checked first and raise at the call site: opts.now must be a finite
-- number (epoch seconds), opts.tolerance a finite number >= 0 or false (false
-- is the one way to turn the age check off; NaN, +-inf and negatives raise).
-- The secret's HMAC key schedule is cached (crypto.hmac_hex), so checking
-- every delivery with the same secret does not set the key up again.
--
-- Headers are looked up case-insensitively in any of the shapes servers give:
-- a plain table {["X-UGen-Signature"] = "..."}; nginx's ngx.req.get_headers()
-- (lowercase names, a list of strings for repeated headers); CGI-style names
-- (HTTP_X_UGEN_SIGNATURE); a list of {name, value} pairs; a flat list
-- {"name", "value", ...}. Signatures may carry a "sha256=" or "v1=" prefix, may
-- be uppercase hex, and several may be given (repeated header, or separated by
-- commas/spaces): verification passes when any of them matches.

local crypto = require "ugen.crypto"
local errors = require "ugen.errors"
local json = require "ugen.json"
local retry = require "ugen.retry"
-- wall-clock seconds from the C core (the C core: through ugen.native once it lands, issue 13 item 3)
local function wall_time() return require("ugen.core").time() end

local type, pairs, ipairs, tostring, tonumber, error, rawget = type, pairs, ipairs, tostring, tonumber, error, rawget
local math_floor, math_abs, math_huge, string_lower, string_gsub, string_match, string_gmatch, string_format,
  string_sub = math.floor, math.abs, math.huge, string.lower, string.gsub, string.match, string.gmatch,
  string.format, string.sub
local string_find = string.find

local _M = {
  _VERSION = "0.1.0",
  SIGNATURE_HEADER = "X-UGen-Signature",
  TIMESTAMP_HEADER = "X-UGen-Timestamp",
  DEFAULT_TOLERANCE = 300,
}

local function fail(code, message)
  return nil, errors.new{ kind = "signature", code = code, message = message, retryable = false }
end

-- memoized (bounded: dropped at NORM_MAX entries): header names repeat on every delivery
local NORM_MAX = 256
local norm_cache, norm_count = {}, 0
local function norm_name(name)
  local n = norm_cache[name]
  if n then return n end
  n = string_gsub(string_lower(name), "_", "-")
  if string_sub(n, 1, 5) == "http-" then n = string_sub(n, 6) end
  if norm_count >= NORM_MAX then norm_cache, norm_count = {}, 0 end
  norm_cache[name] = n
  norm_count = norm_count + 1
  return n
end

-- All values (strings) of header `want` (normalized name) in any supported shape.
local function header_values(headers, want)
  local out = {}
  local function add(v)
    if type(v) == "string" then
      out[#out + 1] = v
    elseif type(v) == "number" then
      out[#out + 1] = tostring(v)
    elseif type(v) == "table" then
      for _, x in ipairs(v) do add(x) end
    end
  end
  -- rawget: some header tables have an __index that only expects string keys
  local first = rawget(headers, 1)
  if type(first) == "string" then                          -- flat list
    for i = 1, #headers - 1, 2 do
      if type(headers[i]) == "string" and norm_name(headers[i]) == want then add(headers[i + 1]) end
    end
  elseif type(first) == "table" then                       -- list of pairs
    for _, p in ipairs(headers) do
      if type(p) == "table" then
        local n, v = p[1] or p.name, p[2] or p.value
        if type(n) == "string" and norm_name(n) == want then add(v) end
      end
    end
  end
  for k, v in pairs(headers) do
    if type(k) == "string" and norm_name(k) == want then add(v) end
  end
  return out
end
_M.header_values = header_values

-- Unix seconds at or above this are no time at all (and 2^63 and up do not
-- fit a 5.3/5.4 integer): refused as invalid, identically on every version.
local TS_LIMIT = 2^53

local function unix_seconds(s)
  local t = tonumber(s)
  if t and t < TS_LIMIT then return t end                  -- false for inf too
  return nil
end

-- Timestamp header -> epoch seconds, or nil. Unix seconds (integer or
-- decimal, below 2^53), or ISO-8601 UTC / with offset (2026-05-02T09:12:44Z).
local function parse_timestamp(s)
  if string_find(s, "^%d+$") then return unix_seconds(s) end   -- unix seconds: the common case
  s = string_match(s, "^%s*(.-)%s*$")
  if string_match(s, "^%d+%.?%d*$") then return unix_seconds(s) end
  local y, mo, d, hh, mm, ss, frac, zone = string_match(s,
    "^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(%.?%d*)(.*)$")
  if not y then return nil end
  y, mo, d, hh, mm, ss = tonumber(y), tonumber(mo), tonumber(d), tonumber(hh), tonumber(mm), tonumber(ss)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or hh > 23 or mm > 59 or ss > 60 then return nil end
  local t = retry.days_from_civil(y, mo, d) * 86400 + hh * 3600 + mm * 60 + ss
  if frac ~= "" then
    if frac == "." then return nil end
    t = t + tonumber("0" .. frac)
  end
  if zone == "Z" or zone == "z" then return t end
  local sign, oh, om = string_match(zone, "^([%+%-])(%d%d):?(%d%d)$")
  if not sign then return nil end
  local off = tonumber(oh) * 3600 + tonumber(om) * 60
  if sign == "+" then return t - off end
  return t + off
end
_M.parse_timestamp = parse_timestamp

local function check_secret(secret, fname)
  if type(secret) ~= "string" then
    error(string_format("bad argument #1 to '%s' (string expected, got %s)", fname, type(secret)), 3)
  end
  if secret == "" then
    error(string_format("bad argument #1 to '%s' (webhook secret is empty)", fname), 3)
  end
end

-- The scheme: hex HMAC-SHA256(secret, timestamp .. "." .. body), the key set up
-- once per secret (crypto.hmac_hex), no concatenated copy of the body.
local function signature(secret, ts, raw_body)
  return crypto.hmac_hex(secret, ts, ".", raw_body)
end

local function ts_string(ts)
  if type(ts) == "number" then
    if ts == math_floor(ts) and math_abs(ts) < 2^53 then return string_format("%d", ts) end
    return string_format("%.3f", ts)
  end
  return ts
end

function _M.sign(secret, timestamp, raw_body)
  check_secret(secret, "sign")
  if type(timestamp) ~= "string" and type(timestamp) ~= "number" then
    error("bad argument #2 to 'sign' (string or number expected, got " .. type(timestamp) .. ")", 2)
  end
  if type(raw_body) ~= "string" then
    error("bad argument #3 to 'sign' (string expected, got " .. type(raw_body) .. ")", 2)
  end
  return signature(secret, ts_string(timestamp), raw_body)
end

function _M.headers(secret, raw_body, timestamp)
  check_secret(secret, "headers")
  if type(raw_body) ~= "string" then
    error("bad argument #2 to 'headers' (string expected, got " .. type(raw_body) .. ")", 2)
  end
  if timestamp == nil then timestamp = math_floor(wall_time()) end
  if type(timestamp) ~= "string" and type(timestamp) ~= "number" then
    error("bad argument #3 to 'headers' (string or number expected, got " .. type(timestamp) .. ")", 2)
  end
  local ts = ts_string(timestamp)
  return {
    [_M.TIMESTAMP_HEADER] = ts,
    [_M.SIGNATURE_HEADER] = signature(secret, ts, raw_body),
  }
end

function _M.new_secret()
  return crypto.new_secret()
end

-- Candidate signatures from the header values: split on commas/whitespace,
-- strip a sha256= / v1= prefix, lowercase; nil when one is not 64 hex digits.
local function candidates(values)
  local out = {}
  for _, v in ipairs(values) do
    for item in string_gmatch(v, "[^,%s]+") do
      local low = string_lower(item)
      local hex = string_match(low, "^sha256=(.*)$") or string_match(low, "^v1=(.*)$") or low
      if #hex ~= 64 or string_match(hex, "[^0-9a-f]") then return nil end
      out[#out + 1] = hex
    end
  end
  return out
end

local SIG_NAME, TS_NAME = "x-ugen-signature", "x-ugen-timestamp"

-- The common shape in one pass: a map with exactly one string value for each of
-- the two headers. Returns sig, ts (either may be nil when absent), or false
-- when the table needs the general path (list shapes, repeated or non-string
-- values), which then decides with header_values.
local function simple_headers(headers)
  if rawget(headers, 1) ~= nil then return false end
  local sig, ts
  for k, v in pairs(headers) do
    if type(k) == "string" then
      local n = norm_cache[k] or norm_name(k)
      if n == SIG_NAME then
        if sig ~= nil or type(v) ~= "string" then return false end
        sig = v
      elseif n == TS_NAME then
        if ts ~= nil or type(v) ~= "string" then return false end
        ts = v
      end
    end
  end
  return sig, ts
end

local function finite(x)
  return type(x) == "number" and x == x and x ~= math_huge and x ~= -math_huge
end

-- A tolerance as verify and ugen.ngx.webhook_handler take it: a finite number
-- >= 0, or false (no age check). NaN would disable the check silently, inf is
-- the same in disguise, and a negative one refuses everything.
function _M.valid_tolerance(t)
  return t == false or (finite(t) and t >= 0)
end

local function check_opts(opts)
  local tolerance, now = _M.DEFAULT_TOLERANCE, nil
  local decode = true
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("bad argument #4 to 'verify' (table expected, got " .. type(opts) .. ")", 3)
    end
    if opts.tolerance ~= nil then
      tolerance = opts.tolerance
      if not _M.valid_tolerance(tolerance) then
        error("bad argument #4 to 'verify' (opts.tolerance must be a finite number >= 0 or false, got "
          .. (type(tolerance) == "number" and tostring(tolerance) or type(tolerance)) .. ")", 3)
      end
    end
    if opts.now ~= nil then
      now = opts.now
      if not finite(now) then
        error("bad argument #4 to 'verify' (opts.now must be a finite number (epoch seconds), got "
          .. (type(now) == "number" and tostring(now) or type(now)) .. ")", 3)
      end
    end
    if opts.decode ~= nil then
      if type(opts.decode) ~= "boolean" then
        error("bad argument #4 to 'verify' (opts.decode must be a boolean, got " .. type(opts.decode) .. ")", 3)
      end
      decode = opts.decode
    end
  end
  return tolerance, now, decode
end

function _M.verify(secret, headers, raw_body, opts)
  check_secret(secret, "verify")
  if type(headers) ~= "table" then
    error("bad argument #2 to 'verify' (table expected, got " .. type(headers) .. ")", 2)
  end
  local tolerance, now, decode = check_opts(opts)

  if type(raw_body) ~= "string" then
    return fail("BODY_INVALID", "webhook body must be the raw request body string, got " .. type(raw_body))
  end

  -- sig_values/ts_raw: the header values; sig1: the only signature value when there is one
  local sig1, ts_raw = simple_headers(headers)
  local sig_values, ts_conflict
  if sig1 == false then
    sig_values = header_values(headers, SIG_NAME)
    sig1 = #sig_values == 1 and sig_values[1] or nil
    local ts_values = header_values(headers, TS_NAME)
    for i = 2, #ts_values do
      if ts_values[i] ~= ts_values[1] then ts_conflict = true end
    end
    ts_raw = ts_values[1]
    if #sig_values == 0 then
      return fail("SIGNATURE_MISSING", "missing X-UGen-Signature header")
    end
  elseif sig1 == nil then
    return fail("SIGNATURE_MISSING", "missing X-UGen-Signature header")
  end
  if ts_raw == nil then
    return fail("TIMESTAMP_MISSING", "missing X-UGen-Timestamp header")
  end
  if ts_conflict then
    return fail("TIMESTAMP_INVALID", "several different X-UGen-Timestamp headers")
  end
  local ts = parse_timestamp(ts_raw)
  if not ts then
    if string_find(ts_raw, "^%s*%d+%.?%d*%s*$") then
      return fail("TIMESTAMP_INVALID", "X-UGen-Timestamp is out of range (unix seconds must be below 2^53)")
    end
    return fail("TIMESTAMP_INVALID", "X-UGen-Timestamp is neither unix seconds nor ISO-8601")
  end

  local expected, herr = signature(secret, ts_raw, raw_body)
  if not expected then return nil, herr end
  -- one signature as sent by U-Gen (64 lowercase hex digits): compared as it is;
  -- otherwise (prefixes, uppercase, several) every candidate is compared, with no early exit
  local ok = sig1 ~= nil and crypto.consteq(expected, sig1)
  if not ok then
    local sigs = candidates(sig_values or { sig1 })
    if not sigs or #sigs == 0 then
      return fail("SIGNATURE_INVALID", "X-UGen-Signature is not a hex HMAC-SHA256 signature")
    end
    for _, s in ipairs(sigs) do
      if crypto.consteq(expected, s) then ok = true end
    end
  end
  if not ok then
    return fail("SIGNATURE_MISMATCH", "X-UGen-Signature does not match the body and timestamp")
  end

  if tolerance ~= false then
    -- in floats: no 5.3/5.4 integer wrap-around, and %.0f formats any finite age
    local age = (now or wall_time()) + 0.0 - ts
    if age > tolerance or -age > tolerance then
      return fail("TIMESTAMP_OUT_OF_TOLERANCE", string_format(
        "X-UGen-Timestamp is %.0fs %s the current time (tolerance %gs)",
        math_abs(age), age >= 0 and "before" or "after", tolerance))
    end
  end

  if not decode then return true end
  -- an event is a JSON object: the decoded table alone cannot tell [..] from {..}
  local event, derr = json.decode(raw_body)
  if derr ~= nil or type(event) ~= "table" or not string_find(raw_body, "^[ \t\r\n]*{") then
    return nil, errors.new{ kind = "decode", code = "BODY_INVALID", retryable = false,
      message = "webhook body is signed but is not a JSON object" .. (derr and (" (" .. derr .. ")") or "") }
  end
  return event
end

return _M
