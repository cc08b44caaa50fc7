-- ugen.webhook: the receiving side of U-Gen webhooks (and the sending side's
-- signature, for tests and the sandbox).
--
--   webhook.verify(secret, headers, raw_body[, {tolerance = 300, now = <epoch s>, decode = true,
--                  replay = <store>, replay_ttl = 2 * tolerance}])
--       -> event table (true with decode = false) | nil, err
--   webhook.verify({ new_secret, old_secret, ... }, headers, raw_body[, opts])
--       -> event (or true), index of the secret that matched | nil, err
--   webhook.memory_store{ max = 10000 } -> an in-process replay store for opts.replay
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
-- A list of secrets (rotation: the new one first) accepts a signature made
-- with any of them; every secret is compared against every signature, with no
-- early exit (the time depends on the number of secrets, not on which matched).
-- opts.replay: a store object with store:seen(key, ttl) -> boolean, an atomic
-- check-and-set: true when key was already recorded and has not expired,
-- otherwise record it for ttl seconds (whole, >= 1) and return false (or
-- nil, err when the store is down: verify then fails closed with code
-- REPLAY_STORE_UNAVAILABLE, retryable). Redis: SET key 1 NX EX ttl, seen when
-- the SET did not happen. The key is "ugen:sig:" .. the signature (the rule of
-- ugen.ngx.webhook_handler's dedupe): U-Gen signs every attempt afresh, so a
-- signature seen twice is a replay. It is recorded only for a delivery that
-- passes every other check, for opts.replay_ttl or 2 x tolerance seconds
-- (600 with tolerance = false); a replay is nil, err with err.kind ==
-- "signature", err.code == "REPLAYED".
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

local args = require "ugen.args"
local clock = require "ugen.clock"
local crypto = require "ugen.crypto"
local errors = require "ugen.errors"
local headers_mod = require "ugen.headers"
local json = require "ugen.json"

local type, pairs, ipairs, tostring, tonumber, rawget = type, pairs, ipairs, tostring, tonumber, rawget
local math_floor, math_abs, string_lower, string_match, string_gmatch, string_format =
  math.floor, math.abs, string.lower, string.match, string.gmatch, string.format
local string_find = string.find
local math_ceil, math_max, getmetatable, setmetatable = math.ceil, math.max, getmetatable, setmetatable

local argerror, describe = args.argerror, args.describe

local _M = {
  _VERSION = "0.1.0",
  SIGNATURE_HEADER = "X-UGen-Signature",
  TIMESTAMP_HEADER = "X-UGen-Timestamp",
  DEFAULT_TOLERANCE = 300,
}

local function fail(code, message)
  return nil, errors.new{ kind = "signature", code = code, message = message, retryable = false }
end

-- header names by ugen.headers' rule (memoized there; CGI-style HTTP_ names too)
local norm_name = headers_mod.normalize_received

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
-- decimal, below 2^53), or ISO-8601 UTC / with offset (2026-05-02T09:12:44Z;
-- ugen.clock.parse_iso8601: an impossible date such as 02-30 is nil).
local function parse_timestamp(s)
  if string_find(s, "^%d+$") then return unix_seconds(s) end   -- unix seconds: the common case
  local n = string_match(s, "^%s*(%d+%.?%d*)%s*$")
  if n then return unix_seconds(n) end
  return clock.parse_iso8601(s)
end
_M.parse_timestamp = parse_timestamp

local function check_secret(secret, fname)
  if type(secret) ~= "string" then
    argerror(1, fname, "string expected, got " .. type(secret), 3)
  end
  if secret == "" then
    argerror(1, fname, "webhook secret is empty", 3)
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
    argerror(2, "sign", "string or number expected, got " .. type(timestamp), 2)
  end
  if type(raw_body) ~= "string" then
    argerror(3, "sign", "string expected, got " .. type(raw_body), 2)
  end
  return signature(secret, ts_string(timestamp), raw_body)
end

function _M.headers(secret, raw_body, timestamp)
  check_secret(secret, "headers")
  if type(raw_body) ~= "string" then
    argerror(2, "headers", "string expected, got " .. type(raw_body), 2)
  end
  if timestamp == nil then timestamp = math_floor(clock.time()) end
  if type(timestamp) ~= "string" and type(timestamp) ~= "number" then
    argerror(3, "headers", "string or number expected, got " .. type(timestamp), 2)
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
      local n = norm_name(k)
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

local finite = args.is_finite

-- A tolerance as verify and ugen.ngx.webhook_handler take it: a finite number
-- >= 0, or false (no age check). NaN would disable the check silently, inf is
-- the same in disguise, and a negative one refuses everything.
function _M.valid_tolerance(t)
  return t == false or (finite(t) and t >= 0)
end

local function check_opts(opts)
  local tolerance, now = _M.DEFAULT_TOLERANCE, nil
  local decode, store, ttl = true, nil, nil
  if opts ~= nil then
    if type(opts) ~= "table" then
      argerror(4, "verify", "table expected, got " .. type(opts), 3)
    end
    if opts.tolerance ~= nil then
      tolerance = opts.tolerance
      if not _M.valid_tolerance(tolerance) then
        argerror(4, "verify", "opts.tolerance must be a finite number >= 0 or false, got " .. describe(tolerance), 3)
      end
    end
    if opts.now ~= nil then
      now = opts.now
      if not finite(now) then
        argerror(4, "verify", "opts.now must be a finite number (epoch seconds), got " .. describe(now), 3)
      end
    end
    if opts.decode ~= nil then
      if type(opts.decode) ~= "boolean" then
        argerror(4, "verify", "opts.decode must be a boolean, got " .. type(opts.decode), 3)
      end
      decode = opts.decode
    end
    store = opts.replay
    if store ~= nil then
      local ok = type(store) == "table" or type(store) == "userdata"
      local seen = ok and store.seen
      if not (type(seen) == "function" or (type(seen) == "table" and getmetatable(seen)
                                            and getmetatable(seen).__call)) then
        argerror(4, "verify", "opts.replay must be a store with a seen(key, ttl) method, got " .. describe(store), 3)
      end
    end
    ttl = opts.replay_ttl
    if ttl ~= nil and not (finite(ttl) and ttl > 0) then
      argerror(4, "verify", "opts.replay_ttl must be a positive number (seconds), got " .. describe(ttl), 3)
    end
  end
  return tolerance, now, decode, store, ttl
end

-- secret (string) or list of secrets -> list; raises at verify's caller
local function secret_list(secret)
  if type(secret) == "string" then
    check_secret(secret, "verify")
    return { secret }, false
  end
  if type(secret) ~= "table" then
    argerror(1, "verify", "string or list of strings expected, got " .. type(secret), 3)
  end
  local n = #secret
  if n == 0 then argerror(1, "verify", "the list of webhook secrets is empty", 3) end
  for i = 1, n do
    local s = secret[i]
    if type(s) ~= "string" or s == "" then
      argerror(1, "verify", "secret #" .. i .. " must be a non-empty string, got " .. describe(s), 3)
    end
  end
  return secret, true
end

-- The replay rule, shared with ugen.ngx.webhook_handler: a delivery is
-- identified by its signature (U-Gen signs every attempt afresh, so the same
-- signature twice is a replay, never a retry), kept for 2 x tolerance (a
-- timestamp is accepted from tolerance before it to tolerance after it), or
-- 600 s when the age check is off.
function _M.replay_key(sig)
  return "ugen:sig:" .. sig
end

function _M.replay_ttl(tolerance)
  if tolerance == false then return 600 end
  return 2 * tolerance
end

---------------------------------------------------------------------------
-- Replay stores

-- memory_store{ max = 10000, now = <seconds function> } -> store
-- In-process store for opts.replay: store:seen(key, ttl) records key for ttl
-- seconds and says whether it was already there (atomic within one Lua state).
-- Bounded: at most `max` live keys; expired keys go first, then (when every
-- key is still live) the oldest recorded one, so `max` should exceed the
-- deliveries expected within one ttl. Time from opts.now (default the
-- monotonic ugen.clock.now).
local MemoryStore = {}
MemoryStore.__index = MemoryStore
MemoryStore.__name = "ugen.webhook.memory_store"

function _M.memory_store(opts)
  local F = "memory_store"
  if opts ~= nil then args.check_table(opts, 1, F, 2) end
  opts = opts or {}
  args.check_keys(opts, 1, F, { max = true, now = true }, 2)
  local max = opts.max or 10000
  if not args.is_positive_integer(max) then
    argerror(1, F, "opts.max must be a positive integer, got " .. describe(max), 2)
  end
  local now = opts.now or clock.now
  if type(now) ~= "function" then argerror(1, F, "opts.now must be a function, got " .. type(now), 2) end
  -- expiry[key]: when it expires; qk/qe: keys and expiries in the order recorded
  -- (a key recorded again leaves its old entry behind: stale, skipped and compacted)
  return setmetatable({ max = max, now = now, expiry = {}, count = 0, qk = {}, qe = {}, head = 1, tail = 0 },
                      MemoryStore)
end

-- drop the oldest queue entry (and its key when the entry is the key's current one)
local function pop(self)
  local h = self.head
  local k, e = self.qk[h], self.qe[h]
  self.qk[h], self.qe[h] = nil, nil
  self.head = h + 1
  if self.expiry[k] == e then
    self.expiry[k] = nil
    self.count = self.count - 1
  end
end

-- rebuild the queue from the live keys (bounds it to `max` entries)
local function compact(self)
  local qk, qe, n = {}, {}, 0
  for i = self.head, self.tail do
    local k, e = self.qk[i], self.qe[i]
    if self.expiry[k] == e then n = n + 1; qk[n], qe[n] = k, e end
  end
  self.qk, self.qe, self.head, self.tail = qk, qe, 1, n
end

function MemoryStore:seen(key, ttl)
  if type(key) ~= "string" then argerror(1, "seen", "string expected, got " .. type(key), 2) end
  if not (finite(ttl) and ttl > 0) then argerror(2, "seen", "positive number expected, got " .. describe(ttl), 2) end
  local t = self.now()
  local expiry = self.expiry
  -- expired and stale entries at the front
  while self.head <= self.tail do
    local k, e = self.qk[self.head], self.qe[self.head]
    if expiry[k] == e and e > t then break end
    pop(self)
  end
  local e = expiry[key]
  if e and e > t then return true end
  if e == nil then self.count = self.count + 1 end
  expiry[key] = t + ttl
  self.tail = self.tail + 1
  self.qk[self.tail], self.qe[self.tail] = key, t + ttl
  while self.count > self.max do pop(self) end
  if self.tail - self.head + 1 > 2 * self.max then compact(self) end
  return false
end

-- number of keys held (live or expired but not yet dropped)
function MemoryStore:size()
  return self.count
end

-- The one implementation behind verify and ugen.ngx.webhook_handler.
--   secrets: a non-empty list of non-empty strings (checked by the caller)
-- -> event (true when not decode), index, signature, timestamp header
-- | nil, err, index (index: the secret that matched, when the failure came after it)
-- Every secret is tried against every signature given, with no early exit:
-- the time taken does not depend on which secret matched.
local function check(secrets, headers, raw_body, tolerance, now, decode)
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

  local n = #secrets
  local expected = {}
  for i = 1, n do
    local e, herr = signature(secrets[i], ts_raw, raw_body)
    if not e then return nil, herr end
    expected[i] = e
  end
  -- one signature as sent by U-Gen (64 lowercase hex digits): compared as it is;
  -- otherwise (prefixes, uppercase, several) every candidate is compared
  local matched
  if sig1 ~= nil then
    for i = 1, n do
      if crypto.consteq(expected[i], sig1) and not matched then matched = i end
    end
  end
  if not matched then
    local sigs = candidates(sig_values or { sig1 })
    if not sigs or #sigs == 0 then
      return fail("SIGNATURE_INVALID", "X-UGen-Signature is not a hex HMAC-SHA256 signature")
    end
    for i = 1, n do
      for _, s in ipairs(sigs) do
        if crypto.consteq(expected[i], s) and not matched then matched = i end
      end
    end
  end
  if not matched then
    return fail("SIGNATURE_MISMATCH", "X-UGen-Signature does not match the body and timestamp")
  end

  if tolerance ~= false then
    -- in floats: no 5.3/5.4 integer wrap-around, and %.0f formats any finite age
    local age = (now or clock.time()) + 0.0 - ts
    if age > tolerance or -age > tolerance then
      local _, err = fail("TIMESTAMP_OUT_OF_TOLERANCE", string_format(
        "X-UGen-Timestamp is %.0fs %s the current time (tolerance %gs)",
        math_abs(age), age >= 0 and "before" or "after", tolerance))
      return nil, err, matched
    end
  end

  if not decode then return true, matched, expected[matched], ts_raw end
  -- an event is a JSON object: the decoded table alone cannot tell [..] from {..}
  local event, derr = json.decode(raw_body)
  if derr ~= nil or type(event) ~= "table" or not string_find(raw_body, "^[ \t\r\n]*{") then
    return nil, errors.new{ kind = "decode", code = "BODY_INVALID", retryable = false,
      message = "webhook body is signed but is not a JSON object" .. (derr and (" (" .. derr .. ")") or "") },
      matched
  end
  return event, matched, expected[matched], ts_raw
end
_M.check = check

-- store:seen(key, ttl) -> false (recorded now), true (already there), or nil, err
local function check_replay(store, sig, ttl)
  local seen, serr = store:seen(_M.replay_key(sig), ttl)
  if seen == true then
    return fail("REPLAYED", "this signed delivery was already received")
  elseif seen == false then
    return true
  end
  return nil, errors.new{ kind = "signature", code = "REPLAY_STORE_UNAVAILABLE", retryable = true,
    message = "the replay store failed: " .. tostring(serr) }
end

function _M.verify(secret, headers, raw_body, opts)
  local secrets, is_list = secret_list(secret)
  if type(headers) ~= "table" then
    argerror(2, "verify", "table expected, got " .. type(headers), 2)
  end
  local tolerance, now, decode, store, ttl = check_opts(opts)
  local event, index, sig = check(secrets, headers, raw_body, tolerance, now, decode)
  if not event then return nil, index end
  if store then
    local ok, rerr = check_replay(store, sig, math_max(1, math_ceil(ttl or _M.replay_ttl(tolerance))))
    if not ok then return nil, rerr end
  end
  if is_list then return event, index end
  return event
end

return _M
