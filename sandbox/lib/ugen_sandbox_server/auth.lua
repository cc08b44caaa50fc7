-- ugen_sandbox_server.auth: who is calling. X-API-Key (the seeded tenants' keys) or
-- Authorization: Bearer <JWT> (HS256 over the seed-derived secret, `sub` =
-- tenant id, `exp` checked); failures are 401 with WWW-Authenticate.

local util = require "ugen_sandbox_server.util"
local seed = require "ugen_sandbox_server.seed"
local state = require "ugen_sandbox_server.state"
local http = require "ugen_sandbox_server.http"

local ngx = ngx
local type = type
local json, crypto = util.json, util.crypto
local E = http.error_response

local _M = {}

local function unauthorized(code, message)
  return E(401, code, message, nil, { ["WWW-Authenticate"] = 'Bearer realm="u-gen sandbox"' })
end

local function verify_jwt(token)
  local h, p, s = token:match("^([%w_%-]+)%.([%w_%-]+)%.([%w_%-]+)$")
  if not h then return nil end
  local header = json.decode(seed.base64url_decode(h) or "")
  if type(header) ~= "table" or header.alg ~= "HS256" then return nil end
  local expected = seed.base64url(seed.from_hex(crypto.hmac_sha256(state.jwt_secret, h .. "." .. p)))
  if not crypto.consteq(expected, s) then return nil end
  local payload = json.decode(seed.base64url_decode(p) or "")
  if type(payload) ~= "table" or type(payload.exp) ~= "number" or payload.exp <= ngx.time() then
    return nil
  end
  return state.by_id[payload.sub]
end

--- The caller's tenant data -> T | nil, resp (401). A Bearer token wins over
-- X-API-Key when both are sent.
function _M.authenticate()
  local authz = ngx.var.http_authorization
  if authz then
    local token = authz:match("^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
    if not token then
      return nil, unauthorized("INVALID_TOKEN", "Authorization header must be 'Bearer <token>'")
    end
    local t = verify_jwt(token)
    if not t then return nil, unauthorized("INVALID_TOKEN", "Invalid or expired token") end
    return state.data[t.id]
  end
  local key = ngx.var.http_x_api_key
  if key then
    local t = state.by_key[key]
    if not t then return nil, unauthorized("INVALID_API_KEY", "Invalid API key") end
    return state.data[t.id]
  end
  return nil, unauthorized("AUTHENTICATION_REQUIRED",
                           "Missing credentials: send X-API-Key or Authorization: Bearer <token>")
end

return _M
