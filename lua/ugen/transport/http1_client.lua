-- ugen.transport.http1_client: the request loop of the socket transports
-- (ugen.transport.ngx over lua-nginx-module cosockets, ugen.transport.haproxy
-- over HAProxy's core.tcp). The rules every such transport shares live here
-- once: request checks, the deadline, resume, the request body (a string or
-- multipart), resends on a fresh connection, redirects. The connection itself
-- is the caller's; the messages are ugen.transport.http1's.
--
--   http1_client.request(req, conn[, level]) -> res | nil, err
--     req: the transport contract (ugen.transport); argument errors are raised
--     at `level` (default 2: the caller of request). conn = {
--       now = fn() -> seconds (the deadline's clock),
--       connect = fn(u, connect_timeout, deadline) -> sock, reused | nil, err
--         (u: parse_url's result; sock: cosocket-like, see ugen.transport.http1),
--       release = fn(sock, keepalive, u, reused): keepalive true when the response
--         was read completely and the server allows reuse (pool it or close it),
--       acquire = fn(u, deadline) -> done() | nil, err (optional: wait for a place
--         among the origin's connections; done() gives it back after the exchange),
--       check = fn(u, req) -> nil | err (optional: refuse a URL before anything
--         is sent),
--       other = fn(u, url, req, method, headers, deadline, range_from) -> handled,
--         res | nil, err (optional: send this hop another way; handled false:
--         the socket way),
--       max_body = fn() -> the cap of a body kept in memory, in bytes }
--   http1_client.parse_url(s) -> ugen.url's parse result plus connect_host (an
--     IPv6 literal without its brackets) | nil, message
--
-- Behaviour: see ugen.transport.ngx (req.mime, req.output, req.resume_from,
-- req.follow, req.on_progress, req.low_speed_time, req.timing, idempotent resends).

local type, pairs, tostring, tonumber, require = type, pairs, tostring, tonumber, require
local string_match, string_lower, string_find, string_gsub, string_sub =
  string.match, string.lower, string.find, string.gsub, string.sub
local url_mod = require "ugen.url"
local args = require "ugen.args"
local http1 = require "ugen.transport.http1"
local multipart = require "ugen.transport.multipart"
local body_sink = require "ugen.transport.body_sink"
local fail = http1.fail
local argerror = args.argerror

local _M = { _VERSION = "0.1.0" }

-- the C core (file sizes for resume); loaded on first use
local function core() return require "ugen.native" end

function _M.parse_url(s)
  if type(s) ~= "string" then return nil, "request URL is not a string" end
  local u, err = url_mod.parse(s)
  if not u then return nil, "request " .. err end
  u.connect_host = string_sub(u.host, 1, 1) == "[" and string_sub(u.host, 2, -2) or u.host
  return u
end
local parse_url = _M.parse_url

local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true, TRACE = true }
_M.IDEMPOTENT = IDEMPOTENT

---------------------------------------------------------------------------
-- requests

local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }
local MAX_REDIRECTS = 5
local CREDENTIAL_HEADERS = { authorization = true, ["x-api-key"] = true, cookie = true, ["proxy-authorization"] = true }

local function NOTHING() end

-- One request/response exchange on url (after redirects are resolved by the caller).
local function request_once(req, conn, url, method, hdrs, deadline, range_from)
  local u, perr = parse_url(url)
  if not u then return nil, fail("network", "BAD_URL", perr, false) end
  if conn.check then
    local cerr = conn.check(u, req)
    if cerr then return nil, cerr end
  end
  if conn.other then
    -- a transport with a second way to send (HAProxy's httpclient) takes this hop
    local handled, res, oerr = conn.other(u, url, req, method, hdrs, deadline, range_from)
    if handled then return res, oerr end
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
        max = conn.max_body(), keep = range_from })
  end
  -- a pooled connection found dead before any response byte: resent on a new
  -- one only when the request may be sent twice
  local fresh_retries = idempotent and 2 or 0
  -- a place among the pool's connections (conn.acquire), held for the exchange
  local done = NOTHING
  if conn.acquire then
    local aerr
    done, aerr = conn.acquire(u, deadline)
    if not done then return nil, aerr end
  end
  while true do
    local sock, reused_or_err = conn.connect(u, connect_timeout, deadline)
    if not sock then done(); return nil, reused_or_err end
    local reused = reused_or_err
    local res, err_or_keepalive, retry_fresh =
      http1.exchange(sock, reused, reqv, head, body, pieces, deadline, conn.now)
    if res then
      -- back to the pool only when read completely and the server allows it
      conn.release(sock, err_or_keepalive == true, u, reused)
      done()
      if req.timing then res.timing = { reused = reused } end
      return res
    end
    local err = err_or_keepalive
    conn.release(sock, false, u, reused)
    if not (retry_fresh and fresh_retries > 0 and deadline > conn.now()) then done(); return nil, err end
    fresh_retries = fresh_retries - 1
  end
end

function _M.request(req, conn, level)
  level = (level or 1) + 1
  args.check_table(req, 1, "request", level)
  local method = req.method or ((req.body or req.mime) and "POST" or "GET")
  if type(method) ~= "string" or not string_match(method, "^[!#$%%&'*+%-.^_`|~%w]+$") then
    argerror(1, "request", "invalid HTTP method", level)
  end
  if req.body ~= nil and type(req.body) ~= "string" then
    argerror(1, "request", "req.body must be a string", level)
  end
  local hdrs = {}
  for name, v in pairs(req.headers or {}) do
    v = tostring(v)
    if type(name) ~= "string" or string_find(name, "[\r\n%z:]") or string_find(v, "[\r\n%z]") then
      argerror(1, "request", "header '" .. string_gsub(tostring(name), "[%c]", "?") .. "' contains a line break", level)
    end
    hdrs[name] = v
  end
  local t0 = conn.now()
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
    local res, err = request_once(req, conn, url, method, hdrs, deadline, range_from)
    if not res then return nil, err end
    local loc
    if req.follow and REDIRECT[res.status] then
      for i = 1, #res.headers, 2 do
        if res.headers[i] == "location" then loc = res.headers[i + 1] end
      end
    end
    if not loc then
      -- req.timing: the whole call (redirects included) on the transport's clock
      if res.timing then res.timing.total = conn.now() - t0 end
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
