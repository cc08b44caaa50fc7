-- ugen.client: the client object and the one request pipeline.
--
-- Every resource method ends in client:_call(endpoint, ...) and every raw call
-- in client:request(...); both go through client:_send, which owns auth
-- headers, the idempotency key, JSON encoding, retries with backoff and
-- Retry-After, response decoding and error mapping. Waiting (backoff sleeps,
-- transfers, the clock) goes through the client's runtime (ugen.runtime) only.

local json = require "ugen.json"
local errors = require "ugen.errors"
local retry = require "ugen.retry"
local headers_mod = require "ugen.headers"
local runtime_mod = require "ugen.runtime"
local validate = require "ugen.validate"
local crypto = require "ugen.crypto"
local endpoints = require "ugen.endpoints"
local url_mod = require "ugen.url"

local type, pairs, ipairs, tostring, tonumber, error, setmetatable, getmetatable, pcall, require, select =
  type, pairs, ipairs, tostring, tonumber, error, setmetatable, getmetatable, pcall, require, select
local string_format, string_gsub, string_match, string_find, string_byte, string_sub, string_upper, string_lower =
  string.format, string.gsub, string.match, string.find, string.byte, string.sub, string.upper, string.lower
local concat, math_floor, math_random = table.concat, math.floor, math.random

local VERSION = "0.1.0"
local DEFAULT_BASE_URL = "https://api.u-gen.ai/api/v1"

local _M = { _VERSION = VERSION, DEFAULT_BASE_URL = DEFAULT_BASE_URL }
local mt = { __index = _M, __name = "ugen.client" }

-- Secrets live outside the client table, so pairs(client), inspectors and
-- serializers never see them.
local secrets = setmetatable({}, { __mode = "k" })

---------------------------------------------------------------------------
-- argument helpers

local function typename(v) return type(v) end

local function argerror(n, fname, msg, level)
  error(string_format("bad argument #%d to '%s' (%s)", n, fname, msg), level + 1)
end
_M.argerror = argerror

local function has_crlf(s) return string_find(s, "[\r\n%z]") ~= nil end

local function check_headers_table(h, what, level)
  for k, v in pairs(h) do
    if type(k) ~= "string" or not string_match(k, "^[!#$%%&'*+%-.^_`|~%w]+$") then
      error(string_format("%s: header name %s is not a valid token", what, tostring(k)), level + 1)
    end
    if type(v) ~= "string" and type(v) ~= "number" then
      error(string_format("%s: header '%s' must be a string (got %s)", what, k, type(v)), level + 1)
    end
    if has_crlf(tostring(v)) then
      error(string_format("%s: header '%s' contains a line break", what, k), level + 1)
    end
  end
end

local CALL_OPTS = {
  timeout = true, connect_timeout = true, headers = true, idempotency_key = true, max_retries = true,
  extra = true, -- fields the SDK does not know yet: sent as given (body or query), not validated
}

-- Validate per-call opts (argument #n of fname); raises at the caller's caller.
local function check_call_opts(opts, n, fname, level)
  level = level + 1
  if opts == nil then return end
  if type(opts) ~= "table" then argerror(n, fname, "table expected, got " .. typename(opts), level) end
  for k, v in pairs(opts) do
    if not CALL_OPTS[k] then
      argerror(n, fname, "unknown option '" .. tostring(k) .. "'", level)
    end
    if (k == "timeout" or k == "connect_timeout") and (type(v) ~= "number" or v ~= v or v <= 0) then
      argerror(n, fname, "opts." .. k .. " must be a positive number", level)
    elseif k == "max_retries" and (type(v) ~= "number" or v < 0 or v ~= math_floor(v)) then
      argerror(n, fname, "opts.max_retries must be an integer >= 0", level)
    elseif k == "idempotency_key" and (type(v) ~= "string" or v == "" or has_crlf(v)) then
      argerror(n, fname, "opts.idempotency_key must be a non-empty string", level)
    elseif k == "headers" then
      if type(v) ~= "table" then argerror(n, fname, "opts.headers must be a table", level) end
      check_headers_table(v, "bad argument #" .. n .. " to '" .. fname .. "'", level)
    elseif k == "extra" then
      if type(v) ~= "table" then argerror(n, fname, "opts.extra must be a table of fields", level) end
      for f in pairs(v) do
        if type(f) ~= "string" or f == "" then
          argerror(n, fname, "opts.extra: field names must be non-empty strings", level)
        end
      end
    end
  end
end
_M.check_call_opts = check_call_opts

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

local CREDENTIAL_HEADERS = { authorization = true, ["proxy-authorization"] = true, ["x-api-key"] = true,
                             cookie = true }

-- Values of credential headers (and the token after "Bearer "/"Basic ").
local function add_header_secrets(owner, h)
  if type(h) ~= "table" then return end
  for k, v in pairs(h) do
    if type(k) == "string" and CREDENTIAL_HEADERS[string_lower(k)] then
      v = tostring(v)
      errors.add_secrets(owner, v, string_match(v, "^%a+%s+(.+)$"))
    end
  end
end
_M.add_header_secrets = add_header_secrets

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
  if opts.headers then check_headers_table(opts.headers, "ugen.new: option 'headers'", 2) end

  local base = opts.base_url
  if base == nil then
    local env = os.getenv("UGEN_BASE_URL")
    if env and env ~= "" then base = env else base = DEFAULT_BASE_URL end
  end
  check_base_url(base, 2)
  base = string_gsub(base, "/+$", "")

  local rt, tname = runtime_mod.resolve(opts.runtime, opts.transport, 2)

  local self = {
    base_url = base,
    timeout = opts.timeout or 60,
    connect_timeout = opts.connect_timeout or 5,
    max_retries = opts.max_retries or 2,
    keep_null = opts.keep_null == true,
    transport_name = tname,
    cainfo = opts.cainfo, capath = opts.capath,
    default_headers = {},
    rng = opts.rng or math_random,
    runtime = rt,
  }
  for k, v in pairs(opts.headers or {}) do self.default_headers[k] = tostring(v) end
  local cv = tname ~= "ngx" and curl_version() or nil
  local ua = string_format("lua-ugen/%s (%s%s)", VERSION, lua_version(),
    cv and ("; libcurl/" .. cv) or (tname == "ngx" and "; ngx_lua" or ""))
  if opts.user_agent and opts.user_agent ~= "" then ua = ua .. " " .. opts.user_agent end
  self.user_agent = ua
  self.auth = opts.jwt and "jwt" or (opts.api_key and "api_key" or "none")
  setmetatable(self, mt)
  secrets[self] = { api_key = opts.api_key, jwt = opts.jwt }
  -- every configured secret is scrubbed from every error (ugen.errors)
  errors.add_secrets(self, opts.api_key, opts.jwt)
  add_userinfo_secrets(self, base)
  add_header_secrets(self, opts.headers)

  require("ugen.resources").attach(self)
  return self
end

function mt.__tostring(self)
  local shown = string_gsub(self.base_url, "^(%a[%w+.-]*://)[^/]*@", "%1<redacted>@")
  return string_format("ugen.client(base_url=%s, auth=%s, transport=%s, runtime=%s)",
    shown, self.auth, tostring(self.transport_name), tostring(self.runtime.name or "runtime"))
end

-- The client's credentials and extra values (a call's secret parameters), as
-- a list without holes, for errors.redact (which adds every secret registered
-- with errors.add_secrets).
local function secret_list(self, extra)
  local s = secrets[self] or {}
  local list = {}
  if s.api_key ~= nil then list[#list + 1] = s.api_key end
  if s.jwt ~= nil then list[#list + 1] = s.jwt end
  if extra then for _, v in ipairs(extra) do list[#list + 1] = v end end
  return list
end

---------------------------------------------------------------------------
-- the pipeline

local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true }

-- wall-clock seconds: the runtime's time(), else the C core's clock
local function wall_time(rt)
  local f = rt.time
  if f then return f() end
  return require("ugen.native").time()
end

local function retry_after_of(self, err, hdrs)
  local v = hdrs and hdrs["retry-after"]
  local ra = v and retry.parse_retry_after(v, wall_time(self.runtime))
  if ra == nil and type(err.details) == "table" then
    ra = retry.parse_retry_after(err.details.retry_after, wall_time(self.runtime))
  end
  return ra
end

-- Turn one transport answer into result, meta | nil, err.
local function handle_response(self, res, spec)
  local status = tonumber(res.status)
  if not status then
    return nil, errors.new{ kind = "network", message = "transport returned no HTTP status", retryable = true }
  end
  if status ~= math_floor(status) or status < 100 or status > 999 then
    return nil, errors.new{ kind = "network", retryable = true,
      message = "transport returned an invalid HTTP status (" .. tostring(res.status) .. ")" }
  end
  local hmap = res.header_map
  local hdrs = hmap and headers_mod.adopt(hmap) or headers_mod.new(res.headers)
  local request_id = hdrs["x-request-id"]
  local meta = { status = status, headers = hdrs, request_id = request_id }
  if status >= 200 and status <= 299 then
    if spec.output then
      return { path = spec.output, size = res.size, status = status }, meta
    end
    local body = res.body
    if type(body) ~= "string" or not string_find(body, "%S") then return {}, meta end
    local v, derr = json.decode(body, self.keep_null)
    if derr ~= nil then
      return nil, errors.new{ kind = "decode", status = status, request_id = request_id, retryable = false,
        message = string_format("HTTP %d response body is not valid JSON (%s)", status, derr) }
    end
    if v == nil then v = {} end
    if type(v) ~= "table" then
      -- every documented success body is an object (or a list): a bare string,
      -- number or boolean is a server fault, not a result to index into
      return nil, errors.new{ kind = "decode", status = status, request_id = request_id, retryable = false,
        message = string_format("HTTP %d response body is JSON but not an object or array (a %s)", status,
          type(v)) }
    end
    return v, meta
  end
  local err = errors.from_response(status, res.body, request_id, self.keep_null)
  err.retry_after = retry_after_of(self, err, hdrs)
  return nil, err, hdrs
end

-- spec = { method, path (encoded, relative) | url (absolute), query, body (Lua value), mime,
--          output, resume_from, on_progress, low_speed_time, idempotent, opts (per-call),
--          secrets (extra strings), headers (the SDK's own, sent to any origin) }
--
-- Deadlines. A call has one when its opts carry `timeout` (the whole call,
-- retries and backoff included, ends within that many seconds) or when a
-- helper attached one to its opts table with set_deadline (jobs:wait gives
-- every poll the wait's deadline). Each attempt then gets the time left as
-- its transfer timeout (at most the per-attempt timeout), no backoff sleep
-- reaches past the deadline (the last error is returned instead), and the
-- transport sees req.deadline (the runtime's now() clock) so a request queued
-- by the scheduler gives up at the deadline too.
local deadlines = setmetatable({}, { __mode = "k" })

-- opts (a per-call opts table) -> opts; every call made with it ends by `deadline`
-- (seconds on the client runtime's now() clock), like a per-call timeout, without
-- changing the per-attempt timeout.
function _M.set_deadline(opts, deadline)
  deadlines[opts] = deadline
  return opts
end

local function deadline_error()
  return errors.new{ kind = "timeout", code = "DEADLINE_EXCEEDED", retryable = true, attempts = 0,
    message = "the call's deadline passed before the request was sent" }
end

local NO_OPTS = setmetatable({}, { __newindex = function() error("ugen: internal: NO_OPTS is read-only", 2) end })

-- hdrs[k] = v, replacing a header of the same name in any letter case
local function put_header(hdrs, k, v)
  local lk = string_lower(k)
  for name in pairs(hdrs) do
    if string_lower(name) == lk then hdrs[name] = nil end
  end
  hdrs[k] = tostring(v)
end

function _M._send(self, spec)
  local opts = spec.opts or NO_OPTS
  local hdrs = {
    ["Accept"] = "application/json",
    ["User-Agent"] = self.user_agent,
  }
  local s = secrets[self] or {}
  -- An absolute URL (a download) gets credentials only on the API's own origin.
  local url = spec.url
  if not url then
    local q = spec.query and url_mod.build_query(spec.query, json.null) or ""
    if q ~= "" and string_find(spec.path, "?", 1, true) then q = "&" .. string_sub(q, 2) end
    url = self.base_url .. spec.path .. q
  end
  local foreign = spec.url ~= nil and not url_mod.same_origin(spec.url, self.base_url)
  if foreign then s = {} end
  if s.jwt then
    hdrs["Authorization"] = "Bearer " .. s.jwt
  elseif s.api_key then
    hdrs["X-API-Key"] = s.api_key
  end
  local body
  if spec.body ~= nil then
    local eerr
    body, eerr = json.encode(spec.body)
    if not body then
      error(string_format("bad argument #%d to '%s' (cannot encode as JSON: %s)",
        spec.argn or 1, spec.fname or "request", tostring(eerr)), spec.level or 4)
    end
    hdrs["Content-Type"] = "application/json"
  end
  if spec.headers then for k, v in pairs(spec.headers) do put_header(hdrs, k, v) end end
  -- default, then per-call headers replace same-named ones whatever their case;
  -- like credentials, the user's headers go only to the API's own origin
  if not foreign then
    if next(self.default_headers) ~= nil then
      for k, v in pairs(self.default_headers) do put_header(hdrs, k, v) end
    end
    if opts.headers then
      add_header_secrets(self, opts.headers)
      for k, v in pairs(opts.headers) do put_header(hdrs, k, v) end
    end
  end

  local req = {
    method = spec.method,
    url = url,
    headers = hdrs,
    body = body,
    mime = spec.mime,
    output = spec.output,
    resume_from = spec.resume_from,       -- downloads: append to output's first N bytes (Range)
    on_progress = spec.on_progress,       -- downloads: function(dltotal, dlnow, ultotal, ulnow)
    low_speed_time = spec.low_speed_time, -- downloads: stall detection (seconds under 1 byte/s)
    -- redirects are followed only by downloads from another origin, which carry
    -- neither credentials nor the user's headers (nothing of them can follow a
    -- redirect to yet another host)
    follow = (foreign and spec.follow) or nil,
    timeout = nil,               -- per attempt, below
    connect_timeout = nil,
    deadline = nil,
    cainfo = self.cainfo,
    capath = self.capath,
  }
  local idempotent = spec.idempotent
  if idempotent == nil then idempotent = IDEMPOTENT[spec.method] == true end
  -- transports that can re-send on their own (libcurl on a dead reused
  -- connection) must not do so for a request that may only be sent once
  req.idempotent = idempotent
  local max_retries = opts.max_retries or self.max_retries
  local attempt_timeout = opts.timeout or self.timeout
  local connect_timeout = opts.connect_timeout or self.connect_timeout
  local deadline = deadlines[opts]
  local rt = self.runtime
  local rt_now, perform = rt.now, rt.perform
  local t = nil     -- the clock, read once for the first attempt
  if opts.timeout then
    t = rt_now()
    local d = t + opts.timeout
    if deadline == nil or d < deadline then deadline = d end
  end
  req.timeout, req.connect_timeout, req.deadline = attempt_timeout, connect_timeout, deadline

  local attempt, last_err = 0, nil
  while true do
    if deadline then
      local left = deadline - (t or rt_now())
      t = nil
      if left <= 0 then
        -- (after a backoff sleep that overshot: the error that led to it)
        if last_err then return nil, errors.redact(last_err, secret_list(self, spec.secrets)) end
        return nil, deadline_error()
      end
      req.timeout = attempt_timeout < left and attempt_timeout or left
      req.connect_timeout = connect_timeout < left and connect_timeout or left
    end
    local res, terr = perform(req)
    local result, meta, err
    if res then
      result, meta = handle_response(self, res, spec)
      if result == nil then err = meta; meta = nil end
    else
      err = errors.from_transport(terr)
    end
    if err == nil then return result, meta end

    attempt = attempt + 1
    err.attempts = attempt
    local can = err.retryable and (idempotent or (res == nil and err.sent == false))
    local wait
    if can and attempt <= max_retries then
      if err.retry_after and err.retry_after > retry.MAX_RETRY_AFTER then
        can = false
      else
        -- never shorter than the backoff, whatever Retry-After said (0, a past date)
        wait = retry.delay(attempt, err.retry_after, self.rng)
        -- no time left for another attempt after the sleep: give the error now
        if deadline and rt_now() + wait >= deadline then can = false end
      end
    else
      can = false
    end
    err.sent = nil
    if not can then
      errors.redact(err, secret_list(self, spec.secrets))
      return nil, err
    end
    last_err = err
    rt.sleep(wait)
  end
end

---------------------------------------------------------------------------
-- raw requests: client:request(method, path, params, opts)

local BODY_METHODS = { POST = true, PUT = true, PATCH = true }

-- A path parameter that a server (or libcurl) would resolve as a dot segment
-- and so route to another endpoint: "." or "..", alone or between slashes
-- ("../x", "a/./b"; "/" is sent as %2F, which nginx and others decode before
-- resolving dot segments; "\\" for servers that treat it as "/"). Refused.
local dot_segment = url_mod.dot_segment

local DOT_MSG = "must not be '.' or '..' or hold such a segment between slashes (it would change the endpoint called)"

-- The validation problem for a dot-segment path parameter.
local function dot_problem(name, v)
  return { type = "value_error", loc = { "path", name }, msg = "Path parameter " .. DOT_MSG, input = v }
end
_M.dot_problem = dot_problem

local encode_segment = url_mod.encode_segment

-- Substitute {name} path parameters (URL-encoded) from params; returns the
-- path and the set of used names, or nil, name of the missing one.
local function fill_path(path, params)
  local used, missing = {}, nil
  local out = string_gsub(path, "{([%w_]+)}", function(name)
    local v = params and params[name]
    if type(v) == "number" then v = url_mod.scalar_string(v) end
    if type(v) ~= "string" or v == "" then missing = missing or name; return "" end
    used[name] = true
    return encode_segment(v)
  end)
  if missing then return nil, missing end
  return out, used
end

local function endpoint_for(method, path)
  for _, ep in ipairs(endpoints.list) do
    if ep.method == method and ep.path == path then return ep end
  end
  return nil
end

function _M.request(self, method, path, params, opts)
  if type(self) ~= "table" or getmetatable(self) ~= mt then
    error("ugen: call client:request(...) with a colon", 2)
  end
  if type(method) ~= "string" or not string_match(method, "^%a+$") then
    argerror(1, "request", "HTTP method string expected, got " .. typename(method), 2)
  end
  if type(path) ~= "string" or string_sub(path, 1, 1) ~= "/" then
    argerror(2, "request", "path starting with '/' expected, got " .. typename(path), 2)
  end
  if params ~= nil and type(params) ~= "table" then
    argerror(3, "request", "table expected, got " .. typename(params), 2)
  end
  check_call_opts(opts, 4, "request", 2)
  method = string_upper(method)
  local filled, used = fill_path(path, params)
  if not filled then
    argerror(3, "request", "params." .. used .. " is required by the path", 2)
  end
  local bad
  for name in pairs(used) do
    if dot_segment(params[name]) then bad = bad or {}; bad[#bad + 1] = dot_problem(name, params[name]) end
  end
  if bad then return nil, _M.validation_error(bad) end     -- defined below
  local rest = {}
  for k, v in pairs(params or {}) do
    if not used[k] then rest[k] = v end
    if errors.is_secret_key(k) then errors.add_secrets(self, v) end
  end
  for k, v in pairs(opts and opts.extra or {}) do
    rest[k] = v
    if errors.is_secret_key(k) then errors.add_secrets(self, v) end
  end
  local spec = { method = method, path = filled, opts = opts, fname = "request", argn = 3, level = 3 }
  if BODY_METHODS[method] then spec.body = rest else spec.query = rest end
  local ep = endpoint_for(method, path)
  local key_field = ep and ep.idempotency
  if BODY_METHODS[method] and ((opts and opts.idempotency_key) or key_field) then
    key_field = key_field or "idempotency_key"
    local body = spec.body or {}
    if body[key_field] == nil then body[key_field] = (opts and opts.idempotency_key) or crypto.uuid4() end
    spec.body = body
    spec.idempotent = true
  end
  local result, meta = self:_send(spec)     -- not a tail call: error levels count this frame
  return result, meta
end

---------------------------------------------------------------------------
-- resource calls: client:_call(ep, path_values, params, opts, fname)

local function is_secret_name(name)
  return type(name) == "string" and string_find(name, "secret$") ~= nil
end

local function validation_error(fields)
  local n = #fields
  return errors.new{
    kind = "validation", fields = fields, retryable = false,
    message = n == 1 and "request validation failed (client-side)"
      or string_format("request validation failed (client-side, %d problems)", n),
  }
end
_M.validation_error = validation_error


-- ep: an endpoints entry; pv: {name = value} path values (already type
-- checked); params: user table or nil (never modified); opts: checked
-- per-call opts. extra: {mime = ..., idempotency_key = ...} from special methods.
-- Endpoints whose parameters are all plain required string path parameters
-- (get/delete by id): called without a params table, validation reduces to
-- "each path value is a non-empty string" (the values were type checked by
-- the generated method). Computed once per endpoint.
local SIMPLE_PARAM_KEYS = { name = true, ["in"] = true, type = true, required = true, doc = true }
local simple_eps = setmetatable({}, { __mode = "k" })
local function is_simple(ep)
  local simple = simple_eps[ep]
  if simple ~= nil then return simple end
  simple = ep.body == nil and not ep.open_body and type(ep.params) == "table" and type(ep.path_params) == "table"
    and #ep.params == #ep.path_params
  if simple then
    for _, p in ipairs(ep.params) do
      if p["in"] ~= "path" or p.type ~= "string" or not p.required or is_secret_name(p.name) then simple = false end
      for k in pairs(p) do
        if not SIMPLE_PARAM_KEYS[k] then simple = false end
      end
    end
  end
  simple_eps[ep] = simple
  return simple
end

function _M._call(self, ep, pv, params, opts, extra)
  if params == nil and extra == nil and pv ~= nil and not (opts and (opts.idempotency_key or opts.extra))
     and is_simple(ep) then
    local ok = true
    for _, name in ipairs(ep.path_params) do
      local v = pv[name]
      if type(v) ~= "string" or v == "" or dot_segment(v) then ok = false; break end
    end
    if ok then
      local spec = { method = ep.method, path = fill_path(ep.path, pv), opts = opts, fname = ep.name,
                     argn = #ep.path_params + 1, level = 4 }
      local result, meta = self:_send(spec)     -- not a tail call: error levels count this frame
      return result, meta
    end
  end
  if opts and opts.idempotency_key and not ep.idempotency then
    -- 1 = _call, 2 = the resource method, 3 = its caller
    error(string_format("bad argument #%d to '%s' (opts.idempotency_key: the API takes an idempotency key "
      .. "only on jobs:create)", #ep.path_params + (params ~= nil and 2 or 1), ep.name), 3)
  end
  local all = {}
  for k, v in pairs(params or {}) do all[k] = v end
  for k, v in pairs(pv or {}) do all[k] = v end
  local details = validate.check(ep, all, { null = json.null, is_array = json.is_array, unknown = "error" })
  details = details or {}
  for _, name in ipairs(ep.path_params) do
    if all[name] == "" then
      details[#details + 1] = { type = "string_too_short", loc = { "path", name },
        msg = "String should have at least 1 character", input = "", ctx = { min_length = 1 } }
    elseif dot_segment(all[name]) then
      details[#details + 1] = dot_problem(name, all[name])
    end
  end
  -- secret parameters (webhook_secret, ...) stay secrets for the client's life,
  -- whatever their type (a number given by mistake too)
  local extra_secrets = {}
  for k, v in pairs(all) do
    if errors.is_secret_key(k) then
      errors.add_secrets(self, v)
      extra_secrets[#extra_secrets + 1] = v
    end
  end
  if #details > 0 then
    return nil, errors.redact(validation_error(details), secret_list(self, extra_secrets))
  end

  local path = fill_path(ep.path, pv)
  local query, body, form = {}, nil, nil
  if ep.body == "json" then body = {} end
  for k, v in pairs(all) do
    local p = ep.by_param[k]
    local where = p and p["in"] or (ep.body == "json" and "body") or (ep.body == "multipart" and "form")
      or "query"
    if where == "query" then query[k] = v
    elseif where == "body" then body = body or {}; body[k] = v
    elseif where == "form" then form = form or {}; form[k] = v
    end
  end
  -- opts.extra: as given, unvalidated (multipart: already in the mime parts)
  for k, v in pairs(opts and opts.extra or {}) do
    if errors.is_secret_key(k) then
      errors.add_secrets(self, v)
      extra_secrets[#extra_secrets + 1] = v
    end
    if ep.body == "json" then body[k] = v
    elseif ep.body == nil then query[k] = v
    end
  end
  local spec = {
    method = ep.method, path = path, query = query, body = body, opts = opts,
    secrets = extra_secrets, fname = ep.name, argn = #ep.path_params + 1, level = 4,
  }
  if extra and extra.mime then spec.mime = extra.mime; spec.body = nil end
  if extra and extra.output then spec.output = extra.output end
  if extra and extra.url then spec.url = extra.url end
  if ep.idempotency and body and body[ep.idempotency] ~= nil then spec.idempotent = true end
  local result, meta = self:_send(spec)     -- not a tail call: error levels count this frame
  return result, meta
end

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
