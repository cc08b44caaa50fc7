-- ugen.client: the client object.
--
-- ugen.new checks the options, resolves the runtime and transport (ugen.runtime), hands the
-- credentials to ugen.pipeline (kept there, outside the client table) and attaches the
-- resources (ugen.resources). Every resource method goes through ugen.call and
-- ugen.pipeline; client:request (the raw escape hatch) is ugen.call.request.
-- client:spawn / client:step act on the client's runtime.

local errors = require "ugen.errors"
local runtime_mod = require "ugen.runtime"
local url_mod = require "ugen.url"
local argerror = require("ugen.args").argerror
local pipeline = require "ugen.pipeline"
local call = require "ugen.call"
local observe = require "ugen.observe"
local resources = require "ugen.resources"

local type, pairs, tostring, tonumber, error, setmetatable, getmetatable, pcall, require, select =
  type, pairs, tostring, tonumber, error, setmetatable, getmetatable, pcall, require, select
local string_format, string_gsub, string_match, string_find, string_byte, string_sub =
  string.format, string.gsub, string.match, string.find, string.byte, string.sub
local concat, math_floor, math_random = table.concat, math.floor, math.random

local VERSION = "0.1.0"
local DEFAULT_BASE_URL = "https://api.u-gen.ai/api/v1"

local _M = { _VERSION = VERSION, DEFAULT_BASE_URL = DEFAULT_BASE_URL }
local mt = { __index = _M, __name = "ugen.client" }

local function typename(v) return type(v) end

local function has_crlf(s) return string_find(s, "[\r\n%z]") ~= nil end

---------------------------------------------------------------------------
-- construction

local function lua_version()
  if type(jit) == "table" and jit.version then return jit.version end
  return _VERSION
end

local function curl_version()
  local ok, native = pcall(require, "ugen.native")
  if ok and type(native) == "table" and native.curl_version then return native.curl_version end
  return nil
end

local OPTIONS = {
  base_url = "string", api_key = "string", jwt = "string", timeout = "positive",
  connect_timeout = "positive", max_retries = "count", transport = "any", runtime = "any", keep_null = "boolean",
  headers = "table", user_agent = "string", cainfo = "string", capath = "string", rng = "function",
  -- observability (ugen.observe checks them)
  logger = "any", log_level = "any", on_request = "any", on_response = "any", on_retry = "any", timings = "any",
}

local function check_base_url(base, level)
  level = level + 1
  if type(base) ~= "string" or string_find(base, "[%z\1-\32\127]") then
    error("ugen.new: base_url must be an http:// or https:// URL without spaces or control characters", level)
  end
  if not string_match(base, "^[hH][tT][tT][pP][sS]?://[^/?#]") then
    error("ugen.new: base_url must be an http:// or https:// URL (got '" .. url_mod.redact(base) .. "')", level)
  end
  -- every request URL is base_url .. path .. query: a query string or a
  -- fragment in the base would swallow the path of every call
  if string_find(base, "[?#]") then
    error("ugen.new: base_url must not have a query string or a fragment ('?...' or '#...'): "
      .. "give the API root only, e.g. https://api.u-gen.ai/api/v1", level)
  end
  -- host[:port] after any user:password@ (ugen.url; a malformed one is not
  -- echoed: the authority may hold credentials)
  -- (a password may hold an unencoded '@', which libcurl takes as userinfo up
  -- to the last '@': only what follows it is the host checked here)
  local u, why = url_mod.parse((string_gsub(base, "^(%a[%w+.-]*://)[^/]*@", "%1")))
  if not u then
    error("ugen.new: base_url has no valid host[:port] (" .. why .. "; the value is not shown: it may hold " ..
          "credentials)", level)
  end
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string_byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local d1, d2 = math_floor(n / 262144) % 64, math_floor(n / 4096) % 64
    local d3, d4 = math_floor(n / 64) % 64, n % 64
    out[#out + 1] = string_sub(B64, d1 + 1, d1 + 1) .. string_sub(B64, d2 + 1, d2 + 1)
      .. (b and string_sub(B64, d3 + 1, d3 + 1) or "=") .. (c and string_sub(B64, d4 + 1, d4 + 1) or "=")
  end
  return concat(out)
end

local function pct_decode(s)
  return (string_gsub(s, "%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- Credentials in the base URL (https://user:password@host/...): the parts as
-- written and decoded, and the Basic authorization libcurl makes of them.
local function add_userinfo_secrets(owner, base)
  local userinfo = string_match(base, "^%a[%w+.-]*://([^/?#]*)@")
  if not userinfo then return end
  local user, pass = string_match(userinfo, "^([^:]*):(.*)$")
  user, pass = user or userinfo, pass or ""
  errors.add_secrets(owner, userinfo, user, pass, pct_decode(userinfo), pct_decode(user), pct_decode(pass),
    base64(pct_decode(user) .. ":" .. pct_decode(pass)))
end

-- a non-empty environment variable; one with a line break is refused (its value never echoed)
local function env_value(name)
  local v = os.getenv(name)
  if v == nil or v == "" then return nil end
  if has_crlf(v) then
    error("ugen.new: environment variable " .. name .. " must not contain line breaks", 3)
  end
  return v
end

function _M.new(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then argerror(1, "new", "table expected, got " .. typename(opts), 2) end
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if not want then error("ugen.new: unknown option '" .. tostring(k) .. "'", 2) end
    if want == "positive" then
      if type(v) ~= "number" or v ~= v or v <= 0 then
        error("ugen.new: option '" .. k .. "' must be a positive number (got " .. typename(v) .. ")", 2)
      end
    elseif want == "count" then
      if type(v) ~= "number" or v < 0 or v ~= math_floor(v) then
        error("ugen.new: option '" .. k .. "' must be an integer >= 0", 2)
      end
    elseif want ~= "any" and type(v) ~= want then
      error("ugen.new: option '" .. k .. "' must be a " .. want .. " (got " .. typename(v) .. ")", 2)
    end
    if want == "string" and (has_crlf(v) or (v == "" and k ~= "user_agent")) then
      error("ugen.new: option '" .. k .. "' must be a non-empty string without line breaks", 2)
    end
  end
  if opts.headers then call.check_headers(opts.headers, "ugen.new: option 'headers'", 2) end
  -- nil without a logger, hook or timings (UGEN_LOG: the default logger's level)
  local obs = observe.config(opts, os.getenv("UGEN_LOG"), 2)

  local base = opts.base_url
  if base == nil then
    local env = os.getenv("UGEN_BASE_URL")
    if env and env ~= "" then base = env else base = DEFAULT_BASE_URL end
  end
  check_base_url(base, 2)
  base = string_gsub(base, "/+$", "")

  -- credentials and the CA bundle from the environment when not given (an option always wins;
  -- UGEN_API_KEY / UGEN_JWT are read only when neither api_key nor jwt is given)
  local api_key, jwt, cainfo = opts.api_key, opts.jwt, opts.cainfo
  if api_key == nil and jwt == nil then
    api_key, jwt = env_value("UGEN_API_KEY"), env_value("UGEN_JWT")
  end
  if cainfo == nil then cainfo = env_value("UGEN_CAINFO") end

  local rt, tname = runtime_mod.resolve(opts.runtime, opts.transport, 2)

  local self = {
    base_url = base,
    timeout = opts.timeout or 60,
    connect_timeout = opts.connect_timeout or 5,
    max_retries = opts.max_retries or 2,
    keep_null = opts.keep_null == true,
    transport_name = tname,
    cainfo = cainfo, capath = opts.capath,
    default_headers = {},
    rng = opts.rng or math_random,
    runtime = rt,
    observe = obs,
  }
  for k, v in pairs(opts.headers or {}) do self.default_headers[k] = tostring(v) end
  local cv = tname ~= "ngx" and curl_version() or nil
  local ua = string_format("lua-ugen/%s (%s%s)", VERSION, lua_version(),
    cv and ("; libcurl/" .. cv) or (tname == "ngx" and "; ngx_lua" or ""))
  if opts.user_agent and opts.user_agent ~= "" then ua = ua .. " " .. opts.user_agent end
  self.user_agent = ua
  self.auth = jwt and "jwt" or (api_key and "api_key" or "none")
  setmetatable(self, mt)
  -- the credentials stay outside the client table; every configured secret is
  -- scrubbed from every error (ugen.errors)
  pipeline.set_credentials(self, { api_key = api_key, jwt = jwt })
  add_userinfo_secrets(self, base)
  pipeline.add_header_secrets(self, opts.headers)

  resources.attach(self)
  return self
end

function mt.__tostring(self)
  local shown = string_gsub(self.base_url, "^(%a[%w+.-]*://)[^/]*@", "%1<redacted>@")
  return string_format("ugen.client(base_url=%s, auth=%s, transport=%s, runtime=%s)",
    shown, self.auth, tostring(self.transport_name), tostring(self.runtime.name or "runtime"))
end

-- client:request(method, path, params, opts): ugen.call
_M.request = call.request

---------------------------------------------------------------------------
-- the client's runtime: client:spawn(fn, ...) -> handle (a task on the curl
-- runtime); client:step([timeout_s]) -> seconds until the runtime next needs
-- to run (0: at once) | nil when it has nothing to do

local unpack = table.unpack or unpack -- luacheck: ignore 143

function _M.spawn(self, fn, ...)
  if getmetatable(self) ~= mt then error("ugen: call client:spawn(...) with a colon", 2) end
  if type(fn) ~= "function" then argerror(1, "spawn", "function expected, got " .. typename(fn), 2) end
  local spawn = runtime_mod.need(self.runtime, "spawn", "client:spawn", 2)
  local n = select("#", ...)
  if n == 0 then return spawn(fn) end
  local args = { ... }
  return spawn(function() return fn(unpack(args, 1, n)) end)
end

function _M.step(self, timeout)
  if getmetatable(self) ~= mt then error("ugen: call client:step(...) with a colon", 2) end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
    argerror(1, "step", "non-negative number of seconds expected, got " .. typename(timeout), 2)
  end
  local step = runtime_mod.need(self.runtime, "step", "client:step", 2)
  return step(timeout or 0)
end

return _M
