-- ugen.transport.haproxy: the HAProxy adapter (HAProxy 2.6+, Lua 5.3/5.4).
-- Every wait yields to HAProxy: a request made from a Lua task, service or
-- action never stops the proxy. Two ways to send, chosen per request (per
-- redirect hop):
--
--   core.httpclient   methods GET, HEAD, PUT, POST, DELETE (all the API uses),
--                     http and https, host names resolved by HAProxy's
--                     resolvers. TLS is HAProxy's and verified: the global
--                     `httpclient.ssl.verify` (default required) against
--                     `httpclient.ssl.ca-file` (default @system-ca). The body
--                     is held in memory both ways: a body for req.output is
--                     written to the file (as ugen.transport.body_sink writes
--                     it) once it has arrived, and an https multipart upload
--                     is assembled in memory. One fresh httpclient per request
--                     (2.6 hangs on a second request after a POST).
--   core.tcp + ugen.transport.http1 (+ ugen.transport.http1_client's rules)
--                     to an http:// URL whose host is an IPv4 address (core.tcp
--                     resolves no names): a multipart upload (req.mime, files
--                     streamed from disk) and any method httpclient lacks.
--                     Not downloads: HAProxy 2.6's socket stops being woken once
--                     a response has filled its buffer (tune.bufsize, 16384
--                     bytes), so a larger response arrives only when the read
--                     timeout fires (measured on 2.6.12; httpclient does not
--                     have this problem).
--   Refused before anything is sent (never silently insecure): a method
--   httpclient lacks to https:// (kind "tls", code TLS_UNVERIFIED: core.tcp's
--   TLS verifies no certificate in 2.6) or to a host name (kind "network",
--   code UNSUPPORTED); req.cainfo / req.capath with https (kind "tls", code
--   CAINFO_UNSUPPORTED: set `httpclient.ssl.ca-file` in haproxy.cfg instead).
--
-- Limits of the httpclient way (HAProxy 2.6), from HAProxy's API:
--   * httpclient's own `timeout` makes HAProxy resend the request when it
--     fires (a POST four times, measured), so none is given. The exchange runs
--     in a HAProxy task of its own and the caller waits for it (core.msleep,
--     every 2 ms at first, then up to every 20 ms) until req.timeout's
--     deadline: then kind "timeout", code RECV_TIMEOUT, sent = true; the
--     request runs on in its task until HAProxy ends it, its answer dropped.
--   * HAProxy answers a failed connection (503, after its retries), a timeout
--     (504) and an invalid answer (502) itself, with its built-in error pages,
--     and a host name its resolvers cannot resolve with a bare 503 (no body,
--     no header but Content-Length): those are mapped to errors (network
--     CONNECT_FAILED with sent = false, timeout RECV_TIMEOUT, network
--     BAD_RESPONSE), never taken as API answers.
--   * A body shorter than its Content-Length (a connection cut) is network
--     PARTIAL_BODY; a chunked body cut short cannot be told from a whole one.
--   * A body kept in memory over MAX_BODY is decode TOO_LARGE (checked once it
--     has arrived); req.on_progress runs once, after the body;
--     req.low_speed_time is not applied (nor over core.tcp, whose reads end
--     the connection when their timeout fires: the deadline bounds them).
--
--   local t = require "ugen.transport.haproxy"   -- raises outside HAProxy
--   t.request(req) -> res | nil, err              (see ugen.transport)
--     raises where HAProxy cannot send: while a Lua file loads (its body,
--     core.register_init); in a sample fetch or converter HAProxy itself
--     aborts the fetch ("yield not allowed")
--   t.in_haproxy() -> boolean

local type, pairs, ipairs, tostring, tonumber, error, rawget, require, setmetatable, pcall =
  type, pairs, ipairs, tostring, tonumber, error, rawget, require, setmetatable, pcall
local string_lower, string_find, string_match, string_format, string_sub =
  string.lower, string.find, string.match, string.format, string.sub
local concat, io_open = table.concat, io.open
local math_max, math_floor = math.max, math.floor

local _M = {
  _VERSION = "0.1.0",
  MAX_BODY = 64 * 1024 * 1024,   -- cap on a body held in memory: the curl transport's MAX_BODY
}

-- Running inside HAProxy's Lua (the `core` class with its tasks and services)?
function _M.in_haproxy()
  local c = rawget(_G, "core")
  return type(c) == "table" and type(c.register_service) == "function"
    and type(c.register_task) == "function" and type(c.msleep) == "function" and type(c.tcp) == "function"
end

if not _M.in_haproxy() then
  error("ugen.transport.haproxy needs HAProxy's Lua (core.register_task, core.tcp are not available here)", 2)
end

local hcore = rawget(_G, "core")
local http1 = require "ugen.transport.http1"
local http1_client = require "ugen.transport.http1_client"
local multipart = require "ugen.transport.multipart"
local body_sink = require "ugen.transport.body_sink"
local native = require "ugen.native"
local fail = http1.fail

local now = native.now
local co_isyieldable = rawget(coroutine, "isyieldable")

local CONTEXT = "ugen: an HTTP request cannot run here: HAProxy allows one only in a task, a service or an " ..
  "action (core.register_task / register_service / register_action), not while a Lua file loads (its body, " ..
  "core.register_init) nor in a sample fetch or a converter"

---------------------------------------------------------------------------
-- core.tcp as a cosocket-like object for ugen.transport.http1

-- HAProxy's socket: receive(n) waits for n bytes and returns what it has
-- (without an error) when the connection closes or its timeout fires, which
-- also ends the connection; the next read then fails. The time tells which.
-- A receive(n) of tune.bufsize bytes or more (16384 by default) returns only
-- when the timeout fires, so reads ask for at most READ_MAX bytes; and once a
-- response has filled that buffer the socket is not woken again until the
-- timeout fires (2.6.12): responses are small on the routes core.tcp takes.
local READ_MAX = 4096
local S = {}
S.__index = S

local function closed_or_timeout(self)
  if now() >= self.expire - 0.002 then return "timeout" end
  return "closed"
end

-- A socket HAProxy has ended raises on use ("not yet initialised"): every
-- call is protected, and such a socket reads as closed.
function S:settimeouts(_, _, read_ms)
  local s = read_ms / 1000
  self.expire = now() + s
  if not self.dead and not pcall(self.sock.settimeout, self.sock, s) then self.dead = "closed" end
end

function S:send(data)
  if self.dead then return nil, self.dead end
  local ok, n = pcall(self.sock.send, self.sock, data)
  if ok and type(n) == "number" and n >= #data then return n end
  self.dead = closed_or_timeout(self)
  return nil, self.dead
end

function S:receiveany(max)
  if self.dead then return nil, self.dead end
  if max > READ_MAX then max = READ_MAX end
  local ok, data, err = pcall(self.sock.receive, self.sock, max)
  if not ok then data, err = nil, data end
  if data == nil or (data == "" and err ~= nil) then
    self.dead = closed_or_timeout(self)
    return nil, self.dead
  end
  if #data < max then self.dead = closed_or_timeout(self) end   -- the next read fails
  if data == "" then return nil, self.dead end
  return data
end

-- receiveuntil("\n"): HAProxy's receive("*l") reads one line (without CR LF);
-- the reader hands it over, then says "end of line" (nil, nil)
function S:receiveuntil()
  local at_end = false
  return function()
    if at_end then
      at_end = false
      return nil, nil
    end
    if self.dead then return nil, self.dead end
    local ok, line = pcall(self.sock.receive, self.sock, "*l")
    if not ok or line == nil then
      self.dead = closed_or_timeout(self)
      return nil, self.dead
    end
    at_end = true
    return line
  end
end

function S:close()
  if not self.closed then
    self.closed = true
    pcall(self.sock.close, self.sock)
  end
end

local function is_ipv4(h)
  local a, b, c, d = string_match(h, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  return a ~= nil and tonumber(a) < 256 and tonumber(b) < 256 and tonumber(c) < 256 and tonumber(d) < 256
end

local function tcp_connect(u, connect_timeout, deadline)
  local left = deadline - now()
  if left <= 0 then return nil, fail("timeout", "CONNECT_TIMEOUT", "request timed out before connecting", false) end
  local sock = hcore.tcp()
  local self = setmetatable({ sock = sock }, S)
  local t = connect_timeout and connect_timeout < left and connect_timeout or left
  self:settimeouts(nil, nil, t * 1000)
  local pok, ok, err = pcall(sock.connect, sock, u.connect_host, u.port)
  if not pok then ok, err = nil, ok end
  if not ok then
    self:close()
    if closed_or_timeout(self) == "timeout" then
      return nil, fail("timeout", "CONNECT_TIMEOUT", string_format("connect to %s:%d timed out", u.host, u.port), false)
    end
    return nil, fail("network", "CONNECT_FAILED",
      string_format("cannot connect to %s:%d: %s", u.host, u.port, tostring(err)), false)
  end
  return self, false
end

---------------------------------------------------------------------------
-- core.httpclient

local HC_METHODS = { GET = "get", HEAD = "head", PUT = "put", POST = "post", DELETE = "delete" }
-- how often the caller looks for the answer: 2 ms at first, then less often, up to 20 ms
local POLL_FIRST, POLL_MAX = 0.002, 0.02

-- HAProxy's own answers (its built-in error pages), told apart from a server's
local OWN = {
  [502] = { "The server returned an invalid or incomplete response.", "network", "BAD_RESPONSE", true },
  [503] = { "No server is available to handle this request.", "network", "CONNECT_FAILED", false },
  [504] = { "The server didn't respond in time.", "timeout", "RECV_TIMEOUT", true },
}

local function own_error(r, url, method)
  local o = OWN[r.status]
  local body = r.body
  -- a name HAProxy's resolvers cannot resolve: a bare 503, no body, no other header
  if r.status == 503 and method ~= "HEAD" and (body == nil or body == "") then
    local n = 0
    for name in pairs(r.headers or {}) do
      n = n + 1
      if string_lower(tostring(name)) ~= "content-length" then n = 99 end
    end
    if n <= 1 then
      return fail("network", "CONNECT_FAILED", "HAProxy's httpclient could not reach " .. url .. " (a host name " ..
        "HAProxy's resolvers cannot resolve? they read no /etc/hosts; see `httpclient.resolvers.id`)", false)
    end
  end
  if not o or type(body) ~= "string" or string_sub(body, 1, 16) ~= "<html><body><h1>"
     or not string_find(body, o[1], 1, true) then
    return nil
  end
  return fail(o[2], o[3], string_format("HAProxy's httpclient: %s (%s); HAProxy's log says why (connection " ..
    "refused, name not resolved, TLS verification failed, ...)", o[1], url), o[4])
end

-- the request body as one string (a multipart body read into memory)
local function whole_body(req, method)
  if method == "GET" or method == "HEAD" then return nil end
  if req.mime then
    local pieces, length_or_err, ctype = multipart.build(req.mime)
    if not pieces then return nil, length_or_err end
    local parts = {}
    for _, p in ipairs(pieces) do
      if type(p) == "string" then
        parts[#parts + 1] = p
      else
        local f, ferr = io_open(p.path, "rb")
        if not f then return nil, "cannot open mime file: " .. tostring(ferr) end
        local data = f:read(p.size) or ""
        f:close()
        if #data ~= p.size then return nil, "mime file " .. p.path .. " shrank while sending" end
        parts[#parts + 1] = data
      end
    end
    return concat(parts), nil, ctype
  end
  return req.body
end

local function httpclient_once(url, req, method, hdrs, deadline, range_from)
  local body, berr, ctype = whole_body(req, method)
  if berr then
    local e = fail("io", "IO", berr, false)
    e.retryable = false
    return nil, e
  end
  local headers = {}
  for name, v in pairs(hdrs) do
    local l = string_lower(name)
    if l ~= "content-length" and l ~= "transfer-encoding" and l ~= "host"
       and not (ctype and l == "content-type") and not (range_from and l == "range") then
      headers[name] = { v }
    end
  end
  if ctype then headers["Content-Type"] = { ctype } end
  if range_from then headers["Range"] = { string_format("bytes=%d-", range_from) } end
  if deadline <= now() then
    return nil, fail("timeout", "CONNECT_TIMEOUT", "request timed out before connecting", false)
  end
  -- HAProxy gives no httpclient while loading (a file's body, register_init)
  if hcore.httpclient() == nil then error(CONTEXT, 0) end
  -- The exchange runs in a task of its own (an httpclient wakes the task that
  -- made it), so that the caller waits at most until the deadline: a request
  -- still running then is left to finish there, its answer dropped.
  local box = { done = false }
  local hreq = { url = url, headers = headers, body = body }
  hcore.register_task(function()
    local ok, r = pcall(function()
      local hc = hcore.httpclient()
      return hc[HC_METHODS[method]](hc, hreq)
    end)
    box.r = ok and r or nil
    box.err = not ok and tostring(r) or nil
    box.done = true
  end)
  local step = POLL_FIRST
  while not box.done do
    local left = deadline - now()
    if left <= 0 then
      return nil, fail("timeout", "RECV_TIMEOUT", "request timed out (HAProxy's httpclient is still waiting for " ..
        url .. ")", true)
    end
    hcore.msleep(math_max(1, math_floor((step < left and step or left) * 1000 + 0.5)))
    if step < POLL_MAX then step = step * 2 end
  end
  local r = box.r
  if box.err then return nil, fail("network", "RECV_FAILED", "HAProxy's httpclient failed: " .. box.err, true) end
  if type(r) ~= "table" or type(r.status) ~= "number" or r.status == 0 then
    return nil, fail("network", "RECV_FAILED", "HAProxy's httpclient gave no response for " .. url, true)
  end
  local oerr = own_error(r, url, method)
  if oerr then return nil, oerr end
  local flat, clen = {}, nil
  for name, vals in pairs(r.headers or {}) do
    name = string_lower(tostring(name))
    local i = 0
    while vals[i] ~= nil do
      flat[#flat + 1] = name
      flat[#flat + 1] = tostring(vals[i])
      if name == "content-length" then clen = tonumber(vals[i]) end
      i = i + 1
    end
  end
  local data = r.body or ""
  local status = r.status
  if method ~= "HEAD" and status ~= 204 and status ~= 304 and clen and #data < clen then
    return nil, fail("network", "PARTIAL_BODY", string_format("connection closed after %d of %d response body bytes",
      #data, clen), true)
  end
  local is2xx = status >= 200 and status <= 299
  local output = is2xx and req.output or nil
  local sink = body_sink.new(output, is2xx and range_from ~= nil and status == 206,
    { on_progress = type(req.on_progress) == "function" and req.on_progress or nil, total = clen,
      upload = body and #body or 0, max = _M.MAX_BODY, keep = range_from })
  if not sink.fits(#data) then
    local e = fail("decode", "TOO_LARGE", body_sink.too_large_message(sink.max), true)
    e.retryable = false
    return nil, e
  end
  local ok, werr, code = sink.write(data)
  if ok and data == "" then ok, werr, code = sink.progress() end
  if ok then ok, werr = sink.finish() end
  if not ok then
    if code == "ABORTED" then return nil, fail("network", "ABORTED", werr, true) end
    local e = fail("io", "IO", werr, true)
    e.retryable = false
    return nil, e
  end
  return { status = status, http_version = "1.1", headers = flat, size = sink.size, url = url,
           body = not output and data or nil }
end

---------------------------------------------------------------------------
-- the adapter

local conn = {
  now = now,
  connect = tcp_connect,
  release = function(sock) sock:close() end,   -- no pool: a core.tcp socket is its task's
  max_body = function() return _M.MAX_BODY end,
  check = function(u, req)
    if u.scheme == "https" and (req.cainfo or req.capath) then
      return fail("tls", "CAINFO_UNSUPPORTED", "the haproxy transport cannot use cainfo/capath per request; " ..
        "set the CA bundle with `httpclient.ssl.ca-file` in haproxy.cfg's global section instead", false)
    end
  end,
}

-- which way this hop goes: httpclient, unless core.tcp must (and can) carry it
function conn.other(u, url, req, method, hdrs, deadline, range_from)
  local by_socket = req.mime ~= nil or not HC_METHODS[method]
  if by_socket and u.scheme == "http" and is_ipv4(u.connect_host) then return false end
  if not HC_METHODS[method] then
    if u.scheme == "https" then
      return true, nil, fail("tls", "TLS_UNVERIFIED", "HAProxy's httpclient cannot send " .. method .. " and " ..
        "core.tcp cannot verify TLS certificates: refused rather than sent unverified", false)
    end
    return true, nil, fail("network", "UNSUPPORTED", "HAProxy's httpclient cannot send " .. method .. " and " ..
      "core.tcp needs an IPv4 address, not the host name " .. u.host, false)
  end
  if type(hcore.httpclient) ~= "function" then
    return true, nil, fail("network", "UNSUPPORTED", "this HAProxy has no core.httpclient (HAProxy 2.5+ needed)",
      false)
  end
  return true, httpclient_once(url, req, method, hdrs, deadline, range_from)
end

function _M.request(req)
  if co_isyieldable and not co_isyieldable() then error(CONTEXT, 0) end
  local res, err = http1_client.request(req, conn, 2)
  return res, err
end

return _M
