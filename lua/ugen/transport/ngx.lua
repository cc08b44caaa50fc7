-- ugen.transport.ngx: the OpenResty adapter. HTTP/1.1 over lua-nginx-module
-- cosockets (ngx.socket.tcp), so an nginx worker never blocks while the SDK
-- waits: every connect/send/receive yields to nginx's event loop.
-- This file: phases, configure, connections (pools, TLS); the request loop
-- (redirects, resume, resends) is ugen.transport.http1_client's (shared with
-- the HAProxy transport), the messages themselves ugen.transport.http1's,
-- multipart bodies ugen.transport.multipart's, where a body goes
-- ugen.transport.body_sink's; URLs are ugen.url's.
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

local type, pairs, tostring, error, require = type, pairs, tostring, error, require
local string_format, string_find = string.format, string.find
local math_min = math.min
local args = require "ugen.args"
local http1 = require "ugen.transport.http1"
local http1_client = require "ugen.transport.http1_client"
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
-- requests (the loop is ugen.transport.http1_client's)

local conn = {
  now = now,
  connect = function(u, connect_timeout, deadline)
    return connect(u, string_format("ugen:%s:%s:%d", u.scheme, u.host, u.port), connect_timeout, deadline)
  end,
  release = function(sock, keepalive)
    if not (keepalive and sock:setkeepalive(ms(cfg.keepalive_timeout), cfg.pool_size)) then sock:close() end
  end,
  check = function(u, req)
    if u.scheme == "https" and (req.cainfo or req.capath) then
      return fail("tls", "CAINFO_UNSUPPORTED", "the ngx transport cannot use cainfo/capath per request; " ..
        "configure the CA bundle with nginx's `lua_ssl_trusted_certificate` instead", false)
    end
  end,
  max_body = function() return _M.MAX_BODY end,
}

function _M.request(req)
  _M.check_phase("an HTTP request")
  local res, err = http1_client.request(req, conn, 2)
  return res, err
end

return _M
