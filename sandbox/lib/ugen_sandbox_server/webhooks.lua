-- ugen_sandbox_server.webhooks: job.completed / job.failed deliveries.
--
-- Deliveries run in ngx.timer.at callbacks over cosockets (never blocking the
-- worker). Each attempt POSTs the same JSON body with a fresh
-- X-UGen-Timestamp (unix seconds) and, when the tenant has a secret,
-- X-UGen-Signature = lowercase hex HMAC-SHA256(secret, timestamp .. "." .. body)
-- made by ugen.webhook.sign (the SDK's signing code, over ugen.crypto). A receiver that does not
-- answer 2xx within the timeout is retried at +1 s, +4 s, +16 s (divided by
-- --speed), then the delivery is abandoned (status "failed").
-- Only loopback receivers are contacted (127.0.0.0/8, localhost; http:// or
-- https://); other URLs are logged as "skipped". https:// receivers: a plain
-- sandbox does not verify their certificate; a TLS sandbox (start{ tls = true })
-- verifies it against its own CA (lua_ssl_trusted_certificate in nginx.conf),
-- and the host name too when the URL names one (localhost). For an IP literal
-- only the chain is verified and no SNI is sent: nginx's cosocket checks names
-- with X509_check_host, which never matches an IP address SAN.
-- URLs are checked twice: by check_url at the API boundary (a 422), and by
-- request_bytes, which builds every delivery request and refuses (never
-- sends) a target, Host or header holding anything but URL characters and
-- control-free values.

local util = require "ugen_sandbox_server.util"
local signing = require "ugen.webhook" -- the SDK's own signing code

local _M = {}

local json = util.json
local ngx = ngx
local type, ipairs, tostring, tonumber, floor, concat, format =
  type, ipairs, tostring, tonumber, math.floor, table.concat, string.format

_M.SCHEDULE = { 1, 4, 16 }       -- seconds before retry 1, 2, 3
_M.TIMEOUT = 10                  -- seconds the receiver has to answer

local cfg = { speed = 1 } -- the server config (its speed can change at run time)

function _M.init(conf)
  cfg = conf
end

-- Webhook URLs: one absolute http(s) URL of RFC 3986 characters only (no
-- spaces, no controls, no raw non-ASCII: those must be %-escaped), every "%"
-- a %XX escape, no user info, a host name or IPv4 address, an optional port
-- 1-65535. The fragment is not sent. These are the only bytes a delivery
-- puts on its request line and Host header.
local URL_CHARS = "^[%w%-%._~:/%?#%[%]@!%$&'%(%)%*%+,;=%%]*$"
local MAX_URL = 2048

--- -> scheme, host, port, target (path and query) | nil, message
function _M.parse_url(url)
  if type(url) ~= "string" then return nil, "must be a string" end
  if #url > MAX_URL then return nil, "is longer than " .. MAX_URL .. " characters" end
  if not url:find(URL_CHARS) then
    return nil, "holds a character that is not allowed in a URL (space, control character or raw non-ASCII byte)"
  end
  if url:gsub("%%%x%x", ""):find("%", 1, true) then return nil, "holds a '%' that is not a %XX escape" end
  local scheme, authority, target = url:match("^(%a[%w+.-]*)://([^/?#]*)([^#]*)")
  if not scheme then return nil, "must be an absolute http(s) URL" end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then return nil, "must be an absolute http(s) URL" end
  if authority:find("@", 1, true) then return nil, "must not hold user credentials" end
  local host, port = authority:match("^([^:]*):(%d*)$")
  if not host then host, port = authority, nil end
  if not host:find("^[%w][%w%-%.]*$") then return nil, "must name a host" end
  if port == "" then return nil, "has an empty port" end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if port < 1 or port > 65535 then return nil, "has a port outside 1-65535" end
  if target == "" or target:sub(1, 1) == "?" then target = "/" .. target end
  return scheme, host:lower(), port, target
end

function _M.is_loopback(host)
  return host == "localhost" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

--- nil when the URL is acceptable as a webhook target, else a message.
function _M.check_url(url)
  local scheme, host_or_err = _M.parse_url(url)
  if not scheme then
    return "Value error, webhook_url must be an absolute http(s) URL without spaces or control "
      .. "characters (it " .. host_or_err .. ")"
  end
  local host = host_or_err
  if scheme == "http" and not _M.is_loopback(host) then
    return "Value error, webhook_url must use https (the sandbox also accepts http:// loopback URLs)"
  end
  return nil
end

-- The last line of defence before bytes go on the wire: whatever reached the
-- delivery code, nothing but visible ASCII goes on the request line, and
-- header names are tokens and values free of controls (no CR/LF).
local TARGET_OK = "^/[%w%-%._~:/%?%[%]@!%$&'%(%)%*%+,;=%%]*$"
local TOKEN_OK = "^[%w!#%$%%&'%*%+%-%.%^_`|~]+$"

--- The whole POST request for url -> string | nil, message (nothing is sent).
-- headers: list of { name, value }.
function _M.request_bytes(url, headers, body)
  local scheme, host, port, target = _M.parse_url(url)
  if not scheme then return nil, "refused URL: it " .. host end
  if not target:find(TARGET_OK) or not host:find("^[%w%-%.]+$") then
    return nil, "refused URL: unsafe request target"
  end
  local req = { "POST ", target, " HTTP/1.1\r\nHost: ", host, ":", tostring(port), "\r\n" }
  for _, h in ipairs(headers) do
    local name, value = h[1], tostring(h[2])
    if type(name) ~= "string" or not name:find(TOKEN_OK) then
      return nil, "refused header name " .. format("%q", tostring(name))
    end
    if value:find("[%c\127]") then return nil, "refused header " .. name .. ": control character in the value" end
    req[#req + 1] = name .. ": " .. value .. "\r\n"
  end
  req[#req + 1] = "Content-Length: " .. #body .. "\r\nConnection: close\r\n\r\n"
  req[#req + 1] = body
  return concat(req)
end

-- -> status | nil, message, permanent (true: retrying cannot help)
-- reset: send the request, then close without reading the answer (X-Sandbox-Fault: webhook=reset)
local function post(url, headers, body, timeout, reset)
  local req, rerr = _M.request_bytes(url, headers, body)
  if not req then return nil, rerr, true end
  local scheme, host, port = _M.parse_url(url)
  local sock = ngx.socket.tcp()
  local ms = floor(timeout * 1000)
  sock:settimeouts(ms, ms, ms)
  local ok, err = sock:connect(host == "localhost" and "127.0.0.1" or host, port)
  if not ok then return nil, "connect: " .. tostring(err) end
  if scheme == "https" then
    local verify, name = cfg.tls == true, host
    if verify and host:find("^%d+%.%d+%.%d+%.%d+$") then name = nil end -- chain only (see the top)
    -- pcall: lua-resty-core 0.1.25 (Debian 12) raises "assertion failed!"
    -- instead of returning the error when a verifying handshake completes
    -- at once and then fails its certificate or host check (the C side
    -- returns OK with the error recorded); that is a failed verification.
    local pok, r1, r2 = pcall(sock.sslhandshake, sock, nil, name, verify)
    if pok then
      ok, err = r1, r2
    elseif tostring(r1):find("assertion failed", 1, true) then
      ok, err = nil, "the certificate did not verify (chain or host name)"
    else
      ok, err = nil, r1
    end
    if not ok then sock:close(); return nil, "tls: " .. tostring(err) end
  end
  ok, err = sock:send(req)
  if not ok then sock:close(); return nil, "send: " .. tostring(err) end
  if reset then
    sock:close()
    return nil, "reset by the sandbox after sending (X-Sandbox-Fault: webhook=reset)"
  end
  local line
  line, err = sock:receive("*l")
  sock:close()
  if not line then return nil, "receive: " .. tostring(err) end
  local status = tonumber(line:match("^HTTP/%d%.?%d?%s+(%d%d%d)"))
  if not status then return nil, "bad status line" end
  return status
end

local attempt

attempt = function(premature, d, secret, body, n)
  if premature then
    d.status = "abandoned"
    return
  end
  local ts = tostring(ngx.time())
  local headers = {
    { "Content-Type", "application/json" },
    { "User-Agent", "U-Gen-Sandbox-Webhooks/0.1" },
    { "X-UGen-Event", d.event },
    { "X-UGen-Delivery", d.id },
    { "X-UGen-Timestamp", ts },
  }
  if secret then
    headers[#headers + 1] = { "X-UGen-Signature", signing.sign(secret, ts, body) }
  end
  ngx.update_time()
  local started = ngx.now()
  local timeout = math.max(1, _M.TIMEOUT / cfg.speed)
  local status, err, permanent = post(d.url, headers, body, timeout, n == 1 and d.fault == "reset")
  ngx.update_time()
  local a = { attempt = n, at = util.iso(started), timestamp = tonumber(ts),
              response_status = util.orNull(status), error = util.orNull(err),
              duration_ms = floor((ngx.now() - started) * 1000) }
  d.attempts[#d.attempts + 1] = a
  d.updated_at = util.iso(ngx.now())
  if status and status >= 200 and status < 300 then
    d.status = "delivered"
    d.next_attempt_at = json.null
    return
  end
  if n <= #_M.SCHEDULE and not permanent then
    local delay = _M.SCHEDULE[n] / cfg.speed
    d.status = "retrying"
    d.next_attempt_at = util.iso(ngx.now() + delay)
    local ok, terr = ngx.timer.at(delay, attempt, d, secret, body, n + 1)
    if not ok then
      d.status = "failed"
      d.error = "cannot schedule retry: " .. tostring(terr)
    end
  else
    d.status = "failed"
    d.next_attempt_at = json.null
  end
end

--- Queue a delivery; returns the delivery log record.
-- log: the tenant's delivery list; payload: the event table.
-- fault: the job's X-Sandbox-Fault webhook= directive ("reset": the first attempt is cut; the
-- caller dispatches twice for "duplicate").
function _M.dispatch(log, event, payload, url, secret, fault)
  local body = assert(json.encode(payload))
  local d = {
    id = util.uuid4(), event = event, job_id = payload.job_id, url = url, fault = fault,
    signed = secret ~= nil, status = "pending", attempts = util.array(),
    created_at = util.iso(ngx.now()), updated_at = util.iso(ngx.now()),
    next_attempt_at = json.null, payload = body,
  }
  log[#log + 1] = d
  local scheme, host_or_err = _M.parse_url(url)
  if not scheme then
    d.status = "skipped"
    d.reason = "not a valid webhook URL: it " .. host_or_err
    return d
  end
  if not _M.is_loopback(host_or_err) then
    d.status = "skipped"
    d.reason = "the sandbox only delivers to loopback receivers (127.0.0.0/8, localhost)"
    return d
  end
  local ok, err = ngx.timer.at(0, attempt, d, secret, body, 1)
  if not ok then
    d.status = "failed"
    d.error = "cannot schedule delivery: " .. tostring(err)
  end
  return d
end

return _M
