-- ugen_sandbox.webhooks: job.completed / job.failed deliveries.
--
-- Deliveries run in ngx.timer.at callbacks over cosockets (never blocking the
-- worker). Each attempt POSTs the same JSON body with a fresh
-- X-UGen-Timestamp (unix seconds) and, when the tenant has a secret,
-- X-UGen-Signature = lowercase hex HMAC-SHA256(secret, timestamp .. "." .. body)
-- made by ugen.webhook.sign (the SDK's signing code, over ugen.crypto). A receiver that does not
-- answer 2xx within the timeout is retried at +1 s, +4 s, +16 s (divided by
-- --speed), then the delivery is abandoned (status "failed").
-- Only loopback receivers are contacted (127.0.0.0/8, localhost; http:// or
-- https:// without certificate verification); other URLs are logged as
-- "skipped".

local util = require "ugen_sandbox.util"
local signing = require "ugen.webhook" -- the SDK's own signing code

local _M = {}

local json = util.json
local ngx = ngx
local tostring, tonumber, floor = tostring, tonumber, math.floor

_M.SCHEDULE = { 1, 4, 16 }       -- seconds before retry 1, 2, 3
_M.TIMEOUT = 10                  -- seconds the receiver has to answer

local cfg = { speed = 1 } -- the server config (its speed can change at run time)

function _M.init(conf)
  cfg = conf
end

--- -> scheme, host, port, path | nil
function _M.parse_url(url)
  if type(url) ~= "string" then return nil end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then return nil end
  local hostport, path = rest:match("^([^/?#]*)(.*)$")
  local host, port = hostport:match("^([^:@]+):(%d+)$")
  if not host then host = hostport end
  if host == "" or host:find("[%s@]") then return nil end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if port < 1 or port > 65535 then return nil end
  if path == "" then path = "/" end
  if path:sub(1, 1) ~= "/" then path = "/" .. path end
  return scheme, host:lower(), port, path
end

function _M.is_loopback(host)
  return host == "localhost" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

--- nil when the URL is acceptable as a webhook target, else a message.
function _M.check_url(url)
  local scheme, host = _M.parse_url(url)
  if not scheme then return "Value error, webhook_url must be an absolute http(s) URL" end
  if scheme == "http" and not _M.is_loopback(host) then
    return "Value error, webhook_url must use https (the sandbox also accepts http:// loopback URLs)"
  end
  return nil
end

local function post(url, headers, body, timeout)
  local scheme, host, port, path = _M.parse_url(url)
  local sock = ngx.socket.tcp()
  local ms = floor(timeout * 1000)
  sock:settimeouts(ms, ms, ms)
  local ok, err = sock:connect(host == "localhost" and "127.0.0.1" or host, port)
  if not ok then return nil, "connect: " .. tostring(err) end
  if scheme == "https" then
    ok, err = sock:sslhandshake(nil, host, false)
    if not ok then sock:close(); return nil, "tls: " .. tostring(err) end
  end
  local req = { "POST ", path, " HTTP/1.1\r\nHost: ", host, ":", tostring(port), "\r\n" }
  for _, h in ipairs(headers) do req[#req + 1] = h[1] .. ": " .. h[2] .. "\r\n" end
  req[#req + 1] = "Content-Length: " .. #body .. "\r\nConnection: close\r\n\r\n"
  req[#req + 1] = body
  ok, err = sock:send(req)
  if not ok then sock:close(); return nil, "send: " .. tostring(err) end
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
  local status, err = post(d.url, headers, body, timeout)
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
  if n <= #_M.SCHEDULE then
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
function _M.dispatch(log, event, payload, url, secret)
  local body = assert(json.encode(payload))
  local d = {
    id = util.uuid4(), event = event, job_id = payload.job_id, url = url,
    signed = secret ~= nil, status = "pending", attempts = util.array(),
    created_at = util.iso(ngx.now()), updated_at = util.iso(ngx.now()),
    next_attempt_at = json.null, payload = body,
  }
  log[#log + 1] = d
  local _, host = _M.parse_url(url)
  if not host or not _M.is_loopback(host) then
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
