-- ugen.crypto: the SDK's primitives over the C core (OpenSSL).
--
--   crypto.hmac_sha256(key, msg)  -> 64 lowercase hex characters
--   crypto.hmac_hex(key, part, ...) -> the same over the concatenated parts,
--                                    with the key's schedule cached (a few keys)
--   crypto.consteq(a, b)          -> boolean, time independent of content
--   crypto.random_bytes(n)        -> n CSPRNG bytes | nil, err
--   crypto.uuid4()                -> "xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx"
--   crypto.new_secret()           -> 64 hex characters (32 random bytes)

local type, pairs, error = type, pairs, error
local string_byte, string_char, string_format, string_sub = string.byte, string.char, string.format, string.sub

local _M = { _VERSION = "0.1.0" }

-- (the C core: through ugen.native once it lands, issue 13 item 3)
local core_mod
local function core()
  if not core_mod then core_mod = require "ugen.core" end
  return core_mod
end

function _M.hmac_sha256(key, msg)
  return core().hmac_sha256(key, msg)
end

-- Keyed contexts (ugen.hmac_key) for the last few keys: a webhook receiver checks every delivery
-- with the same secret (two while rotating), and setting a key up costs more than hashing 1 KiB.
-- Bounded: at KEYS_MAX keys all are closed (their key material cleansed) and the cache restarts.
local KEYS_MAX = 8
local keys, nkeys = {}, 0

function _M.hmac_hex(key, ...)
  local k = keys[key]
  if not k then
    if type(key) ~= "string" or key == "" then
      local got = key == "" and "empty string" or type(key)
      error("bad argument #1 to 'hmac_hex' (non-empty string expected, got " .. got .. ")", 2)
    end
    local err
    k, err = core().hmac_key(key)
    if not k then return nil, err end
    if nkeys >= KEYS_MAX then
      for _, old in pairs(keys) do old:close() end
      keys, nkeys = {}, 0
    end
    keys[key] = k
    nkeys = nkeys + 1
  end
  return k:hex(...)
end

function _M.consteq(a, b)
  return core().consteq(a, b)
end

function _M.random_bytes(n)
  return core().random_bytes(n)
end

function _M.hex(s)
  return core().hex(s)
end

local function must_random(n)
  local b, err = core().random_bytes(n)
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
  local h = core().hex(b)
  return string_format("%s-%s-%s-%s-%s",
    string_sub(h, 1, 8), string_sub(h, 9, 12), string_sub(h, 13, 16),
    string_sub(h, 17, 20), string_sub(h, 21, 32))
end

function _M.new_secret()
  return core().hex(must_random(32))
end

return _M
