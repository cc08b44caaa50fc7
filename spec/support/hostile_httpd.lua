-- A scripted, hostile HTTP/1.1 server for the download hardening specs.
-- Usage: lua5.4 spec/support/hostile_httpd.lua PORTFILE [NPORTS]
-- Listens on NPORTS (default 2) ephemeral loopback ports (different ports =
-- different origins) and writes them, space-separated, to PORTFILE once it
-- accepts connections. One connection at a time, one request per connection
-- (every answer closes it). Every request is recorded; GET /log answers the
-- records since the last /log as JSON and forgets them.
-- Exits on GET /shutdown, or after 60 s without any request.
--
-- Routes (n = body bytes, bytes are the pattern below; cut = bytes actually sent):
--   /video?n=N               200, Content-Length, the whole body
--   /range?n=N               like /video, but honours "Range: bytes=X-" (206; 416 past the end)
--   /redirect?to=URL         302 to URL (percent-decoded)
--   /close?n=N&cut=C         200 without Content-Length: C bytes, then a clean close (FIN)
--   /reset?n=N&cut=C         200 without Content-Length: C bytes, then a reset (RST)
--   /chunked_cut?n=N&cut=C   200 chunked: C bytes, no last chunk, then a clean close
--   /chunked?n=N             200 chunked, complete
--   /star?n=N&cut=C[&cl=1]   206 "Content-Range: bytes 0-(N-1)/*": C bytes then close
--                            (cl=1: with "Content-Length: C", consistent with what is sent)
--   /big?n=N[&chunked=1][&status=S][&pause=MS]
--                            status S (200), N bytes with Content-Length (or chunked), written
--                            in 64 KiB pieces MS ms apart; the log entry gets `sent` (body
--                            bytes the client took before it went away) and `complete`
local socket = require "socket"
local cjson = require("cjson").new()

local portfile = assert(arg[1], "usage: hostile_httpd.lua PORTFILE [NPORTS]")
local nports = tonumber(arg[2]) or 2
local IDLE_LIMIT = 60

local function pattern(n, offset)
  -- byte i (0-based, absolute) is (i * 7 + 3) % 251, as in spec/support/httpd.lua
  offset = offset or 0
  local base = {}
  for i = 0, 250 do base[#base + 1] = string.char((i * 7 + 3) % 251) end
  base = table.concat(base)
  local start = offset % 251
  local s = base:sub(start + 1) .. base:rep(math.ceil((n + 251) / 251))
  return s:sub(1, n)
end

local servers, ports = {}, {}
for i = 1, nports do
  local s = assert(socket.bind("127.0.0.1", 0))
  s:settimeout(0)
  servers[i] = s
  local _, port = s:getsockname()
  ports[i] = port
end

local log = {}

local function unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function read_request(c)
  c:settimeout(5)
  local line = c:receive("*l")
  if not line then return nil end
  local method, target = line:match("^(%S+) (%S+) HTTP/%d%.%d$")
  if not method then return nil end
  local req = { method = method, target = target, headers = {} }
  while true do
    local l = c:receive("*l")
    if not l then return nil end
    if l == "" then break end
    local name, value = l:match("^([^:]+):%s*(.-)%s*$")
    if name then req.headers[name:lower()] = value end
  end
  local path, qs = target:match("^([^?]*)%??(.*)$")
  req.path, req.query = path, {}
  for k, v in qs:gmatch("([^&=]+)=([^&]*)") do req.query[k] = unescape(v) end
  local cl = tonumber(req.headers["content-length"] or "")
  if cl and cl > 0 then c:receive(cl) end
  return req
end

local function send(c, data)
  local i = 1
  while i <= #data do
    local last, err, partial = c:send(data, i)
    if last then i = last + 1
    elseif err == "timeout" then i = (partial or i - 1) + 1
    else return false end
  end
  return true
end

local function head(status, reason, headers)
  local out = { ("HTTP/1.1 %d %s\r\n"):format(status, reason) }
  for _, h in ipairs(headers) do out[#out + 1] = h[1] .. ": " .. h[2] .. "\r\n" end
  out[#out + 1] = "Connection: close\r\n\r\n"
  return table.concat(out)
end

local function reset(c)
  -- SO_LINGER with a zero timeout: close() sends RST instead of FIN
  c:setoption("linger", { on = true, timeout = 0 })
  c:close()
end

local routes = {}

function routes.video(c, req)
  local body = pattern(tonumber(req.query.n) or 0)
  send(c, head(200, "OK", { { "Content-Length", #body } }) .. body)
end

function routes.range(c, req)
  local n = tonumber(req.query.n) or 0
  local from = tonumber((req.headers["range"] or ""):match("^bytes=(%d+)%-$") or "")
  if not from then return routes.video(c, req) end
  if from >= n then
    send(c, head(416, "Range Not Satisfiable", { { "Content-Range", "bytes */" .. n }, { "Content-Length", 0 } }))
    return
  end
  local body = pattern(n - from, from)
  send(c, head(206, "Partial Content", { { "Content-Range", ("bytes %d-%d/%d"):format(from, n - 1, n) },
                                        { "Content-Length", #body } }) .. body)
end

function routes.redirect(c, req)
  send(c, head(302, "Found", { { "Location", req.query.to or "/video?n=10" }, { "Content-Length", 5 } }) .. "moved")
end

function routes.close(c, req)
  local cut = tonumber(req.query.cut) or 0
  send(c, head(200, "OK", {}) .. pattern(cut))
end

function routes.reset(c, req)
  local cut = tonumber(req.query.cut) or 0
  send(c, head(200, "OK", {}) .. pattern(cut))
  socket.sleep(0.2)
  reset(c)
  return true
end

function routes.chunked_cut(c, req)
  local cut = tonumber(req.query.cut) or 0
  send(c, head(200, "OK", { { "Transfer-Encoding", "chunked" } }) .. ("%x\r\n"):format(cut) .. pattern(cut) .. "\r\n")
end

function routes.chunked(c, req)
  local n = tonumber(req.query.n) or 0
  send(c, head(200, "OK", { { "Transfer-Encoding", "chunked" } }) .. ("%x\r\n"):format(n) .. pattern(n)
    .. "\r\n0\r\n\r\n")
end

function routes.star(c, req)
  local n, cut = tonumber(req.query.n) or 0, tonumber(req.query.cut) or 0
  local h = { { "Content-Range", ("bytes 0-%d/*"):format(n - 1) } }
  if req.query.cl then h[#h + 1] = { "Content-Length", cut } end
  send(c, head(206, "Partial Content", h) .. pattern(cut))
end

function routes.big(c, req, entry)
  local n = tonumber(req.query.n) or 0
  local chunked = req.query.chunked
  local pause = (tonumber(req.query.pause) or 0) / 1000
  local status = tonumber(req.query.status) or 200
  entry.sent, entry.complete = 0, false
  if not send(c, head(status, "Status", { chunked and { "Transfer-Encoding", "chunked" } or { "Content-Length", n } }))
  then
    return
  end
  local piece = pattern(65536)
  local left = n
  c:settimeout(5)
  while left > 0 do
    local k = math.min(left, #piece)
    local data = piece:sub(1, k)
    if chunked then data = ("%x\r\n"):format(k) .. data .. "\r\n" end
    if not send(c, data) then return end
    left = left - k
    entry.sent = n - left
    if pause > 0 then socket.sleep(pause) end
  end
  if chunked and not send(c, "0\r\n\r\n") then return end
  entry.complete = true
end

function routes.log(c)
  local body = cjson.encode(log)
  log = {}
  send(c, head(200, "OK", { { "Content-Type", "application/json" }, { "Content-Length", #body } }) .. body)
end

local f = assert(io.open(portfile .. ".tmp", "w"))
f:write(table.concat(ports, " "), "\n")
f:close()
assert(os.rename(portfile .. ".tmp", portfile))

local last = socket.gettime()
while socket.gettime() - last < IDLE_LIMIT do
  local ready = socket.select(servers, nil, 1)
  for i, s in ipairs(servers) do
    if ready[s] then
      local c = s:accept()
      if c then
        last = socket.gettime()
        local req = read_request(c)
        if req then
          if req.path == "/shutdown" then
            send(c, head(200, "OK", { { "Content-Length", 3 } }) .. "bye")
            c:close()
            os.exit(0)
          end
          local name = req.path:match("^/([%w_]+)$")
          local entry = { port = ports[i], path = req.path, method = req.method, headers = req.headers }
          if name ~= "log" then log[#log + 1] = entry end
          local route = name and routes[name]
          local closed
          if route then
            closed = route(c, req, entry)
          else
            send(c, head(404, "Not Found", { { "Content-Length", 9 } }) .. "not found")
          end
          if not closed then c:close() end
        else
          c:close()
        end
      end
    end
  end
end
