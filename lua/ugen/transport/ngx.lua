-- ugen.transport.ngx: the OpenResty adapter. HTTP/1.1 over lua-nginx-module
-- cosockets (ngx.socket.tcp), so an nginx worker never blocks while the SDK
-- waits: every connect/send/receive yields to nginx's event loop.
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
--     redirect leaves the origin (ugen.url.same_origin). More -> "network", code TOO_MANY_REDIRECTS.
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
-- LOW_SPEED, IO, TOO_LARGE.

local ngx = ngx
if type(ngx) ~= "table" or type(ngx.socket) ~= "table" or type(ngx.socket.tcp) ~= "function"
   or type(ngx.get_phase) ~= "function" then
  error("ugen.transport.ngx needs OpenResty / lua-nginx-module (ngx.socket.tcp is not available here)", 2)
end

local type, pairs, ipairs, tostring, tonumber, error, pcall, require =
  type, pairs, ipairs, tostring, tonumber, error, pcall, require
local string_format, string_match, string_lower, string_find, string_gsub, string_sub, string_byte =
  string.format, string.match, string.lower, string.find, string.gsub, string.sub, string.byte
local concat, sort, math_floor, math_min, io_open = table.concat, table.sort, math.floor, math.min, io.open
local url_mod = require "ugen.url"
local tcp, get_phase, ngx_now, update_time, ngx_sleep = ngx.socket.tcp, ngx.get_phase, ngx.now, ngx.update_time,
  ngx.sleep

local _M = {
  _VERSION = "0.1.0",
  MAX_BODY = 64 * 1024 * 1024,   -- cap on a body held in memory: the curl transport's MAX_BODY
}

local CHUNK = 65536
local MAX_HEADER_LINES = 500

local cfg = { pool_size = 64, keepalive_timeout = 60, backlog = nil }

-- configure{pool_size =, keepalive_timeout = (s), backlog =} -> previous settings
function _M.configure(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'configure' (table expected, got " .. type(opts) .. ")", 2)
  end
  local prev = { pool_size = cfg.pool_size, keepalive_timeout = cfg.keepalive_timeout, backlog = cfg.backlog }
  for k, v in pairs(opts) do
    if k ~= "pool_size" and k ~= "keepalive_timeout" and k ~= "backlog" then
      error("bad argument #1 to 'configure' (unknown option '" .. tostring(k) .. "')", 2)
    end
    if v ~= nil and (type(v) ~= "number" or v ~= v or v < (k == "backlog" and 0 or 1)) then
      error("bad argument #1 to 'configure' (" .. k .. " must be a positive number)", 2)
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

-- Sleep for the SDK (ugen.sched): yields where nginx allows it; elsewhere
-- (init, or a user who chose the curl transport in a non-yieldable phase) the
-- C core's blocking sleep.
function _M.sleep(s)
  if s <= 0 then return end
  if YIELDABLE[get_phase()] then
    ngx_sleep(s)
  else
    require("ugen.sched").core().sleep(s)
  end
end

---------------------------------------------------------------------------
-- helpers

local function now()
  update_time()
  return ngx_now()
end

local function ms(s)
  local v = math_floor(s * 1000 + 0.5)
  if v < 1 then v = 1 end
  return v
end

local function fail(kind, code, message, sent)
  return { kind = kind, code = code, message = message, sent = sent == true }
end

-- the C core writes output files (no symbolic links followed); loaded on first use
local core_mod
local function core()
  if not core_mod then core_mod = require("ugen.sched").core() end
  return core_mod
end

local function too_large(max)
  return { kind = "decode", code = "TOO_LARGE", retryable = false, sent = true,
           message = "response body larger than " .. max .. " bytes" }
end

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

---------------------------------------------------------------------------
-- request bodies

-- curl-style escaping of a Content-Disposition parameter value
local function disp_escape(s)
  return (string_gsub(tostring(s), '[\r\n"]', { ["\r"] = "%0D", ["\n"] = "%0A", ['"'] = "%22" }))
end

local function basename(p) return string_match(p, "([^/\\]+)$") or p end

local function random_boundary()
  local ok, crypto = pcall(require, "ugen.crypto")
  if ok then
    local rok, b = pcall(crypto.random_bytes, 12)
    if rok and type(b) == "string" then return "------------------------ugen" .. crypto.hex(b) end
  end
  return string_format("------------------------ugen%08x%08x", math_floor(ngx_now() * 1000) % 0x7fffffff,
    math_floor(math.random() * 0x7fffffff))
end

-- mime parts -> pieces ({string} or {path =, size =}), total length, content type | nil, err
local function build_mime(parts)
  if type(parts) ~= "table" then return nil, "req.mime must be a list of parts" end
  local boundary = random_boundary()
  local pieces, total = {}, 0
  local function add(s) pieces[#pieces + 1] = s; total = total + #s end
  for i, p in ipairs(parts) do
    if type(p) ~= "table" or type(p.name) ~= "string" then
      return nil, "mime part #" .. i .. " has no name"
    end
    local h = { "--", boundary, "\r\nContent-Disposition: form-data; name=\"", disp_escape(p.name), "\"" }
    local filename = p.filename
    if filename == nil and p.path then filename = basename(p.path) end
    if filename then h[#h + 1] = "; filename=\"" .. disp_escape(filename) .. "\"" end
    h[#h + 1] = "\r\n"
    local ctype = p.type or p.content_type
    if ctype == nil and filename then ctype = "application/octet-stream" end
    if ctype then h[#h + 1] = "Content-Type: " .. string_gsub(tostring(ctype), "[\r\n]", "") .. "\r\n" end
    h[#h + 1] = "\r\n"
    add(concat(h))
    if p.path ~= nil then
      if type(p.path) ~= "string" then return nil, "mime part '" .. p.name .. "': path must be a string" end
      local f, ferr = io_open(p.path, "rb")
      if not f then return nil, "cannot open mime file: " .. tostring(ferr) end
      local size = f:seek("end")
      f:close()
      if not size then return nil, "cannot size mime file " .. p.path end
      pieces[#pieces + 1] = { path = p.path, size = size }
      total = total + size
    elseif type(p.data) == "string" then
      add(p.data)
    else
      return nil, "mime part '" .. p.name .. "' needs data (string) or path"
    end
    add("\r\n")
  end
  add("--" .. boundary .. "--\r\n")
  return pieces, total, "multipart/form-data; boundary=" .. boundary
end

---------------------------------------------------------------------------
-- the exchange

local function set_timeouts(sock, deadline, connect_timeout)
  local left = deadline - now()
  if left <= 0 then return false end
  local c = connect_timeout and math_min(connect_timeout, left) or left
  sock:settimeouts(ms(c), ms(left), ms(left))
  return true
end

local function timeout_error(code, message, sent)
  return fail("timeout", code, message, sent)
end

-- Read one line (CR ignored); maps errors.
local function read_line(sock, deadline, what)
  if not set_timeouts(sock, deadline) then
    return nil, timeout_error("RECV_TIMEOUT", "request timed out while reading the " .. what, true), true
  end
  local line, err, partial = sock:receive("*l")
  if line then return line end
  if err == "timeout" then
    return nil, timeout_error("RECV_TIMEOUT", "request timed out while reading the " .. what, true), true
  end
  return nil, fail("network", "RECV_FAILED", "connection " .. tostring(err) .. " while reading the " .. what, true),
    partial == nil or partial == ""
end

-- Sink for the body: memory (at most opts.max bytes), or a file for a 2xx with
-- req.output. opts: { on_progress = fn(dltotal, dlnow, ultotal, ulnow), total =
-- announced length, upload = request body bytes, low = low_speed_time, max =
-- cap of a memory body, keep = bytes of the output file to keep (append) }.
-- write() returns nil, message, code ("IO", "TOO_LARGE" or "ABORTED":
-- on_progress returned false or raised). fits(n): n more bytes stay under the cap.
local function new_sink(output, append, opts)
  local s = { size = 0, low = opts.low }
  local max = not output and opts.max or nil
  s.max = max
  function s.fits(n) return max == nil or s.size + n <= max end
  local on_progress = opts.on_progress
  local function progress()
    if not on_progress then return true end
    local ok, r = pcall(on_progress, opts.total or 0, s.size, opts.upload or 0, opts.upload or 0)
    if not ok then return nil, "aborted: the progress callback raised: " .. tostring(r), "ABORTED" end
    if r == false then return nil, "aborted by the progress callback", "ABORTED" end
    return true
  end
  s.progress = progress
  if not output then
    local buf = {}
    function s.write(data)
      if max and s.size + #data > max then return nil, too_large(max).message, "TOO_LARGE" end
      buf[#buf + 1] = data
      s.size = s.size + #data
      return progress()
    end
    function s.finish() return true, concat(buf) end
    function s.abort() end
    return s
  end
  -- The file is (re)created or cut to `keep` bytes once, then appended to
  -- chunk by chunk; every step refuses anything but a regular file with one
  -- link at that name (see core.output_prepare / output_append).
  local ready = false
  local function prepare()
    ready = true
    return core().output_prepare(output, append and opts.keep or 0)
  end
  function s.write(data)
    if data == "" then return true end
    if not ready then
      local ok, perr = prepare()
      if not ok then return nil, perr, "IO" end
    end
    local ok, werr = core().output_append(output, data)
    if not ok then return nil, werr, "IO" end
    s.size = s.size + #data
    return progress()
  end
  function s.finish()
    if not ready then
      local ok, perr = prepare()
      if not ok then return nil, perr end
    end
    return true, nil
  end
  function s.abort() end
  return s
end

local function io_error(message, code)
  if code == "TOO_LARGE" then
    local e = fail("decode", code, message, true)
    e.retryable = false
    return e
  end
  return fail("network", code or "IO", message, true)
end

-- Timeouts for one body read: what is left of the deadline, capped by
-- low_speed_time (no byte for that long = a stalled transfer).
local function body_timeouts(sock, deadline, low)
  local left = deadline - now()
  if left <= 0 then return false end
  local t = low and math_min(left, low) or left
  sock:settimeouts(ms(t), ms(t), ms(t))
  return true
end

local function body_timeout_error(deadline, low)
  if low and deadline - now() > 0.001 then
    return timeout_error("LOW_SPEED", string_format("transfer stalled: no data for %gs", low), true)
  end
  return timeout_error("RECV_TIMEOUT", "request timed out while reading the response body", true)
end

-- Read exactly n bytes into sink (as they arrive: receiveany).
local function read_n(sock, n, sink, deadline, got_before, announced)
  local left = n
  while left > 0 do
    if not body_timeouts(sock, deadline, sink.low) then return nil, body_timeout_error(deadline) end
    local data, err = sock:receiveany(math_min(left, CHUNK))
    if not data then
      if err == "timeout" then return nil, body_timeout_error(deadline, sink.low) end
      local got = (got_before or 0) + (n - left)
      return nil, fail("network", "PARTIAL_BODY", announced
        and string_format("connection %s after %d of %d response body bytes", tostring(err), got, announced)
        or string_format("connection %s inside a chunk of the response body", tostring(err)), true)
    end
    local ok, werr, code = sink.write(data)
    if not ok then return nil, io_error(werr, code) end
    left = left - #data
  end
  return true
end

local function read_chunked(sock, sink, deadline)
  local total = 0
  while true do
    local line, err = read_line(sock, deadline, "chunk size")
    if not line then
      if err.kind == "network" then
        err.code = "PARTIAL_BODY"
        err.message = "connection closed inside a chunked response body"
      end
      return nil, err
    end
    local hex = string_match(line, "^%s*(%x+)%s*[;]?")
    local size = hex and #hex <= 12 and tonumber(hex, 16)
    if not size then
      return nil, fail("network", "BAD_RESPONSE", "malformed chunk size line in the response body", true)
    end
    if size == 0 then
      -- trailer section, until the empty line
      for _ = 1, MAX_HEADER_LINES do
        local t, terr = read_line(sock, deadline, "chunked trailer")
        if not t then return nil, terr end
        if t == "" then return true end
      end
      return nil, fail("network", "BAD_RESPONSE", "too many trailer lines", true)
    end
    if not sink.fits(size) then return nil, too_large(sink.max) end
    local ok, rerr = read_n(sock, size, sink, deadline, total, nil)
    if not ok then return nil, rerr end
    total = total + size
    local crlf, cerr = read_line(sock, deadline, "chunk end")
    if not crlf then
      if cerr.kind == "network" then cerr.code = "PARTIAL_BODY" end
      return nil, cerr
    end
    if crlf ~= "" then
      return nil, fail("network", "BAD_RESPONSE", "chunk data longer than its announced size", true)
    end
  end
end

local function read_until_close(sock, sink, deadline)
  while true do
    if not body_timeouts(sock, deadline, sink.low) then return nil, body_timeout_error(deadline) end
    local data, err = sock:receiveany(CHUNK)
    if data then
      local ok, werr, code = sink.write(data)
      if not ok then return nil, io_error(werr, code) end
    elseif err == "closed" then
      return true
    elseif err == "timeout" then
      return nil, body_timeout_error(deadline, sink.low)
    else
      return nil, fail("network", "RECV_FAILED", "connection " .. tostring(err) .. " while reading the response body",
        true)
    end
  end
end

-- Send head + body pieces. -> true | nil, err
local function send_all(sock, head, body, pieces, deadline)
  local started = false
  local function send(data)
    if not set_timeouts(sock, deadline) then
      -- out of time before the first byte was handed to the socket: never sent
      return nil, timeout_error("SEND_TIMEOUT", "request timed out before sending", started)
    end
    started = true
    local n, err = sock:send(data)
    if n then return true end
    if err == "timeout" then return nil, timeout_error("SEND_TIMEOUT", "request timed out while sending", true) end
    return nil, fail("network", "SEND_FAILED", "connection " .. tostring(err) .. " while sending the request", true)
  end
  if pieces then
    local ok, err = send(head)
    if not ok then return nil, err end
    for _, p in ipairs(pieces) do
      if type(p) == "string" then
        ok, err = send(p)
        if not ok then return nil, err end
      else
        local f, ferr = io_open(p.path, "rb")
        if not f then return nil, io_error("cannot open mime file: " .. tostring(ferr)) end
        local left = p.size
        while left > 0 do
          local data = f:read(math_min(left, CHUNK))
          if not data then f:close(); return nil, io_error("mime file " .. p.path .. " shrank while sending") end
          ok, err = send(data)
          if not ok then f:close(); return nil, err end
          left = left - #data
        end
        f:close()
      end
    end
    return true
  end
  return send(body and (head .. body) or head)
end

-- One attempt on one connection.
-- -> res | nil, err, retry_fresh (the pooled connection was dead before any response byte)
local function exchange(sock, reused, req, head, body, pieces, deadline)
  local ok, err = send_all(sock, head, body, pieces, deadline)
  if not ok then return nil, err, reused and err.code == "SEND_FAILED" end

  local status, version, headers, conn_hdr, te, clen
  local first = true
  while true do
    local line, lerr, nothing = read_line(sock, deadline, "response status line")
    if not line then return nil, lerr, first and reused and nothing and lerr.kind == "network" end
    if first and line == "" then
      -- tolerate one stray empty line before the status line
      line, lerr = read_line(sock, deadline, "response status line")
      if not line then return nil, lerr end
    end
    first = false
    local maj, min, code = string_match(line, "^HTTP/(%d)%.(%d)%s+(%d%d%d)")
    if not maj then
      maj, code = string_match(line, "^HTTP/(%d)%s+(%d%d%d)")
      min = "0"
    end
    if not maj then
      return nil, fail("network", "BAD_RESPONSE", "malformed HTTP status line from the server", true)
    end
    status, version = tonumber(code), maj .. "." .. min
    headers, conn_hdr, te, clen = {}, nil, nil, nil
    local n = 0
    while true do
      local h, herr = read_line(sock, deadline, "response headers")
      if not h then return nil, herr end
      if h == "" then break end
      n = n + 1
      if n > MAX_HEADER_LINES then
        return nil, fail("network", "BAD_RESPONSE", "too many response header lines", true)
      end
      local b = string_byte(h, 1)
      if (b == 32 or b == 9) and #headers > 0 then            -- obsolete line folding
        headers[#headers] = headers[#headers] .. " " .. string_match(h, "^%s*(.-)%s*$")
      else
        local name, value = string_match(h, "^([^:%s]+):%s*(.-)%s*$")
        if not name then
          return nil, fail("network", "BAD_RESPONSE", "malformed response header line", true)
        end
        name = string_lower(name)
        headers[#headers + 1] = name
        headers[#headers + 1] = value
      end
    end
    for i = 1, #headers, 2 do
      local name, value = headers[i], headers[i + 1]
      if name == "connection" then
        conn_hdr = (conn_hdr and (conn_hdr .. ",") or "") .. string_lower(value)
      elseif name == "transfer-encoding" then
        te = (te and (te .. ",") or "") .. string_lower(value)
      elseif name == "content-length" then
        local v = string_match(value, "^%d+$") and tonumber(value)
        if not v or (clen and clen ~= v) then
          return nil, fail("network", "BAD_RESPONSE", "invalid Content-Length in the response", true)
        end
        clen = v
      end
    end
    if status >= 200 or status == 101 then break end
    -- 1xx informational: the final response follows
  end

  local keepalive
  if version == "1.1" then
    keepalive = not (conn_hdr and string_find(conn_hdr, "close", 1, true))
  else
    keepalive = conn_hdr ~= nil and string_find(conn_hdr, "keep-alive", 1, true) ~= nil
  end

  local is2xx = status >= 200 and status <= 299
  local sink = new_sink(is2xx and req.output or nil, is2xx and req.append and status == 206,
    { on_progress = req.on_progress, total = clen, upload = req.upload_size, low = req.low_speed_time,
      max = req.max_body, keep = req.keep })
  local no_body = req.method == "HEAD" or status == 204 or status == 304 or (status >= 100 and status < 200)
  local rok, rerr
  if no_body then
    rok = true
  elseif clen and not sink.fits(clen) then
    -- announced larger than the cap: refused before reading any of it
    rok, rerr = nil, too_large(sink.max)
  elseif not sink.progress() then
    rok, rerr = nil, io_error("aborted by the progress callback", "ABORTED")
  elseif te and string_find(te, "chunked%s*$") then
    rok, rerr = read_chunked(sock, sink, deadline)
  elseif te then
    -- another final transfer coding: the body runs to the end of the connection
    keepalive = false
    rok, rerr = read_until_close(sock, sink, deadline)
  elseif clen then
    rok, rerr = read_n(sock, clen, sink, deadline, 0, clen)
  else
    keepalive = false
    rok, rerr = read_until_close(sock, sink, deadline)
  end
  if not rok then
    sink.abort()
    return nil, rerr
  end
  local fok, body_or_err = sink.finish()
  if not fok then return nil, io_error(body_or_err) end

  if not (keepalive and sock:setkeepalive(ms(cfg.keepalive_timeout), cfg.pool_size)) then
    sock:close()
  end
  local res = { status = status, http_version = version, headers = headers, size = sink.size, url = req.url }
  if not (is2xx and req.output) then res.body = body_or_err or "" end
  return res
end

local function connect(u, pool, connect_timeout, deadline)
  local sock, serr = tcp()
  if not sock then return nil, fail("network", "CONNECT_FAILED", "cannot create a socket: " .. tostring(serr)) end
  if not set_timeouts(sock, deadline, connect_timeout) then
    return nil, timeout_error("CONNECT_TIMEOUT", "request timed out before connecting", false)
  end
  local copts = { pool = pool, pool_size = cfg.pool_size, backlog = cfg.backlog }
  local ok, err = sock:connect(u.connect_host, u.port, copts)
  if not ok then
    err = tostring(err)
    if err == "timeout" then
      return nil, timeout_error("CONNECT_TIMEOUT", string_format("connect to %s:%d timed out", u.host, u.port), false)
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
        return nil, timeout_error("CONNECT_TIMEOUT", "TLS handshake with " .. u.host .. " timed out", false)
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
    pieces, length, ctype = build_mime(req.mime)
    if not pieces then return nil, fail("network", "IO", length, false) end
    body = nil
  elseif body ~= nil then
    length = #body
  elseif method == "POST" or method == "PUT" or method == "PATCH" then
    length = 0
  end
  local lines = { method .. " " .. u.target .. " HTTP/1.1" }
  local names, has = {}, {}
  for name in pairs(hdrs) do
    names[#names + 1] = name
    has[string_lower(name)] = true
  end
  sort(names)
  if not has["host"] then lines[#lines + 1] = "Host: " .. u.authority end
  for _, name in ipairs(names) do
    local lname = string_lower(name)
    if lname ~= "content-length" and lname ~= "transfer-encoding" and not (ctype and lname == "content-type")
       and not (range_from and lname == "range") then
      lines[#lines + 1] = name .. ": " .. tostring(hdrs[name])
    end
  end
  if range_from then lines[#lines + 1] = string_format("Range: bytes=%d-", range_from) end
  if ctype then lines[#lines + 1] = "Content-Type: " .. ctype end
  if length then lines[#lines + 1] = "Content-Length: " .. string_format("%d", length) end
  lines[#lines + 1] = "\r\n"
  local head = concat(lines, "\r\n")

  local pool = string_format("ugen:%s:%s:%d", u.scheme, u.host, u.port)
  local idempotent = req.idempotent
  if idempotent == nil then idempotent = IDEMPOTENT[method] == true end
  local reqv = {
    method = method, output = req.output, url = url, append = range_from ~= nil, keep = range_from,
    max_body = _M.MAX_BODY,
    on_progress = type(req.on_progress) == "function" and req.on_progress or nil,
    low_speed_time = tonumber(req.low_speed_time), upload_size = length or 0,
  }
  -- a pooled connection found dead before any response byte: resent on a new
  -- one only when the request may be sent twice
  local fresh_retries = idempotent and 2 or 0
  while true do
    local sock, reused_or_err = connect(u, pool, connect_timeout, deadline)
    if not sock then return nil, reused_or_err end
    local reused = reused_or_err
    local res, err, retry_fresh = exchange(sock, reused, reqv, head, body, pieces, deadline)
    if res then return res end
    sock:close()
    if not (retry_fresh and fresh_retries > 0 and deadline > now()) then return nil, err end
    fresh_retries = fresh_retries - 1
  end
end

function _M.request(req)
  _M.check_phase("an HTTP request")
  if type(req) ~= "table" then
    error("bad argument #1 to 'request' (table expected, got " .. type(req) .. ")", 2)
  end
  local method = req.method or ((req.body or req.mime) and "POST" or "GET")
  if type(method) ~= "string" or not string_match(method, "^[!#$%%&'*+%-.^_`|~%w]+$") then
    error("bad argument #1 to 'request' (invalid HTTP method)", 2)
  end
  if req.body ~= nil and type(req.body) ~= "string" then
    error("bad argument #1 to 'request' (req.body must be a string)", 2)
  end
  local hdrs = {}
  for name, v in pairs(req.headers or {}) do
    v = tostring(v)
    if type(name) ~= "string" or string_find(name, "[\r\n%z:]") or string_find(v, "[\r\n%z]") then
      error("bad argument #1 to 'request' (header '" .. string_gsub(tostring(name), "[%c]", "?") ..
            "' contains a line break)", 2)
    end
    hdrs[name] = v
  end
  local deadline = now() + (tonumber(req.timeout) or 60)
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
    if not loc then return res end
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

_M.build_mime = build_mime

return _M
