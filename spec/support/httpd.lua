-- Loopback HTTP/1.1 test server for the C-core specs (spec/core).
-- Usage: lua5.4 spec/support/httpd.lua PORTFILE
-- Binds 127.0.0.1 on an ephemeral port and writes the port number to
-- PORTFILE once it accepts connections. One coroutine per connection over
-- socket.select, so slow routes do not block others. Keep-alive, request
-- bodies by Content-Length or chunked, Expect: 100-continue.
-- Exits on GET /shutdown, after 60 s without any request, or after 15 min.
--
-- Routes:
--   /echo                 JSON {method, path, query, headers = {{name, value}...}, body}
--   /status/N             status N, body "status N"
--   /slow?ms=N            waits N ms, then 200 "slow"
--   /stall?ms=N           sends headers (Content-Length: 10) and no body, waits N ms, closes
--   (a TLS ClientHello)   answered with plain-text garbage, then closed
--   /bytes?n=N            N bytes of the pattern (see pattern() below)
--   /range?n=N            like /bytes, honours "Range: bytes=X-" (206 / 416)
--   /headers              repeated Set-Cookie, mixed-case names, folded value
--                         (?variant=unique: Set-Cookie once; ?variant=underscore: that and
--                         an X_Under_Score header)
--   /reset                reads the request, closes without a response
--   /chunked?n=N          N pattern bytes in chunked encoding
--   /redirect?to=PATH     302 to PATH (n=K: K hops of /redirect)
--   /continue-status      answers 100 Continue, then 417-free 201 with a header
local socket = require "socket"
local cjson = require("cjson").new()

local portfile = assert(arg[1], "usage: httpd.lua PORTFILE")

local IDLE_LIMIT, LIFE_LIMIT = 60, 900

local function pattern(n, offset)
  -- byte i (0-based, absolute) is (i * 7 + 3) % 251
  offset = offset or 0
  local base = {}
  for i = 0, 250 do base[#base + 1] = string.char((i * 7 + 3) % 251) end
  base = table.concat(base)
  local start = offset % 251
  local s = base:sub(start + 1) .. base:rep(math.ceil((n + 251) / 251))
  return s:sub(1, n)
end

local server = assert(socket.bind("127.0.0.1", 0))
server:settimeout(0)
local _, port = server:getsockname()

local conns = {}   -- sock -> { co = coroutine, want = "read"|"write", wake = time }
local started, last_request = socket.gettime(), socket.gettime()
local running = true

-- coroutine-side I/O helpers ------------------------------------------------

local function wait(sock, what) coroutine.yield(what, sock) end

local function sleep(seconds) coroutine.yield("sleep", socket.gettime() + seconds) end

local function make_reader(sock)
  local buf = ""
  local r = {}
  local function fill()
    while true do
      local data, err, partial = sock:receive(65536)
      data = data or partial
      if data and #data > 0 then buf = buf .. data; return true end
      if err == "closed" then return false end
      wait(sock, "read")
    end
  end
  function r.line()
    while true do
      local i = buf:find("\r\n", 1, true)
      if i then
        local l = buf:sub(1, i - 1)
        buf = buf:sub(i + 2)
        return l
      end
      if #buf > 65536 or not fill() then return nil end
    end
  end
  function r.unread(s) buf = s .. buf end
  function r.bytes(n)
    while #buf < n do
      if not fill() then return nil end
    end
    local s = buf:sub(1, n)
    buf = buf:sub(n + 1)
    return s
  end
  return r
end

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

local reasons = {
  [100] = "Continue", [200] = "OK", [201] = "Created", [204] = "No Content",
  [206] = "Partial Content", [302] = "Found", [400] = "Bad Request", [404] = "Not Found",
  [416] = "Range Not Satisfiable", [500] = "Internal Server Error", [503] = "Service Unavailable",
}

local function respond(sock, status, headers, body)
  local out = { ("HTTP/1.1 %d %s\r\n"):format(status, reasons[status] or "Status") }
  for _, h in ipairs(headers) do out[#out + 1] = h[1] .. ": " .. h[2] .. "\r\n" end
  if body then out[#out + 1] = "Content-Length: " .. #body .. "\r\n" end
  out[#out + 1] = "\r\n"
  if body then out[#out + 1] = body end
  return send_all(sock, table.concat(out))
end

local function parse_query(q)
  local t = {}
  for k, v in (q or ""):gmatch("([^&=]+)=([^&]*)") do t[k] = v end
  return t
end

-- request handling --------------------------------------------------------

local function read_request(r, sock)
  local first = r.bytes(1)
  if not first then return nil end
  if first == "\22" then -- TLS handshake record: not a TLS server
    send_all(sock, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    return nil
  end
  r.unread(first)
  local line = r.line()
  if not line or line == "" then return nil end
  local method, target, version = line:match("^(%S+) (%S+) HTTP/(%d%.%d)$")
  if not method then return nil end
  local req = { method = method, target = target, version = version, headers = {}, h = {} }
  while true do
    local l = r.line()
    if not l then return nil end
    if l == "" then break end
    local name, value = l:match("^([^:]+):%s*(.-)%s*$")
    if name then
      req.headers[#req.headers + 1] = { name, value }
      req.h[name:lower()] = value
    end
  end
  req.path, req.qs = target:match("^([^?]*)%??(.*)$")
  req.query = parse_query(req.qs)
  if (req.h["expect"] or ""):lower() == "100-continue" then
    if not send_all(sock, "HTTP/1.1 100 Continue\r\n\r\n") then return nil end
  end
  local body = ""
  if req.h["content-length"] then
    body = r.bytes(tonumber(req.h["content-length"]))
    if not body then return nil end
  elseif (req.h["transfer-encoding"] or ""):lower():find("chunked", 1, true) then
    local parts = {}
    while true do
      local size = tonumber((r.line() or ""):match("^(%x+)"), 16)
      if not size then return nil end
      if size == 0 then
        repeat local l = r.line() until l == nil or l == ""
        break
      end
      parts[#parts + 1] = r.bytes(size)
      if not parts[#parts] or r.line() ~= "" then return nil end
    end
    body = table.concat(parts)
  end
  req.body = body
  return req
end

local routes = {}

function routes.echo(sock, req)
  return respond(sock, 200, { { "Content-Type", "application/json" } }, cjson.encode({
    method = req.method, path = req.path, query = req.qs, headers = req.headers, body = req.body,
  }))
end

function routes.status(sock, req)
  local n = tonumber(req.path:match("^/status/(%d+)$")) or 400
  return respond(sock, n, { { "Content-Type", "text/plain" } }, "status " .. n)
end

function routes.slow(sock, req)
  sleep((tonumber(req.query.ms) or 100) / 1000)
  return respond(sock, 200, { { "Content-Type", "text/plain" } }, "slow")
end

function routes.stall(sock, req)
  send_all(sock, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
  sleep((tonumber(req.query.ms) or 1000) / 1000)
  return false
end

function routes.bytes(sock, req)
  local n = tonumber(req.query.n) or 0
  return respond(sock, 200, { { "Content-Type", "application/octet-stream" } }, pattern(n))
end

function routes.range(sock, req)
  local n = tonumber(req.query.n) or 0
  local from = (req.h["range"] or ""):match("^bytes=(%d+)%-$")
  if not from then
    return respond(sock, 200, { { "Accept-Ranges", "bytes" } }, pattern(n))
  end
  from = tonumber(from)
  if from >= n then
    return respond(sock, 416, { { "Content-Range", "bytes */" .. n } }, "")
  end
  return respond(sock, 206, { { "Content-Range", ("bytes %d-%d/%d"):format(from, n - 1, n) } },
    pattern(n - from, from))
end

function routes.headers(sock, req)
  local variant = req.query.variant
  return send_all(sock, table.concat({
    "HTTP/1.1 200 OK\r\n",
    "Set-Cookie: a=1\r\n",
    "X-Mixed-CASE: Value With  Spaces  \r\n",
    variant and "" or "Set-Cookie: b=2\r\n",
    variant == "underscore" and "X_Under_Score: u\r\n" or "",
    "X-Folded: first\r\n",
    "  second\r\n",
    "Content-Length: 2\r\n",
    "\r\n", "ok",
  }))
end

function routes.reset()
  return false
end

function routes.chunked(sock, req)
  local data = pattern(tonumber(req.query.n) or 1000)
  local out = { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Before: 1\r\n\r\n" }
  local i = 1
  while i <= #data do
    local c = data:sub(i, i + 999)
    out[#out + 1] = ("%x\r\n%s\r\n"):format(#c, c)
    i = i + 1000
  end
  out[#out + 1] = "0\r\n\r\n"
  return send_all(sock, table.concat(out))
end

function routes.redirect(sock, req)
  local hops = tonumber(req.query.n) or 1
  local to = req.query.to or "/echo"
  local loc = hops > 1 and ("/redirect?n=%d&to=%s"):format(hops - 1, to) or to
  return respond(sock, 302, { { "Location", loc }, { "X-Hop", tostring(hops) } }, "moved")
end

routes["continue-status"] = function(sock, req)
  return respond(sock, 201, { { "X-Final", "yes" } }, "got " .. #req.body)
end

function routes.shutdown(sock)
  running = false
  respond(sock, 200, { { "Connection", "close" } }, "bye")
  return false
end

local function handle(sock)
  local r = make_reader(sock)
  while true do
    local req = read_request(r, sock)
    if not req then break end
    last_request = socket.gettime()
    local name = req.path:match("^/([^/]+)")
    local route = name and routes[name]
    local keep
    if route then
      keep = route(sock, req)
    else
      keep = respond(sock, 404, {}, "not found")
    end
    if not keep or (req.h["connection"] or ""):lower() == "close" then break end
  end
  sock:close()
end

-- scheduler ----------------------------------------------------------------

local function resume(sock, co, ...)
  local ok, what, arg = coroutine.resume(co, ...)
  if not ok then
    io.stderr:write("httpd: ", tostring(what), "\n")
    pcall(sock.close, sock)
    conns[sock] = nil
    return
  end
  if coroutine.status(co) == "dead" then
    conns[sock] = nil
  elseif what == "sleep" then
    conns[sock] = { co = co, want = "sleep", wake = arg }
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
  for sock, c in pairs(conns) do
    if c.want == "sleep" and c.wake <= now then resume(sock, c.co) end
  end
end

server:close()
os.remove(portfile)
