-- ugen.pipeline: one request, from a request description to result, meta | nil, err.
--
--   pipeline.send(client, spec) -> result, meta | nil, err
--
-- It knows no endpoints: ugen.call (endpoint lookup, argument parsing, validation) and the
-- resources build the description; this module owns auth headers, the idempotency flag,
-- JSON encoding and decoding, deadlines, retries with backoff and Retry-After (ugen.retry),
-- error mapping (ugen.errors) and redaction of secrets from errors. Waiting (backoff
-- sleeps, transfers, the clock) goes through the client's runtime only.
--
-- `client` is the settings table ugen.new builds: base_url, user_agent, default_headers,
-- timeout, connect_timeout, max_retries, keep_null, rng, cainfo, capath, runtime
-- ({now, sleep, perform[, time]}). Its credentials are not in that table: ugen.new hands
-- them to pipeline.set_credentials, which keeps them here, keyed weakly by the client.
--
--   pipeline.set_credentials(client, {api_key =, jwt =})   (also marks `client` as a client)
--   pipeline.is_client(v)               -> true for a table given to set_credentials
--   pipeline.set_deadline(opts, deadline) -> opts: every call made with this per-call opts
--                                          table ends by `deadline` (runtime now() clock)
--   pipeline.add_header_secrets(client, headers)  credential header values become secrets
--   pipeline.redact(client, err[, extra])  err with the client's secrets (and extra) scrubbed
--
-- Observers (ugen.observe: logger, on_request/on_response/on_retry, timings): client.observe
-- (ugen.new) and the call's opts. Without any, a call costs one nil test more: no info
-- table, no clock read, no timing asked of the transport (req.timing). With any, the
-- transport measures (req.timing = true: meta.timing); with a logger or a hook, each
-- attempt and retry is also reported (info tables built and scrubbed only then).

local json = require "ugen.json"
local errors = require "ugen.errors"
local retry = require "ugen.retry"
local headers_mod = require "ugen.headers"
local url_mod = require "ugen.url"
local observe = require "ugen.observe"
local argerror = require("ugen.args").argerror
local is_secret_key, scrub_string = errors.is_secret_key, errors.scrub_string

local type, pairs, ipairs, tostring, tonumber, error, setmetatable, require, next =
  type, pairs, ipairs, tostring, tonumber, error, setmetatable, require, next
local string_format, string_match, string_find, string_sub, string_lower, string_gsub =
  string.format, string.match, string.find, string.sub, string.lower, string.gsub
local math_floor = math.floor

local _M = { _VERSION = "0.1.0" }

-- Secrets live outside the client table, so pairs(client), inspectors and
-- serializers never see them.
local secrets = setmetatable({}, { __mode = "k" })

function _M.set_credentials(client, creds)
  secrets[client] = { api_key = creds.api_key, jwt = creds.jwt }
  -- every configured secret is scrubbed from every error (ugen.errors)
  errors.add_secrets(client, creds.api_key, creds.jwt)
end

function _M.is_client(v)
  return secrets[v] ~= nil
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

function _M.redact(client, err, extra)
  return errors.redact(err, secret_list(client, extra))
end

---------------------------------------------------------------------------
-- the request

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
  -- timing: only when the request asked for it (req.timing)
  local meta = { status = status, headers = hdrs, request_id = request_id, timing = res.timing }
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
--          secrets (extra strings), headers (the SDK's own, sent to any origin), follow,
--          fname, argn, level (a body JSON cannot encode raises "bad argument #argn to
--          'fname'" at `level` counted from send: the caller's frames are counted, so
--          send is never called as a tail call) }
-- The request description: path is appended to client.base_url with the query;
-- an absolute url gets the credentials and the user's headers only on the API's origin.
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

---------------------------------------------------------------------------
-- observers: info tables (built only when a logger, hook or `timings` is set)

-- the URL without userinfo, and its path (no query); plain finds (this runs on every
-- observed call)
local function shown_url(url)
  if string_find(url, "@", 1, true) then url = string_gsub(url, "^(%a[%w+.-]*://)[^/?#]*@", "%1") end
  local p = string_find(url, "://", 1, true)
  local s = p and string_find(url, "/", p + 3, true)
  local q = s and string_find(url, "[?#]", p + 3)
  if not s or (q and q < s) then return url, "/" end
  return url, string_sub(url, s, q and q - 1 or nil)
end

-- header name -> its value is a credential (errors.is_secret_key), memoized (bounded)
local secret_header, secret_header_n = {}, 0
local function is_secret_header(name)
  local v = secret_header[name]
  if v == nil then
    if secret_header_n >= 256 then secret_header, secret_header_n = {}, 0 end
    v = is_secret_key(name)
    secret_header[name], secret_header_n = v, secret_header_n + 1
  end
  return v
end

-- The call's request as observers see it, once per call: every registered secret (the
-- client's credentials, *_secret parameters, credential headers: ugen.errors) and the
-- call's own scrubbed from the URL and header values, credential headers' values
-- replaced whole.
local function base_info(spec, req)
  local list = errors.secret_list(spec.secrets)
  local h = {}
  for k, v in pairs(req.headers) do
    h[k] = is_secret_header(k) and "<redacted>" or scrub_string(v, list)
  end
  local url, path = shown_url(req.url)
  return { method = req.method, url = scrub_string(url, list), path = scrub_string(path, list),
           headers = h, idempotent = req.idempotent }
end

-- each event's own table (with its own copy of the headers when a hook will see it)
local function headers_of(base, hooks)
  if not hooks then return nil end
  local h = {}
  for k, v in pairs(base.headers) do h[k] = v end
  return h
end

local function observe_request(obs, base, attempt)
  observe.request(obs, { method = base.method, url = base.url, path = base.path, idempotent = base.idempotent,
    headers = headers_of(base, obs.on_request), attempt = attempt })
end

local function observe_response(self, spec, obs, base, attempt, duration, res, meta, err)
  local status, request_id
  if err then
    errors.redact(err, secret_list(self, spec.secrets))
    status, request_id = err.status, err.request_id
  else
    status, request_id = meta.status, meta.request_id
  end
  observe.response(obs, { method = base.method, url = base.url, path = base.path, idempotent = base.idempotent,
    headers = headers_of(base, obs.on_response), attempt = attempt, duration = duration,
    timing = res and res.timing, status = status, request_id = request_id, error = err })
end

local function observe_retry(obs, base, attempt, max_retries, wait, err)
  observe.retry(obs, { method = base.method, url = base.url, path = base.path, idempotent = base.idempotent,
    headers = headers_of(base, obs.on_retry), attempt = attempt, retry = attempt, max_retries = max_retries,
    wait = wait, reason = observe.reason(err), error = err, status = err.status, request_id = err.request_id,
    retry_after = err.retry_after })
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

function _M.send(self, spec)
  local obs = self.observe    -- nil unless the client has observers
  local opts = spec.opts
  if opts then obs = observe.for_call(obs, opts) else opts = NO_OPTS end
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
      argerror(spec.argn or 1, spec.fname or "request", "cannot encode as JSON: " .. tostring(eerr), spec.level or 4)
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

  -- (only the fields a GET has are named here: a constructor sizes its hash
  -- part for every field it names, nil or not)
  local req = { method = spec.method, url = url, headers = hdrs, body = body }
  if spec.mime then req.mime = spec.mime end
  if spec.output then req.output = spec.output end
  if spec.resume_from then req.resume_from = spec.resume_from end          -- append to output from byte N (Range)
  if spec.on_progress then req.on_progress = spec.on_progress end          -- function(dltotal, dlnow, ultotal, ulnow)
  if spec.low_speed_time then req.low_speed_time = spec.low_speed_time end -- stall detection (s under 1 byte/s)
  -- redirects are followed only by downloads from another origin, which carry
  -- neither credentials nor the user's headers (nothing of them can follow a
  -- redirect to yet another host)
  if foreign and spec.follow then req.follow = spec.follow end
  if self.cainfo then req.cainfo = self.cainfo end
  if self.capath then req.capath = self.capath end
  local idempotent = spec.idempotent
  if idempotent == nil then idempotent = IDEMPOTENT[spec.method] == true end
  -- transports that can re-send on their own (libcurl on a dead reused
  -- connection) must not do so for a request that may only be sent once
  req.idempotent = idempotent
  local base    -- (a logger or hooks) the request as observers see it; nil: nothing to report
  if obs then
    req.timing = true
    if obs.report then base = base_info(spec, req) end
  end
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
    local t0
    if base then
      t0 = rt_now()
      if obs.on_request or obs.level >= 2 then observe_request(obs, base, attempt + 1) end
    end
    local res, terr = perform(req)
    local result, meta, err
    if res then
      result, meta = handle_response(self, res, spec)
      if result == nil then err = meta; meta = nil end
    else
      err = errors.from_transport(terr)
    end
    if base and (obs.on_response or obs.level >= 1) then
      observe_response(self, spec, obs, base, attempt + 1, rt_now() - t0, res, meta, err)
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
    if base and (obs.on_retry or obs.level >= 1) then observe_retry(obs, base, attempt, max_retries, wait, err) end
    rt.sleep(wait)
  end
end

return _M
