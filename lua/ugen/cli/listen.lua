-- ugen.cli.listen: `ugen webhook listen`, a local webhook receiver.
--
-- A small HTTP/1.1 server on luasocket, bound to 127.0.0.1 only. Each POST is
-- verified with ugen.webhook.verify (signature + timestamp tolerance) and the
-- event printed; the answer is 200 for a verified delivery, 401 for a bad or
-- missing signature, 400 for a body that is not a JSON event, 404 for another
-- path, 405 for another method, 411/413 for a missing or oversized body.
-- Deliveries are deduplicated on (job_id, event): a retried delivery is
-- answered 200 again and reported as a duplicate, not counted twice.
-- Connections are served concurrently: each runs in a coroutine over a
-- non-blocking socket, and one socket.select waits for all of them, so a
-- client that connects and sends nothing (or half a request) delays no one.
-- Each connection has 10 s (the time the API gives a receiver) from accept to
-- its answer, then it is closed; at most MAX_CONNS are open at once (a new one
-- over that closes the oldest). It stops after `count` events or `timeout`
-- seconds when asked to.

local output = require "ugen.cli.output"
local json = require "ugen.json"

local _M = { _VERSION = "0.1.0" }

local type, tostring, tonumber, ipairs = type, tostring, tonumber, ipairs
local concat = table.concat
local string_format = string.format
local co_create, co_resume, co_status, co_yield =
  coroutine.create, coroutine.resume, coroutine.status, coroutine.yield
local min, max = math.min, math.max

local MAX_BODY = 1024 * 1024
local MAX_HEADERS = 100
local MAX_LINE = 8192
local CONN_DEADLINE = 10
local MAX_CONNS = 64
local IDLE_WAIT = 0.2 -- longest select wait (checks the overall timeout)

----------------------------------------------------------------------------
-- A connection: the luasocket client in non-blocking mode, read and written
-- from the connection's coroutine, which records what it waits for (want =
-- "r" or "w") and yields whenever the socket would block; the server loop
-- resumes it when select says the socket is ready or its deadline has passed.
----------------------------------------------------------------------------

local conn_mt = {}
conn_mt.__index = conn_mt

local function new_conn(sock, now, deadline)
  sock:settimeout(0)
  return setmetatable({ sock = sock, now = now, deadline = deadline, want = "r" }, conn_mt)
end

-- sock:receive with a deadline -> data | nil, err, partial ("timeout" once the
-- deadline has passed; "too long" for a line over MAX_LINE).
function conn_mt:receive(pattern)
  local partial = ""
  while true do
    local data, err, part = self.sock:receive(pattern, partial)
    if data then return data end
    if err ~= "timeout" then return nil, err, part end
    partial = part or ""
    if pattern == "*l" and #partial > MAX_LINE then return nil, "too long" end
    if self.now() >= self.deadline then return nil, "timeout", partial end
    self.want = "r"
    co_yield()
  end
end

-- sock:send with a deadline -> last index | nil, err
function conn_mt:send(data)
  local i = 1
  while true do
    local last, err, sent = self.sock:send(data, i)
    if last then return last end
    if err ~= "timeout" then return nil, err end
    i = (sent or i - 1) + 1
    if self.now() >= self.deadline then return nil, "timeout" end
    self.want = "w"
    co_yield()
  end
end

function conn_mt:getpeername() return self.sock:getpeername() end

local REASONS = {
  [100] = "Continue", [200] = "OK", [400] = "Bad Request", [401] = "Unauthorized",
  [404] = "Not Found", [405] = "Method Not Allowed", [408] = "Request Timeout",
  [411] = "Length Required", [413] = "Payload Too Large", [431] = "Request Header Fields Too Large",
  [503] = "Service Unavailable",
}

local function respond(sock, status, body, extra)
  body = body or ""
  local head = {
    string_format("HTTP/1.1 %d %s", status, REASONS[status] or "Status"),
    "Content-Type: application/json",
    "Content-Length: " .. #body,
    "Connection: close",
  }
  if extra then for _, h in ipairs(extra) do head[#head + 1] = h end end
  sock:send(concat(head, "\r\n") .. "\r\n\r\n" .. body)
end

local function json_body(t)
  return json.encode(t) or "{}"
end

-- Read a line with a length cap. Returns line | nil, err.
local function read_line(sock)
  local line, err, partial = sock:receive("*l")
  if not line then return nil, err, partial end
  if #line > MAX_LINE then return nil, "too long" end
  return line
end

-- Read a chunked body (with a total cap). Returns body | nil, status.
local function read_chunked(sock)
  local parts, total = {}, 0
  while true do
    local line = read_line(sock)
    if not line then return nil, 400 end
    local size = tonumber(line:match("^%s*(%x+)"), 16)
    if not size then return nil, 400 end
    if size == 0 then
      -- trailers until the empty line
      repeat
        local t = read_line(sock)
        if not t then return nil, 400 end
      until t == ""
      return concat(parts)
    end
    total = total + size
    if total > MAX_BODY then return nil, 413 end
    local data = sock:receive(size)
    if not data then return nil, 400 end
    parts[#parts + 1] = data
    if not sock:receive(2) then return nil, 400 end -- CRLF after the chunk
  end
end

-- Read one request. Returns req | nil, status (to answer) | nil, nil (peer went away).
local function read_request(sock)
  local line, err = read_line(sock)
  if not line then
    if err == "too long" then return nil, 431 end
    return nil, nil
  end
  local method, target = line:match("^(%u+)%s+(%S+)%s+HTTP/1%.[01]$")
  if not method then return nil, 400 end
  local headers, n = {}, 0
  while true do
    local h, herr = read_line(sock)
    if not h then return nil, herr == "too long" and 431 or nil end
    if h == "" then break end
    n = n + 1
    if n > MAX_HEADERS then return nil, 431 end
    local name, value = h:match("^([^:%s]+)%s*:%s*(.-)%s*$")
    if not name then return nil, 400 end
    name = name:lower()
    if headers[name] then headers[name] = headers[name] .. ", " .. value else headers[name] = value end
  end
  return { method = method, target = target, path = target:match("^[^?#]*"), headers = headers }
end

local function read_body(sock, req)
  local h = req.headers
  if h["expect"] and h["expect"]:lower() == "100-continue" then
    sock:send("HTTP/1.1 100 Continue\r\n\r\n")
  end
  if h["transfer-encoding"] and h["transfer-encoding"]:lower():find("chunked", 1, true) then
    return read_chunked(sock)
  end
  local len = h["content-length"]
  if not len then return nil, 411 end
  local n = tonumber(len:match("^%d+$"))
  if not n then return nil, 400 end
  if n > MAX_BODY then return nil, 413 end
  if n == 0 then return "" end
  local body = sock:receive(n)
  if not body then return nil, 400 end
  return body
end

--- Run the receiver.
-- opts: socket (luasocket), verify (ugen.webhook.verify), secret, port, path,
--       count, timeout, tolerance, fail_first, json (bool), out, err (files),
--       on_ready(url) (optional)
-- Returns exit status (0: done/stopped, 1: timeout before `count` events) and a message.
function _M.run(opts)
  local socket = opts.socket
  local out, errf = opts.out or io.stdout, opts.err or io.stderr
  local now = socket.gettime
  local server, berr = socket.bind("127.0.0.1", opts.port or 0)
  if not server then
    return 1, "network: cannot listen on 127.0.0.1:" .. tostring(opts.port or 0) .. ": " .. tostring(berr)
  end
  local _, port = server:getsockname()
  local path = opts.path or "/"
  local url = string_format("http://127.0.0.1:%s%s", tostring(port), path)
  if opts.json then
    out:write(json_body({ listening = url }), "\n")
  else
    out:write("listening on ", url, "\n")
  end
  out:flush()
  if opts.on_ready then opts.on_ready(url) end

  local received, seen, fail_left = 0, {}, opts.fail_first or 0
  local deadline = opts.timeout and (now() + opts.timeout) or nil
  local verify_opts = { tolerance = opts.tolerance }

  local function note(msg)
    -- request lines and events come from the network: never raw bytes on a terminal
    errf:write(output.scalar(msg), "\n")
    errf:flush()
  end

  local function handle(sock)
    local peer = sock:getpeername() or "?"
    local req, status = read_request(sock)
    if not req then
      if status then respond(sock, status, json_body({ error = REASONS[status] })) end
      return
    end
    if req.path ~= path then
      respond(sock, 404, json_body({ error = "not found" }))
      note(string_format("rejected %s %s from %s: 404 (listening on %s)", req.method, req.target, peer, path))
      return
    end
    if req.method ~= "POST" then
      respond(sock, 405, json_body({ error = "method not allowed" }), { "Allow: POST" })
      note(string_format("rejected %s %s from %s: 405", req.method, req.target, peer))
      return
    end
    local body, bstatus = read_body(sock, req)
    if not body then
      if bstatus then respond(sock, bstatus, json_body({ error = REASONS[bstatus] })) end
      note(string_format("rejected POST from %s: %s", peer, tostring(bstatus or "connection closed")))
      return
    end
    local event, verr = opts.verify(opts.secret, req.headers, body, verify_opts)
    if not event then
      local kind = output.kind_of(verr)
      local code = (kind == "signature") and 401 or 400
      respond(sock, code, json_body({ error = output.error_text(verr) }))
      note(string_format("rejected delivery from %s: %s (answered %d)", peer, output.error_text(verr), code))
      return
    end
    if type(event) ~= "table" then
      respond(sock, 400, json_body({ error = "body is not a JSON object" }))
      note(string_format("rejected delivery from %s: body is not a JSON object (answered 400)", peer))
      return
    end
    if fail_left > 0 then
      fail_left = fail_left - 1
      respond(sock, 503, json_body({ error = "failing on purpose (--fail-first)" }))
      note(string_format("answered 503 to a verified %s delivery for job %s (--fail-first, %d left)",
        tostring(event.event), tostring(event.job_id), fail_left))
      return
    end
    respond(sock, 200, json_body({ received = true }))
    local key = tostring(event.event) .. "\0" .. tostring(event.job_id)
    local dup = seen[key]
    seen[key] = true
    if not dup then received = received + 1 end
    if opts.json then
      local line = output.to_json({ verified = true, duplicate = dup or nil, event = event })
      out:write(line, "\n")
    else
      out:write(string_format("received %s for job %s (signature verified%s)\n",
        output.scalar(tostring(event.event)), output.scalar(tostring(event.job_id)),
        dup and ", duplicate delivery" or ""))
      local text = output.format(event)
      out:write("  ", (text:gsub("\n", "\n  ")), "\n")
    end
    out:flush()
  end

  local conns = {} -- open connections, oldest first

  local function drop(c)
    for i, x in ipairs(conns) do
      if x == c then table.remove(conns, i); break end
    end
    c.sock:close()
  end

  -- Run c's coroutine until it blocks or ends; an "interrupted" error (Ctrl-C)
  -- is raised again, others are reported.
  local function step(c)
    local ok, perr = co_resume(c.co, c)
    if not ok then
      if tostring(perr):find("interrupted", 1, true) then
        for _, x in ipairs(conns) do x.sock:close() end
        server:close()
        error(perr, 0)
      end
      note("error handling a delivery: " .. tostring(perr))
    end
    if co_status(c.co) == "dead" then drop(c) end
  end

  local function accept_all()
    while true do
      local sock = server:accept()
      if not sock then return end
      if #conns >= MAX_CONNS then drop(conns[1]) end -- the oldest makes room
      local c = new_conn(sock, now, now() + CONN_DEADLINE)
      c.co = co_create(handle)
      conns[#conns + 1] = c
      step(c)
    end
  end

  server:settimeout(0)
  while true do
    if opts.count and received >= opts.count then break end
    local t = now()
    if deadline and t >= deadline then
      for _, c in ipairs(conns) do c.sock:close() end
      server:close()
      if opts.count then
        return 1, string_format("timeout: received %d of %d event(s) in %gs", received, opts.count, opts.timeout)
      end
      return 0
    end
    local recvt, sendt = { server }, {}
    local wait = IDLE_WAIT
    if deadline then wait = min(wait, deadline - t) end
    for _, c in ipairs(conns) do
      if c.want == "w" then sendt[#sendt + 1] = c.sock else recvt[#recvt + 1] = c.sock end
      wait = min(wait, c.deadline - t)
    end
    local readable, writable = opts.socket.select(recvt, sendt, max(wait, 0))
    if readable[server] then accept_all() end
    -- a copy: step() removes finished connections from conns
    local list = {}
    for i, c in ipairs(conns) do list[i] = c end
    t = now()
    for _, c in ipairs(list) do
      if c.co and co_status(c.co) == "suspended"
        and (readable[c.sock] or writable[c.sock] or t >= c.deadline) then
        step(c)
      end
      if opts.count and received >= opts.count then break end
    end
  end
  for _, c in ipairs(conns) do c.sock:close() end
  server:close()
  return 0
end

return _M
