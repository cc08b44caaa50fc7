-- Loopback HTTP/1.1 server for the deadline, backoff and cancel specs
-- (spec/support/deadline_server.lua starts and stops it).
-- Usage: lua5.4 spec/support/deadline_httpd.lua PORTFILE
-- Binds 127.0.0.1 on an ephemeral port, writes the port to PORTFILE once it
-- accepts connections. One coroutine per connection over socket.select.
-- Exits on GET /shutdown, after 120 s without any request, or after 15 min.
--
-- Routes (by the first path segment; the rest of the path is ignored, so a
-- client's base_url can point into a route: base_url = <server>/hang):
--   /hang/...                     reads the request and never answers (the
--                                 connection stays open until the server exits)
--   /ra/STATUS/MODE/KEY/...       answers STATUS (e.g. 429, 503) with a JSON error
--                                 body and a Retry-After header chosen by MODE:
--                                   nN     "N" (delta seconds, N digits)
--                                   past   an HTTP date one hour in the past
--                                   zero   "0"
--                                   huge   "1" followed by 400 zeros
--                                   date   an HTTP date 100 days ahead
--                                   none   no header
--                                 and records the arrival time under KEY
--   /log/KEY                      JSON array of the arrival times recorded under KEY
--                                 (seconds, server clock: compare differences only)
--   /drip/N/MS/...                200 with Content-Length N, then the body 64
--                                 bytes every MS milliseconds
--   /shutdown
local socket = require "socket"

local portfile = assert(arg[1], "usage: deadline_httpd.lua PORTFILE")
local IDLE_LIMIT, LIFE_LIMIT = 120, 900

local server = assert(socket.bind("127.0.0.1", 0))
server:settimeout(0)
local _, port = server:getsockname()

local conns = {}          -- sock -> { co =, want = "read" | "write" | "sleep" | "hold", wake = }
local started, last_request = socket.gettime(), socket.gettime()
local running = true
local log = {}            -- key -> { time, ... }

local function wait(sock, what) coroutine.yield(what, sock) end
local function sleep(s) coroutine.yield("sleep", socket.gettime() + s) end

local function send_all(sock, data)
  local i = 1
  while i <= #data do
    local last, err, partial = sock:send(data, i)
    if last then
      i = last + 1
    elseif err == "timeout" then
      i = partial + 1
      wait(sock, "write")
    else
      return false
    end
  end
  return true
end

-- the request head (the request line and headers); bodies are skipped by length
local function read_request(sock, st)
  while true do
    local i = st.buf:find("\r\n\r\n", 1, true)
    if i then
      local head = st.buf:sub(1, i - 1)
      st.buf = st.buf:sub(i + 4)
      local target = head:match("^%S+ (%S+) HTTP/%d%.%d")
      if not target then return nil end
      local clen = tonumber(head:lower():match("\ncontent%-length:%s*(%d+)")) or 0
      while #st.buf < clen do
        local data, err, partial = sock:receive(65536)
        data = data or partial
        if data and #data > 0 then st.buf = st.buf .. data
        elseif err == "closed" then return nil
        else wait(sock, "read") end
      end
      st.buf = st.buf:sub(clen + 1)
      return { path = target:match("^([^?]*)"), head = head }
    end
    local data, err, partial = sock:receive(65536)
    data = data or partial
    if data and #data > 0 then
      st.buf = st.buf .. data
    elseif err == "closed" then
      return nil
    else
      wait(sock, "read")
    end
  end
end

local function http_date(t)
  return os.date("!%a, %d %b %Y %H:%M:%S GMT", t)
end

local function respond(sock, status, headers, body)
  local out = { ("HTTP/1.1 %d Status\r\n"):format(status) }
  for _, h in ipairs(headers) do out[#out + 1] = h[1] .. ": " .. h[2] .. "\r\n" end
  out[#out + 1] = "Content-Length: " .. #body .. "\r\n\r\n"
  out[#out + 1] = body
  return send_all(sock, table.concat(out))
end

local function json_array(list)
  local parts = {}
  for i, v in ipairs(list) do parts[i] = string.format("%.6f", v) end
  return "[" .. table.concat(parts, ",") .. "]"
end

local RETRY_AFTER = {
  past = function() return http_date(os.time() - 3600) end,
  zero = function() return "0" end,
  huge = function() return "1" .. string.rep("0", 400) end,
  date = function() return http_date(os.time() + 100 * 86400) end,
  none = function() return nil end,
}

local routes = {}

function routes.hang()
  coroutine.yield("hold")     -- never resumed: the client waits until it gives up
  return false
end

function routes.ra(sock, req)
  local status, mode, key = req.path:match("^/ra/(%d+)/([%w]+)/([%w_%-]+)")
  if not status then return respond(sock, 400, {}, "bad ra path") end
  log[key] = log[key] or {}
  local l = log[key]
  l[#l + 1] = socket.gettime()
  local ra
  if mode:match("^n%d+$") then ra = mode:sub(2) else ra = RETRY_AFTER[mode] and RETRY_AFTER[mode]() end
  local headers = { { "Content-Type", "application/json" } }
  if ra then headers[#headers + 1] = { "Retry-After", ra } end
  local code = status == "429" and "RATE_LIMITED" or "UNAVAILABLE"
  return respond(sock, tonumber(status), headers,
    '{"error":{"code":"' .. code .. '","message":"try again later"}}')
end

function routes.log(sock, req)
  local key = req.path:match("^/log/([%w_%-]+)")
  return respond(sock, 200, { { "Content-Type", "application/json" } }, json_array(log[key] or {}))
end

function routes.drip(sock, req)
  local n, ms = req.path:match("^/drip/(%d+)/(%d+)")
  n, ms = tonumber(n), tonumber(ms)
  if not n then return respond(sock, 400, {}, "bad drip path") end
  if not send_all(sock, "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: " .. n .. "\r\n\r\n") then
    return false
  end
  local sent = 0
  while sent < n do
    local k = math.min(64, n - sent)
    if not send_all(sock, string.rep("v", k)) then return false end
    sent = sent + k
    sleep(ms / 1000)
  end
  return true
end

function routes.shutdown(sock)
  running = false
  respond(sock, 200, { { "Connection", "close" } }, "bye")
  return false
end

local function handle(sock)
  local st = { buf = "" }
  while true do
    local req = read_request(sock, st)
    if not req then break end
    last_request = socket.gettime()
    local name = req.path:match("^/([^/]+)")
    local route = name and routes[name]
    local keep
    if route then keep = route(sock, req) else keep = respond(sock, 404, {}, "not found") end
    if not keep then break end
  end
  sock:close()
end

local function resume(sock, co, ...)
  local ok, what, a = coroutine.resume(co, ...)
  if not ok then
    io.stderr:write("deadline_httpd: ", tostring(what), "\n")
    pcall(sock.close, sock)
    conns[sock] = nil
    return
  end
  if coroutine.status(co) == "dead" then
    conns[sock] = nil
  elseif what == "sleep" then
    conns[sock] = { co = co, want = "sleep", wake = a }
  else
    conns[sock] = { co = co, want = what }
  end
end

do
  local f = assert(io.open(portfile .. ".tmp", "w"))
  f:write(tostring(port), "\n")
  f:close()
  assert(os.rename(portfile .. ".tmp", portfile))
end

while running do
  local now = socket.gettime()
  if now - last_request > IDLE_LIMIT or now - started > LIFE_LIMIT then break end
  local rset, wset, timeout = { server }, {}, 1
  for sock, c in pairs(conns) do
    if c.want == "read" then rset[#rset + 1] = sock
    elseif c.want == "write" then wset[#wset + 1] = sock
    elseif c.want == "sleep" then timeout = math.max(0, math.min(timeout, c.wake - now)) end
  end
  local readable, writable = socket.select(rset, wset, timeout)
  for _, s in ipairs(readable) do
    if s == server then
      while true do
        local client = server:accept()
        if not client then break end
        client:settimeout(0)
        client:setoption("tcp-nodelay", true)
        local co = coroutine.create(handle)
        conns[client] = { co = co, want = "start" }
        resume(client, co, client)
      end
    elseif conns[s] then
      resume(s, conns[s].co)
    end
  end
  for _, s in ipairs(writable) do
    if conns[s] then resume(s, conns[s].co) end
  end
  now = socket.gettime()
  for s, c in pairs(conns) do
    if c.want == "sleep" and c.wake <= now then resume(s, c.co) end
  end
end

for s in pairs(conns) do pcall(s.close, s) end
server:close()
