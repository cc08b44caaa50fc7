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
--   t.configure{ pool_size = 64, keepalive_timeout = 60, backlog = false, cainfo = nil } -> previous settings
--   t.check_phase([what])   raises the phase error when cosockets are off here
--   t.cosockets_ok()        -> boolean, phase
--   t.sleep(s)              ngx.sleep where it may yield, else the blocking sleep
--
-- Behaviour (mirrors the libcurl adapter; the pipeline above is the same):
--   * http and https (HTTP/1.1 only: cosockets have no HTTP/2). TLS is always
--     verified, chain and host name: sslhandshake(session, host, true), so the
--     trust store is nginx's `lua_ssl_trusted_certificate` (plus
--     `lua_ssl_verify_depth`). Pools and TLS sessions are per worker, not per
--     location: set the same lua_ssl_* directives wherever the SDK runs.
--   * cainfo: lua-nginx-module cannot give a socket its own CA file, so
--     req.cainfo (the client's cainfo, or UGEN_CAINFO when nginx passes it with
--     `env UGEN_CAINFO;`) is accepted only when it names the file nginx
--     verifies with, declared once per worker (init_by_lua* or init_worker):
--         lua_ssl_trusted_certificate /path/ca.crt;        # nginx.conf
--         require("ugen.transport.ngx").configure{ cainfo = "/path/ca.crt" }
--     (the same path string). Any other cainfo, and any capath (nginx has no
--     CA directory), fails with kind "tls", code "CAINFO_UNSUPPORTED", before
--     connecting, instead of being silently ignored. Without cainfo the
--     request is verified against lua_ssl_trusted_certificate as it is.
--   * Certificate names are checked with X509_check_host: an IP-literal URL
--     (https://127.0.0.1/) verifies only against a certificate holding that
--     address as a DNS name; use the host name. "localhost" connects to
--     127.0.0.1 without a resolver (as libcurl does) and is verified as
--     "localhost".
--   * Connection pools (per worker), named by what the connection was verified
--     for: "ugen:http:<ip or host>:<port>" and
--     "ugen:https:<ip or host>:<port>:sni=<host>:verify=1:ca=<cainfo or nginx>",
--     so a plain and a TLS connection, or two TLS connections verified for
--     different names or CAs, never share a pool. A connection goes back to its
--     pool (setkeepalive, keepalive_timeout s idle) only when its response was
--     read completely and the server allows it.
--   * pool_size (default 64) is both how many idle connections a pool keeps
--     and how many it has open at once: a request that finds all of them busy
--     waits for one (first come, first served: an ngx.semaphore per pool)
--     until its deadline (req.timeout), then fails as kind "timeout", code
--     CONNECT_TIMEOUT, nothing sent. configure{ backlog = n } caps how many
--     may wait (more: kind "network", code POOL_BUSY, nothing sent; default
--     false, no cap). 64 is the curl runtime's HTTP/1.1 limit (requests in
--     flight per origin), and what the API sees from one process: a burst of
--     1,000 polls is carried by 64 kept-alive connections instead of 1,000
--     new TLS handshakes, at the cost of queueing (HTTP/1.1 carries one request
--     per connection at a time). Raise it for more parallel requests per
--     worker (each nginx worker has its own pools: workers x pool_size
--     connections at most). lua-nginx-module's own backlog queue is not used:
--     it lets a new request take a connection handed back while the waiter it
--     woke opens another, and serves newcomers first (1,000 jobs awaited at
--     once: 307 connections for a pool of 64, 10 polls per job instead of 2).
--     A light thread killed while it holds a connection (ngx.thread.kill,
--     wait_any's losers, an aborted request) gives its place back when its
--     memory is collected (a timer collects when requests have waited 0.5 s
--     and no place came back). Settings apply to pools made after the
--     call (a pool keeps the size it was made with).
--   * TLS sessions are resumed: each pool keeps the last session of its
--     connections (per worker), read after a connection's first response (a
--     TLS 1.3 server sends its session ticket after the handshake), and every
--     new connection of that pool offers it: an abbreviated handshake instead
--     of a full one. A pooled connection needs no handshake at all.
--   * URLs are parsed by ugen.url: http/https only, no spaces or control
--     characters (else kind "network", code BAD_URL, nothing sent).
--   * Hostnames are resolved by nginx's `resolver` directive (IP literals and
--     localhost need none); "no resolver defined" comes back as kind "network".
--   * A TLS handshake that fails (certificate chain, host name, protocol) is
--     kind "tls", code TLS_HANDSHAKE, sent = false: never retried (a timeout in
--     it is kind "timeout", CONNECT_TIMEOUT). More waiters than `backlog` on a
--     busy pool: kind "network", code POOL_BUSY, sent = false.
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
-- CONNECT_TIMEOUT, RESOLVE_FAILED, POOL_BUSY, TLS_HANDSHAKE, CAINFO_UNSUPPORTED,
-- SEND_FAILED, SEND_TIMEOUT, RECV_FAILED, RECV_TIMEOUT, PARTIAL_BODY,
-- BAD_RESPONSE, BAD_URL, TOO_MANY_REDIRECTS, INSECURE_REDIRECT, ABORTED,
-- LOW_SPEED, IO, TOO_LARGE. IO (the output file or an upload's file cannot be
-- opened, read or written) is kind "io", never retried.

local ngx = ngx
if type(ngx) ~= "table" or type(ngx.socket) ~= "table" or type(ngx.socket.tcp) ~= "function"
   or type(ngx.get_phase) ~= "function" then
  error("ugen.transport.ngx needs OpenResty / lua-nginx-module (ngx.socket.tcp is not available here)", 2)
end

local type, pairs, tostring, error, require, pcall =
  type, pairs, tostring, error, require, pcall
local string_format, string_match, string_find, string_sub =
  string.format, string.match, string.find, string.sub
local math_min, math_max, collectgarbage = math.min, math.max, collectgarbage
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

-- pool_size: idle connections kept AND connections open at once per pool; backlog:
-- how many requests may wait for one (nil: no cap); cainfo: the file nginx's
-- lua_ssl_trusted_certificate names (see the top)
local cfg = { pool_size = 64, keepalive_timeout = 60, backlog = nil, cainfo = nil }
local SETTINGS = { "pool_size", "keepalive_timeout", "backlog", "cainfo" }

-- configure{pool_size =, keepalive_timeout = (s), backlog =, cainfo =} -> previous settings
function _M.configure(opts)
  args.check_table(opts, 1, "configure", 2)
  local prev = {}
  -- unset is false in prev, so that configure(prev) restores it
  for _, k in ipairs(SETTINGS) do prev[k] = cfg[k] == nil and false or cfg[k] end
  for k, v in pairs(opts) do
    if k == "cainfo" then
      if v ~= false and not args.is_non_empty_string(v) then
        argerror(1, "configure", "cainfo must be the path lua_ssl_trusted_certificate names, or false", 2)
      end
    elseif k ~= "pool_size" and k ~= "keepalive_timeout" and k ~= "backlog" then
      argerror(1, "configure", "unknown option '" .. tostring(k) .. "'", 2)
    elseif not (k == "backlog" and v == false)
       and (type(v) ~= "number" or v ~= v or v < (k == "backlog" and 0 or 1) or v == math.huge) then
      argerror(1, "configure", k .. " must be a positive number" .. (k == "backlog" and " or false" or ""), 2)
    elseif k == "pool_size" and v ~= math.floor(v) then
      argerror(1, "configure", "pool_size must be an integer", 2)
    end
  end
  for k, v in pairs(opts) do
    if v == false then v = nil end
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

-- The pool of a URL: its connections were made to that address and, over TLS,
-- verified for that name against that CA.
local function pool_name(u)
  if u.scheme ~= "https" then return string_format("ugen:http:%s:%d", u.connect_host, u.port) end
  return string_format("ugen:https:%s:%d:sni=%s:verify=1:ca=%s", u.connect_host, u.port, u.host,
    cfg.cainfo or "nginx")
end

-- pool name -> the last TLS session read from one of its connections (this worker)
local sessions = {}

-- The TLS handshake of a new connection, offering the pool's session. -> true | nil, message
local function tls_handshake(sock, u, pool)
  -- Never sslhandshake(false, ...): lua-resty-core 0.1.25 then returns true for a
  -- handshake that completed at once and failed its certificate or host check
  -- (the C side records the error, the Lua side drops it; the connection is
  -- closed under us). Asking for a session, it raises "assertion failed!" there
  -- instead (pcall): that is the failed verification.
  local pok, sess, herr = pcall(sock.sslhandshake, sock, sessions[pool], u.host, true)
  if pok and (sess ~= nil or herr == nil) then return true end
  sessions[pool] = nil
  if not pok then
    herr = string_find(tostring(sess), "assertion failed", 1, true)
      and "the certificate did not verify (chain or host name)" or tostring(sess)
  end
  return nil, tostring(herr)
end

-- After a new TLS connection's first response: keep its session for the pool's
-- next connections (sslhandshake on a connection that made its handshake
-- already returns the current session, no I/O). Read now rather than at the
-- handshake: a TLS 1.3 session becomes resumable only with the ticket the
-- server sends after the handshake, which came in before the response.
local function keep_session(sock, u, pool)
  local pok, sess = pcall(sock.sslhandshake, sock, nil, u.host, true)
  if pok and sess then sessions[pool] = sess end
end

-- pool name -> { sema = ngx.semaphore of pool_size places, posts, timer } (this worker)
local slots = {}
local semaphore, ffi
local GC_EVERY = 0.5

local function release_slot(slot)
  slot.posts = slot.posts + 1
  slot.sema:post(1)
end

-- While requests wait for a place, every GC_EVERY s: if no place came back since the
-- last look, collect (places held by killed threads come back with their garbage, and a
-- worker that allocates little may not collect it for long). A timer, so that the
-- waiters keep their turn (a wait that times out and waits again goes to the back).
local function janitor(premature, slot)
  slot.timer = false
  if premature or slot.sema:count() >= 0 then return end   -- nobody waits
  if slot.posts == slot.seen then collectgarbage() end
  slot.seen = slot.posts
  slot.timer = ngx.timer.at(GC_EVERY, janitor, slot) ~= nil
end

-- Wait for a free connection of the pool (one of its pool_size places) until the
-- deadline. -> release() | nil, err. The place is given back by release(), or,
-- should the light thread be killed before it calls it, when the guard is collected.
local function acquire(u, pool, deadline)
  local slot = slots[pool]
  if not slot then
    semaphore = semaphore or require "ngx.semaphore"
    ffi = ffi or require "ffi"
    slot = { sema = assert(semaphore.new(cfg.pool_size)), size = cfg.pool_size, posts = 0, timer = false }
    slots[pool] = slot
  end
  local sema = slot.sema
  local free = sema:count()
  if cfg.backlog and free <= -cfg.backlog then
    return nil, fail("network", "POOL_BUSY", string_format("%s:%d: all %d connections of the pool are busy and %d " ..
      "requests wait already (configure{ pool_size =, backlog = })", u.host, u.port, slot.size, cfg.backlog), false)
  end
  if free <= 0 and not slot.timer then
    slot.seen = slot.posts
    slot.timer = ngx.timer.at(GC_EVERY, janitor, slot) ~= nil
  end
  if not sema:wait(math_max(deadline - now(), 0)) then
    return nil, fail("timeout", "CONNECT_TIMEOUT", string_format("request timed out waiting for one of the %d " ..
      "connections of its pool to %s:%d (configure{ pool_size = })", slot.size, u.host, u.port), false)
  end
  local guard = ffi.gc(ffi.new("char[1]"), function() release_slot(slot) end)
  return function()
    if guard then
      ffi.gc(guard, nil)
      guard = nil
      release_slot(slot)
    end
  end
end

-- -> sock, reused (true: from the pool, no handshake) | nil, err
local function connect(u, pool, connect_timeout, deadline)
  local sock, serr = tcp()
  if not sock then return nil, fail("network", "CONNECT_FAILED", "cannot create a socket: " .. tostring(serr)) end
  local left = deadline - now()
  if left <= 0 then return nil, fail("timeout", "CONNECT_TIMEOUT", "request timed out before connecting", false) end
  local ctimeout = connect_timeout and math_min(connect_timeout, left) or left
  sock:settimeouts(ms(ctimeout), ms(left), ms(left))
  local copts = { pool = pool, pool_size = cfg.pool_size }
  local ok, err = sock:connect(u.connect_host, u.port, copts)
  if not ok then
    err = tostring(err)
    if err == "timeout" then
      return nil, fail("timeout", "CONNECT_TIMEOUT", string_format("connect to %s:%d timed out after %gs", u.host,
        u.port, ctimeout), false)
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
    local hok, herr = tls_handshake(sock, u, pool)
    if not hok then
      sock:close()
      if herr == "timeout" then
        return nil, fail("timeout", "CONNECT_TIMEOUT", "TLS handshake with " .. u.host .. " timed out", false)
      end
      local hint = ""
      local mismatch = string_find(herr, "host mismatch", 1, true) or string_find(herr, "did not verify", 1, true)
      if mismatch and (string_match(u.host, "^[%d.]+$") or string_sub(u.host, 1, 1) == "[") then
        hint = " (nginx checks names with X509_check_host: an IP address matches only a certificate that " ..
               "holds it as a DNS name; call the server by its host name)"
      elseif not string_find(herr, "host mismatch", 1, true) and
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
    return connect(u, pool_name(u), connect_timeout, deadline)
  end,
  acquire = function(u, deadline) return acquire(u, pool_name(u), deadline) end,
  release = function(sock, keepalive, u, reused)
    -- a new TLS connection's session serves the pool's next handshakes
    if keepalive and not reused and u.scheme == "https" then keep_session(sock, u, pool_name(u)) end
    if not (keepalive and sock:setkeepalive(ms(cfg.keepalive_timeout), cfg.pool_size)) then sock:close() end
  end,
  check = function(u, req)
    -- (called first for each hop) localhost needs no resolver, as with libcurl
    if u.host == "localhost" then u.connect_host = "127.0.0.1" end
    if u.scheme == "https" and (req.capath or (req.cainfo and req.cainfo ~= cfg.cainfo)) then
      return fail("tls", "CAINFO_UNSUPPORTED", "the ngx transport cannot give a connection its own " ..
        (req.capath and "capath" or "cainfo") .. ": nginx verifies with `lua_ssl_trusted_certificate`; when " ..
        "that directive names the cainfo file, declare it once with ugen.transport.ngx's " ..
        "configure{ cainfo = <the same path> }", false)
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
