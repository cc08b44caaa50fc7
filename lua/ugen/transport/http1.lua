-- ugen.transport.http1: one HTTP/1.1 exchange over a connected cosocket-like
-- object (ngx.socket.tcp: settimeouts, send, receiveany, receiveuntil), for
-- the ngx transport. No connections, pools, redirects or nginx phases here:
-- those are the adapter's (ugen.transport.ngx).
--
--   http1.request_head(method, target, authority, headers, extra) -> string
--     The request line and header block. headers: name -> value (already
--     checked for line breaks); Host is added unless present. extra: {
--     range_from = N ("Range: bytes=N-", replacing the caller's Range),
--     content_type = (replacing the caller's), length = Content-Length }.
--     The caller's Content-Length and Transfer-Encoding are never sent.
--   http1.exchange(sock, reused, req, head, body, pieces, deadline, now)
--     -> res, keepalive | nil, err, retry_fresh
--     Sends head and body (a string) or pieces (multipart: strings and
--     {path =, size =} streamed from disk), reads the response: res = {
--     status, http_version, headers (flat lowercase list), size, url, body (nil
--     when the body went to a file) }. keepalive: the connection may be
--     pooled (read completely, server allows it). retry_fresh: a reused
--     connection was dead before any response byte (the caller may resend
--     when the request is idempotent).
--     req: { method, url, new_sink = fn(status, announced_length) -> sink
--     (ugen.transport.body_sink) }. now() -> seconds (the deadline's clock).
--   http1.fail(kind, code, message, sent), http1.ms(seconds) -> milliseconds
--
-- Framing: Content-Length, chunked, or until close; none for HEAD, 1xx, 204
-- and 304; 1xx answers before the final one are skipped; obsolete header line
-- folding is joined with a space. Limits: a line (status, header, chunk size,
-- trailer) of at most MAX_LINE bytes (libcurl's CURL_MAX_HTTP_HEADER),
-- MAX_HEADER_LINES header lines and as many trailer lines; more is kind
-- "network", code BAD_RESPONSE. A memory body over the sink's cap: kind
-- "decode", code TOO_LARGE (refused before reading when announced larger).

local type, ipairs, pairs, tostring, tonumber = type, ipairs, pairs, tostring, tonumber
local string_format, string_match, string_lower, string_find, string_gsub, string_byte =
  string.format, string.match, string.lower, string.find, string.gsub, string.byte
local concat, sort, math_floor, math_min, io_open = table.concat, table.sort, math.floor, math.min, io.open

local body_sink = require "ugen.transport.body_sink"

local _M = {
  _VERSION = "0.1.0",
  MAX_LINE = 100 * 1024,
  MAX_HEADER_LINES = 500,
}

local CHUNK = 65536
local LINE_CHUNK = 8192

local function ms(s)
  local v = math_floor(s * 1000 + 0.5)
  if v < 1 then v = 1 end
  return v
end
_M.ms = ms

local function fail(kind, code, message, sent)
  return { kind = kind, code = code, message = message, sent = sent == true }
end
_M.fail = fail

local function timeout_error(code, message, sent)
  return fail("timeout", code, message, sent)
end

local function io_error(message, code)
  if code == "TOO_LARGE" then
    local e = fail("decode", code, message, true)
    e.retryable = false
    return e
  end
  return fail("network", code or "IO", message, true)
end

local function too_large(max)
  return io_error(body_sink.too_large_message(max), "TOO_LARGE")
end

---------------------------------------------------------------------------
-- the request

function _M.request_head(method, target, authority, hdrs, extra)
  local range_from, ctype, length = extra.range_from, extra.content_type, extra.length
  local lines = { method .. " " .. target .. " HTTP/1.1" }
  local names, has = {}, {}
  for name in pairs(hdrs) do
    names[#names + 1] = name
    has[string_lower(name)] = true
  end
  sort(names)
  if not has["host"] then lines[#lines + 1] = "Host: " .. authority end
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
  return concat(lines, "\r\n")
end

-- c: { sock, deadline, now, lines (the line reader, made on first use) }

local function set_timeouts(c)
  local left = c.deadline - c.now()
  if left <= 0 then return false end
  c.sock:settimeouts(ms(left), ms(left), ms(left))
  return true
end

-- Send head + body pieces. -> true | nil, err
local function send_all(c, head, body, pieces)
  local sock = c.sock
  local started = false
  local function send(data)
    if not set_timeouts(c) then
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

---------------------------------------------------------------------------
-- reading

-- Read one line of at most MAX_LINE bytes (every CR dropped, as receive("*l")
-- drops them). -> line | nil, err, nothing (no byte of the line had arrived)
local function read_line(c, what)
  if not set_timeouts(c) then
    return nil, timeout_error("RECV_TIMEOUT", "request timed out while reading the " .. what, true), true
  end
  local reader = c.lines
  if not reader then
    reader = c.sock:receiveuntil("\n")
    c.lines = reader
  end
  local parts, n, size = {}, 0, 0
  while true do
    local data, err, partial = reader(LINE_CHUNK)
    if not data then
      if not err then break end                 -- the end of the line
      if err == "timeout" then
        return nil, timeout_error("RECV_TIMEOUT", "request timed out while reading the " .. what, true), true
      end
      return nil, fail("network", "RECV_FAILED", "connection " .. tostring(err) .. " while reading the " .. what,
        true), size == 0 and (partial == nil or partial == "")
    end
    size = size + #data
    if size > _M.MAX_LINE then
      return nil, fail("network", "BAD_RESPONSE", string_format("a line of the %s is longer than %d bytes",
        what, _M.MAX_LINE), true)
    end
    n = n + 1
    parts[n] = data
  end
  local line = n == 1 and parts[1] or concat(parts)
  if string_find(line, "\r", 1, true) then line = string_gsub(line, "\r", "") end
  return line
end

-- Timeouts for one body read: what is left of the deadline, capped by
-- low_speed_time (no byte for that long = a stalled transfer).
local function body_timeouts(c, low)
  local left = c.deadline - c.now()
  if left <= 0 then return false end
  local t = low and math_min(left, low) or left
  c.sock:settimeouts(ms(t), ms(t), ms(t))
  return true
end

local function body_timeout_error(c, low)
  if low and c.deadline - c.now() > 0.001 then
    return timeout_error("LOW_SPEED", string_format("transfer stalled: no data for %gs", low), true)
  end
  return timeout_error("RECV_TIMEOUT", "request timed out while reading the response body", true)
end

-- Read exactly n bytes into sink (as they arrive: receiveany).
local function read_n(c, n, sink, got_before, announced)
  local sock = c.sock
  local left = n
  while left > 0 do
    if not body_timeouts(c, sink.low) then return nil, body_timeout_error(c) end
    local data, err = sock:receiveany(math_min(left, CHUNK))
    if not data then
      if err == "timeout" then return nil, body_timeout_error(c, sink.low) end
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

local function read_chunked(c, sink)
  local total = 0
  while true do
    local line, err = read_line(c, "chunk size")
    if not line then
      if err.kind == "network" and err.code ~= "BAD_RESPONSE" then
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
      for _ = 1, _M.MAX_HEADER_LINES do
        local t, terr = read_line(c, "chunked trailer")
        if not t then return nil, terr end
        if t == "" then return true end
      end
      return nil, fail("network", "BAD_RESPONSE", "too many trailer lines", true)
    end
    if not sink.fits(size) then return nil, too_large(sink.max) end
    local ok, rerr = read_n(c, size, sink, total, nil)
    if not ok then return nil, rerr end
    total = total + size
    local crlf, cerr = read_line(c, "chunk end")
    if not crlf then
      if cerr.kind == "network" and cerr.code ~= "BAD_RESPONSE" then cerr.code = "PARTIAL_BODY" end
      return nil, cerr
    end
    if crlf ~= "" then
      return nil, fail("network", "BAD_RESPONSE", "chunk data longer than its announced size", true)
    end
  end
end

local function read_until_close(c, sink)
  local sock = c.sock
  while true do
    if not body_timeouts(c, sink.low) then return nil, body_timeout_error(c) end
    local data, err = sock:receiveany(CHUNK)
    if data then
      local ok, werr, code = sink.write(data)
      if not ok then return nil, io_error(werr, code) end
    elseif err == "closed" then
      return true
    elseif err == "timeout" then
      return nil, body_timeout_error(c, sink.low)
    else
      return nil, fail("network", "RECV_FAILED", "connection " .. tostring(err) .. " while reading the response body",
        true)
    end
  end
end

-- Status line and header block (1xx answers skipped).
-- -> { status, version, headers, conn, te, clen } | nil, err, retry_fresh
local function read_head(c, reused)
  local first = true
  while true do
    local line, lerr, nothing = read_line(c, "response status line")
    if not line then return nil, lerr, first and reused and nothing and lerr.kind == "network" end
    if first and line == "" then
      -- tolerate one stray empty line before the status line
      line, lerr = read_line(c, "response status line")
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
    local h = { status = tonumber(code), version = maj .. "." .. min }
    local headers = {}
    local n = 0
    while true do
      local hl, herr = read_line(c, "response headers")
      if not hl then return nil, herr end
      if hl == "" then break end
      n = n + 1
      if n > _M.MAX_HEADER_LINES then
        return nil, fail("network", "BAD_RESPONSE", "too many response header lines", true)
      end
      local b = string_byte(hl, 1)
      if (b == 32 or b == 9) and #headers > 0 then            -- obsolete line folding
        headers[#headers] = headers[#headers] .. " " .. string_match(hl, "^%s*(.-)%s*$")
      else
        local name, value = string_match(hl, "^([^:%s]+):%s*(.-)%s*$")
        if not name then
          return nil, fail("network", "BAD_RESPONSE", "malformed response header line", true)
        end
        headers[#headers + 1] = string_lower(name)
        headers[#headers + 1] = value
      end
    end
    for i = 1, #headers, 2 do
      local name, value = headers[i], headers[i + 1]
      if name == "connection" then
        h.conn = (h.conn and (h.conn .. ",") or "") .. string_lower(value)
      elseif name == "transfer-encoding" then
        h.te = (h.te and (h.te .. ",") or "") .. string_lower(value)
      elseif name == "content-length" then
        local v = string_match(value, "^%d+$") and tonumber(value)
        if not v or (h.clen and h.clen ~= v) then
          return nil, fail("network", "BAD_RESPONSE", "invalid Content-Length in the response", true)
        end
        h.clen = v
      end
    end
    h.headers = headers
    if h.status >= 200 or h.status == 101 then return h end
    -- 1xx informational: the final response follows
  end
end

function _M.exchange(sock, reused, req, head, body, pieces, deadline, now)
  local c = { sock = sock, deadline = deadline, now = now }
  local ok, err = send_all(c, head, body, pieces)
  if not ok then return nil, err, reused and err.code == "SEND_FAILED" end

  local h, herr, retry_fresh = read_head(c, reused)
  if not h then return nil, herr, retry_fresh end
  local status, te, clen = h.status, h.te, h.clen

  local keepalive
  if h.version == "1.1" then
    keepalive = not (h.conn and string_find(h.conn, "close", 1, true))
  else
    keepalive = h.conn ~= nil and string_find(h.conn, "keep-alive", 1, true) ~= nil
  end

  local sink = req.new_sink(status, clen)
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
    rok, rerr = read_chunked(c, sink)
  elseif te then
    -- another final transfer coding: the body runs to the end of the connection
    keepalive = false
    rok, rerr = read_until_close(c, sink)
  elseif clen then
    rok, rerr = read_n(c, clen, sink, 0, clen)
  else
    keepalive = false
    rok, rerr = read_until_close(c, sink)
  end
  if not rok then
    sink.abort()
    return nil, rerr
  end
  local fok, body_or_err = sink.finish()
  if not fok then return nil, io_error(body_or_err) end
  return { status = status, http_version = h.version, headers = h.headers, size = sink.size, url = req.url,
           body = body_or_err }, keepalive
end

return _M
