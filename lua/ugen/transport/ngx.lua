-- ugen.transport.ngx: the OpenResty adapter. HTTP/1.1 over lua-nginx-module
-- cosockets (ngx.socket.tcp), so an nginx worker never blocks while the SDK
-- waits: every connect/send/receive yields to nginx's event loop.
-- This file: phases, configure, connections (pools, TLS), the request loop
-- (redirects, resume, resends); the messages themselves are
-- ugen.transport.http1's, multipart bodies ugen.transport.multipart's, where a
-- body goes ugen.transport.body_sink's; URLs are ugen.url's.
--
--   local t = require "ugen.transport.ngx"   -- raises outside nginx-lua
--   t.request(req) -> res | nil, err          (the adapter; see ugen.transport)
--   t.configure{ pool_size = 64, keepalive_timeout = 60, backlog = nil } -> previous settings
--   t.check_phase([what])   raises the phase error when cosockets are off here
--   t.cosockets_ok()        -> boolean, phase
--   t.sleep(s)              ngx.sleep where it may yield, else the blocking sleep
--
-- Behaviour (mirrors the libcurl adapter; the pipeline above is the same):
--   * http and https; TLS always verified: sslhandshake(false, host, true), so
--     the trust store is nginx's `lua_ssl_trusted_certificate` (plus
--     `lua_ssl_verify_depth`). req.cainfo / req.capath cannot be applied per
--     socket by lua-nginx-module: an https request carrying them fails with
--     kind "tls" (code "CAINFO_UNSUPPORTED") instead of silently ignoring them.
--   * URLs are parsed by ugen.url: http/https only, no spaces or control
--     characters (else kind "network", code BAD_URL, nothing sent).
--   * Hostnames are resolved by nginx's `resolver` directive (IP literals need
--     none); "no resolver defined" comes back as kind "network".
--   * Keepalive pools per scheme/host/port (setkeepalive); a response is put
--     back only when it was read completely and the server allows it.
--   * Timeouts: req.connect_timeout bounds connect (+ TLS handshake);
--     req.timeout bounds the whole exchange (a deadline; every send/receive
--     gets what is left of it), like CURLOPT_TIMEOUT.
--   * Bodies: Content-Length, chunked, or until close; none for HEAD, 1xx,
--     204 and 304. A body cut short (fewer bytes than Content-Length, a chunked
--     body without its last chunk) is kind "network" (code "PARTIAL_BODY"); a
--     body until close ends only at a clean close (a reset is RECV_FAILED).
--   * A response line (status, header, chunk size, trailer) longer than 100 KiB
--     (libcurl's limit), or more than 500 header lines: kind "network", code
--     BAD_RESPONSE.
--   * A body kept in memory (all but a 2xx streamed to req.output) is capped at
--     _M.MAX_BODY bytes (64 MiB, the curl transport's cap): one announced larger
--     is refused before it is read, chunked or until-close bodies fail as soon as
--     they pass it: kind "decode", code "TOO_LARGE", message "response body
--     larger than N bytes" (as with the curl transport).
--   * err.sent is false only when no request byte was written (connect, DNS,
--     TLS failures, deadline already passed); true from the first send on.
--   * A pooled connection that turns out dead before any response byte is
--     retried on a fresh connection only when req.idempotent (default: by
--     method) allows it: nothing is sent twice that should be sent once.
--   * req.mime (multipart) and req.output (2xx body streamed to a file) work as
--     with the C core; file parts are streamed from disk. The output file is
--     written through the C core's output_* functions, as the curl engine
--     writes it: never through a symbolic link, hard link, FIFO or device at
--     that name (such an entry is replaced by a new regular file, never resumed).
--   * req.follow: up to 5 redirects (303, and 301/302 after POST, become GET);
--     a relative Location is resolved as RFC 3986 says (ugen.url.resolve);
--     credential headers (Authorization, X-API-Key, Cookie) are dropped when a
--     redirect leaves the origin (ugen.url.same_origin). More -> "network",
--     code TOO_MANY_REDIRECTS.
--     A redirect from https to anything but https is refused: kind "tls", code
--     INSECURE_REDIRECT (as with the curl transport).
--   * req.resume_from = N with req.output: when the file is a regular file
--     holding exactly N bytes, "Range: bytes=N-" is sent and a 206 is appended;
--     otherwise (or on a 200) the whole body is written from byte 0.
--   * req.on_progress(dltotal, dlnow, ultotal, ulnow) after every body chunk;
--     returning false or raising aborts ("network", code ABORTED).
--   * req.low_speed_time = s: no body byte for s seconds -> "timeout", code LOW_SPEED.
--   * req.timing = true: res.timing = { total = seconds from the call to the whole
--     response (redirects included; nginx's clock, updated: millisecond steps), reused = the last
--     connection came from the keepalive pool (sock:getreusedtimes() > 0) }. The
--     phases libcurl measures (connect, TLS, first byte) are not measured here.
-- Error codes (err.code, instead of curl's CURLE_n): CONNECT_FAILED,
-- CONNECT_TIMEOUT, RESOLVE_FAILED, TLS_HANDSHAKE, CAINFO_UNSUPPORTED,
-- SEND_FAILED, SEND_TIMEOUT, RECV_FAILED, RECV_TIMEOUT, PARTIAL_BODY,
-- BAD_RESPONSE, BAD_URL, TOO_MANY_REDIRECTS, INSECURE_REDIRECT, ABORTED,
-- LOW_SPEED, IO, TOO_LARGE. IO (the output file or an upload's file cannot be
-- opened, read or written) is kind "io", never retried.

local ngx = ngx
if type(ngx) ~= "table" or type(ngx.socket) ~= "table" or type(ngx.socket.tcp) ~= "function"
   or type(ngx.get_phase) ~= "function" then
  error("ugen.transport.ngx needs OpenResty / lua-nginx-module (ngx.socket.tcp is not available here)", 2)
end

local type, pairs, tostring, tonumber, error, require = type, pairs, tostring, tonumber, error, require
local string_format, string_match, string_lower, string_find, string_gsub, string_sub =
  string.format, string.match, string.lower, string.find, string.gsub, string.sub
local math_min = math.min
local url_mod = require "ugen.url"
local args = require "ugen.args"
local http1 = require "ugen.transport.http1"
local multipart = require "ugen.transport.multipart"
local body_sink = require "ugen.transport.body_sink"
local tcp, get_phase, ngx_now, update_time, ngx_sleep = ngx.socket.tcp, ngx.get_phase, ngx.now, ngx.update_time,
  ngx.sleep
local fail, ms = http1.fail, http1.ms
local argerror = args.argerror

local _M = {
  _VERSION = "0.1.0",
  MAX_BODY = 64 * 1024 * 1024,   -- cap on a body held in memory: the curl transport's MAX_BODY
}

local cfg = { pool_size = 64, keepalive_timeout = 60, backlog = nil }

-- configure{pool_size =, keepalive_timeout = (s), backlog =} -> previous settings
function _M.configure(opts)
  args.check_table(opts, 1, "configure", 2)
  local prev = { pool_size = cfg.pool_size, keepalive_timeout = cfg.keepalive_timeout, backlog = cfg.backlog }
  for k, v in pairs(opts) do
    if k ~= "pool_size" and k ~= "keepalive_timeout" and k ~= "backlog" then
      argerror(1, "configure", "unknown option '" .. tostring(k) .. "'", 2)
    end
    if v ~= nil and (type(v) ~= "number" or v ~= v or v < (k == "backlog" and 0 or 1)) then
      argerror(1, "configure", k .. " must be a positive number", 2)
    end
    cfg[k] = v
  end
  return prev
end

---------------------------------------------------------------------------
-- phases

-- Phases in which lua-nginx-module allows cosockets and ngx.sleep.
local YIELDABLE = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}
_M.YIELDABLE_PHASES = YIELDABLE

local DIRECTIVE = {
  init = "init_by_lua*", init_worker = "init_worker_by_lua*", set = "set_by_lua*",
  header_filter = "header_filter_by_lua*", body_filter = "body_filter_by_lua*", log = "log_by_lua*",
  balancer = "balancer_by_lua*", ssl_session_store = "ssl_session_store_by_lua*",
  exit_worker = "exit_worker_by_lua*",
}

function _M.cosockets_ok()
  local phase = get_phase()
  return YIELDABLE[phase] == true, phase
end

function _M.phase_message(what, phase)
  phase = phase or get_phase()
  local where = DIRECTIVE[phase] and (" (" .. DIRECTIVE[phase] .. ")") or ""
  local way
  if phase == "init" then
    way = "create the client here if you like, but make the call from a request handler, or from " ..
          "ngx.timer.at(0, function(premature) ... end) in init_worker_by_lua*"
  else
    way = "run it from a timer instead: ngx.timer.at(0, function(premature) ... end)"
  end
  return string_format("ugen: %s cannot run in nginx's '%s' phase%s: lua-nginx-module disables " ..
    "cosockets and ngx.sleep there; %s", what or "an HTTP request", tostring(phase), where, way)
end

function _M.check_phase(what)
  local ok, phase = _M.cosockets_ok()
  if not ok then error(_M.phase_message(what, phase), 0) end
  return phase
end

-- Sleep for the SDK (the ngx runtime's sleep): yields where nginx allows it; elsewhere
-- (init, or a user who chose the curl transport in a non-yieldable phase) the
-- C core's blocking sleep.
function _M.sleep(s)
  if s <= 0 then return end
  if YIELDABLE[get_phase()] then
    ngx_sleep(s)
  else
    require("ugen.native").sleep(s)
  end
end

---------------------------------------------------------------------------
-- connections

local function now()
  update_time()
  return ngx_now()
end

-- the C core (file sizes for resume); loaded on first use
local function core() return require "ugen.native" end

-- "https://user@Host:8443/p?q" -> ugen.url's parse result, plus connect_host
-- (an IPv6 literal without its brackets)
local function parse_url(s)
  if type(s) ~= "string" then return nil, "request URL is not a string" end
  local u, err = url_mod.parse(s)
  if not u then return nil, "request " .. err end
  u.connect_host = string_sub(u.host, 1, 1) == "[" and string_sub(u.host, 2, -2) or u.host
  return u
end

local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true, TRACE = true }

local function connect(u, pool, connect_timeout, deadline)
  local sock, serr = tcp()
  if not sock then return nil, fail("network", "CONNECT_FAILED", "cannot create a socket: " .. tostring(serr)) end
  local left = deadline - now()
  if left <= 0 then return nil, fail("timeout", "CONNECT_TIMEOUT", "request timed out before connecting", false) end
  sock:settimeouts(ms(connect_timeout and math_min(connect_timeout, left) or left), ms(left), ms(left))
  local copts = { pool = pool, pool_size = cfg.pool_size, backlog = cfg.backlog }
  local ok, err = sock:connect(u.connect_host, u.port, copts)
  if not ok then
    err = tostring(err)
    if err == "timeout" then
      return nil, fail("timeout", "CONNECT_TIMEOUT", string_format("connect to %s:%d timed out", u.host, u.port), false)
    end
    if string_find(err, "resolve", 1, true) or string_find(err, "resolver", 1, true) then
      local hint = string_find(err, "no resolver", 1, true)
        and " (add a `resolver` directive to nginx's http block, e.g. `resolver 1.1.1.1 ipv6=off;`)" or ""
      return nil, fail("network", "RESOLVE_FAILED", "cannot resolve " .. u.host .. ": " .. err .. hint, false)
    end
    return nil, fail("network", "CONNECT_FAILED", string_format("cannot connect to %s:%d: %s", u.host, u.port, err),
      false)
  end
  local reused = (sock:getreusedtimes() or 0) > 0
  if u.scheme == "https" and not reused then
    local hok, herr = sock:sslhandshake(false, u.host, true)
    if not hok then
      sock:close()
      herr = tostring(herr)
      if herr == "timeout" then
        return nil, fail("timeout", "CONNECT_TIMEOUT", "TLS handshake with " .. u.host .. " timed out", false)
      end
      local hint = ""
      if not string_find(herr, "host mismatch", 1, true) and
         (string_find(herr, "verify", 1, true) or string_find(herr, "certificate", 1, true)) then
        hint = " (nginx verifies against `lua_ssl_trusted_certificate`; set it, e.g. to " ..
               "/etc/ssl/certs/ca-certificates.crt, with `lua_ssl_verify_depth 5`)"
      end
      return nil, fail("tls", "TLS_HANDSHAKE", "TLS handshake with " .. u.host .. " failed: " .. herr .. hint, false)
    end
  end
  return sock, reused
end

---------------------------------------------------------------------------
-- requests

local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }
local MAX_REDIRECTS = 5
local CREDENTIAL_HEADERS = { authorization = true, ["x-api-key"] = true, cookie = true, ["proxy-authorization"] = true }

-- One request/response exchange on url (after redirects are resolved by the caller).
local function request_once(req, url, method, hdrs, deadline, range_from)
  local u, perr = parse_url(url)
  if not u then return nil, fail("network", "BAD_URL", perr, false) end
  if u.scheme == "https" and (req.cainfo or req.capath) then
    return nil, fail("tls", "CAINFO_UNSUPPORTED", "the ngx transport cannot use cainfo/capath per request; " ..
      "configure the CA bundle with nginx's `lua_ssl_trusted_certificate` instead", false)
  end
  local connect_timeout = tonumber(req.connect_timeout) or 10

  local body, pieces, length, ctype = req.body, nil, nil, nil
  if method == "GET" or method == "HEAD" then body = nil end
  if req.mime and method ~= "GET" and method ~= "HEAD" then
    pieces, length, ctype = multipart.build(req.mime)
    if not pieces then
      local e = fail("io", "IO", length, false)   -- an upload's file cannot be read
      e.retryable = false
      return nil, e
    end
    body = nil
  elseif body ~= nil then
    length = #body
  elseif method == "POST" or method == "PUT" or method == "PATCH" then
    length = 0
  end
  local head = http1.request_head(method, u.target, u.authority, hdrs,
    { range_from = range_from, content_type = ctype, length = length })

  local pool = string_format("ugen:%s:%s:%d", u.scheme, u.host, u.port)
  local idempotent = req.idempotent
  if idempotent == nil then idempotent = IDEMPOTENT[method] == true end
  local on_progress = type(req.on_progress) == "function" and req.on_progress or nil
  local low_speed_time, output = tonumber(req.low_speed_time), req.output
  local reqv = { method = method, url = url }
  -- a 2xx body goes to req.output (a 206 appended to the range_from bytes kept),
  -- anything else to memory, at most MAX_BODY bytes
  function reqv.new_sink(status, total)
    local is2xx = status >= 200 and status <= 299
    return body_sink.new(is2xx and output or nil, is2xx and range_from ~= nil and status == 206,
      { on_progress = on_progress, total = total, upload = length or 0, low = low_speed_time,
        max = _M.MAX_BODY, keep = range_from })
  end
  -- a pooled connection found dead before any response byte: resent on a new
  -- one only when the request may be sent twice
  local fresh_retries = idempotent and 2 or 0
  while true do
    local sock, reused_or_err = connect(u, pool, connect_timeout, deadline)
    if not sock then return nil, reused_or_err end
    local reused = reused_or_err
    local res, err_or_keepalive, retry_fresh = http1.exchange(sock, reused, reqv, head, body, pieces, deadline, now)
    if res then
      -- back to the pool only when read completely and the server allows it
      if not (err_or_keepalive and sock:setkeepalive(ms(cfg.keepalive_timeout), cfg.pool_size)) then
        sock:close()
      end
      if req.timing then res.timing = { reused = reused } end
      return res
    end
    local err = err_or_keepalive
    sock:close()
    if not (retry_fresh and fresh_retries > 0 and deadline > now()) then return nil, err end
    fresh_retries = fresh_retries - 1
  end
end

function _M.request(req)
  _M.check_phase("an HTTP request")
  args.check_table(req, 1, "request", 2)
  local method = req.method or ((req.body or req.mime) and "POST" or "GET")
  if type(method) ~= "string" or not string_match(method, "^[!#$%%&'*+%-.^_`|~%w]+$") then
    argerror(1, "request", "invalid HTTP method", 2)
  end
  if req.body ~= nil and type(req.body) ~= "string" then
    argerror(1, "request", "req.body must be a string", 2)
  end
  local hdrs = {}
  for name, v in pairs(req.headers or {}) do
    v = tostring(v)
    if type(name) ~= "string" or string_find(name, "[\r\n%z:]") or string_find(v, "[\r\n%z]") then
      argerror(1, "request", "header '" .. string_gsub(tostring(name), "[%c]", "?") .. "' contains a line break", 2)
    end
    hdrs[name] = v
  end
  local t0 = now()
  local deadline = t0 + (tonumber(req.timeout) or 60)
  -- resume: only when the output file holds exactly resume_from bytes (then the
  -- rest is appended); otherwise the whole body is written from byte 0
  local range_from = req.resume_from
  if range_from ~= nil and not (req.output and type(range_from) == "number" and range_from > 0
                                and core().output_size(req.output) == range_from) then
    range_from = nil
  end

  local url = req.url
  local redirects = 0
  while true do
    local res, err = request_once(req, url, method, hdrs, deadline, range_from)
    if not res then return nil, err end
    local loc
    if req.follow and REDIRECT[res.status] then
      for i = 1, #res.headers, 2 do
        if res.headers[i] == "location" then loc = res.headers[i + 1] end
      end
    end
    if not loc then
      if res.timing then res.timing.total = now() - t0 end
      return res
    end
    redirects = redirects + 1
    if redirects > MAX_REDIRECTS then
      return nil, fail("network", "TOO_MANY_REDIRECTS", "more than " .. MAX_REDIRECTS .. " redirects", true)
    end
    local nxt, nu = url_mod.resolve(url, loc)
    if not nxt then
      return nil, fail("network", "BAD_URL", "redirect to an unsupported location (" .. nu .. ")", true)
    end
    if url_mod.parse(url).scheme == "https" and nu.scheme ~= "https" then
      -- a request made over TLS never continues without it
      return nil, fail("tls", "INSECURE_REDIRECT", "refused a redirect from https to a URL that is not https", true)
    end
    if not url_mod.same_origin(nxt, url) then
      -- credentials never follow a redirect to another origin
      for name in pairs(hdrs) do
        if CREDENTIAL_HEADERS[string_lower(name)] then hdrs[name] = nil end
      end
    end
    if res.status == 303 or ((res.status == 301 or res.status == 302) and method == "POST") then
      if method ~= "HEAD" then method = "GET" end
    end
    url = nxt
  end
end


return _M
