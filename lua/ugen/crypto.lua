-- ugen.crypto: the SDK's primitives over the C core (OpenSSL).
--
--   crypto.hmac_sha256(key, msg)  -> 64 lowercase hex characters
--   crypto.hmac_hex(key, part, ...) -> the same over the concatenated parts,
--                                    with the key's schedule cached (a few keys)
--   crypto.consteq(a, b)          -> boolean, time independent of content
--   crypto.random_bytes(n)        -> n CSPRNG bytes | nil, err
--   crypto.uuid4()                -> "xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx"
--   crypto.new_secret()           -> 64 hex characters (32 random bytes)

local args = require "ugen.args"
local native = require "ugen.native"

local type, pairs, error, setmetatable = type, pairs, error, setmetatable
local string_byte, string_char, string_format, string_sub = string.byte, string.char, string.format, string.sub

local _M = { _VERSION = "0.1.0" }

local hmac_key, random_bytes, hex = native.hmac_key, native.random_bytes, native.hex

_M.hmac_sha256 = native.hmac_sha256
_M.consteq = native.consteq
_M.random_bytes = random_bytes
_M.hex = hex

-- Keyed contexts (ugen.hmac_key) for the last few keys: a webhook receiver checks every delivery
-- with the same secret (two while rotating), and setting a key up costs more than hashing 1 KiB.
-- Bounded: at KEYS_MAX keys all are closed (their key material cleansed) and the cache restarts.
-- Weak values: a keyed context nobody uses is collected (and cleansed by its __gc) at the next
-- garbage collection, and its entry, with the secret as its key, goes with it; the cache never
-- keeps a secret alive that its owner has dropped.
local KEYS_MAX = 8
local WEAK_VALUES = { __mode = "v" }
local keys, nkeys = setmetatable({}, WEAK_VALUES), 0

function _M.hmac_hex(key, ...)
  local k = keys[key]
  if not k then
    if type(key) ~= "string" or key == "" then
      args.argerror(1, "hmac_hex", "non-empty string expected, got " .. args.describe_type(key), 2)
    end
    local err
    k, err = hmac_key(key)
    if not k then return nil, err end
    if nkeys >= KEYS_MAX then
      for _, old in pairs(keys) do old:close() end
      keys, nkeys = setmetatable({}, WEAK_VALUES), 0
    end
    keys[key] = k
    nkeys = nkeys + 1
  end
  return k:hex(...)
end

local function must_random(n)
  local b, err = random_bytes(n)
  if not b then
    -- the CSPRNG failing is not something a caller can handle: refuse loudly
    error("ugen: the OpenSSL random generator failed: " .. tostring(err and err.message or err), 3)
  end
  return b
end

function _M.uuid4()
  local b = must_random(16)
  local b7, b9 = string_byte(b, 7), string_byte(b, 9)
  b = string_sub(b, 1, 6) .. string_char(0x40 + b7 % 16) .. string_sub(b, 8, 8)
      .. string_char(0x80 + b9 % 64) .. string_sub(b, 10)
  local h = hex(b)
  return string_format("%s-%s-%s-%s-%s",
    string_sub(h, 1, 8), string_sub(h, 9, 12), string_sub(h, 13, 16),
    string_sub(h, 17, 20), string_sub(h, 21, 32))
end

function _M.new_secret()
  return hex(must_random(32))
end

return _M
