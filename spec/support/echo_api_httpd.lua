-- A hostile loopback API server for the hardening specs (issue #12: secrets,
-- dot segments, control characters). Plain Lua + luasocket, one connection at
-- a time, every response `Connection: close`.
-- Usage: lua5.4 spec/support/echo_api_httpd.lua PORTFILE
-- Writes its port to PORTFILE once it listens; appends every request line
-- ("GET /api/v1/x HTTP/1.1") to PORTFILE.req as it arrives.
-- Exits on a request whose path ends in /_shutdown, after 120 s without a
-- request, or after 15 min.
--
-- It remembers every credential and body it was ever sent and echoes all of
-- them back, in every place an error can carry text. The request header
-- X-Hostile picks the answer:
--   (none)       401: the echo in error.message, error.code, error.details
--                (nested, and as a key), a 422-style `detail` list (msg and
--                input) and X-Request-Id
--   ok           200 {"ok": true}
--   echo-ok      200, the echo in the JSON body (a success that leaks)
--   echo-failed  200: a failed job whose error_message is the echo
--   ctl-error    400 whose message, code, `detail` entry and X-Request-Id hold
--                newlines, CR and ESC sequences
--   ctl-job      200: a finished job whose status, stage, id and URL hold
--                newlines and ESC sequences (also UTF-8-encoded C1 CSI)
--   ctl-failed   200: a failed job whose error_message holds ESC sequences
local socket = require "socket"
local cjson = require("cjson").new()

local portfile = assert(arg[1], "usage: echo_api_httpd.lua PORTFILE")

local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
server:settimeout(1)

local reqlog = assert(io.open(portfile .. ".req", "a"))
reqlog:setvbuf("line")
do
  local f = assert(io.open(portfile .. ".tmp", "w"))
  f:write(tostring(port), "\n")
  f:close()
  assert(os.rename(portfile .. ".tmp", portfile))
end

local seen = {}          -- every credential and body, in arrival order
local seen_set = {}
local function remember(s)
  if s and s ~= "" and not seen_set[s] then
    seen_set[s] = true
    seen[#seen + 1] = s
  end
end

local CTL = "\n\r\27[2J\27]0;pwned\7\194\155" .. "31m"

local function respond(sock, status, body, extra)
  local lines = {
    "HTTP/1.1 " .. status .. " X",
    "Content-Type: application/json",
    "Content-Length: " .. #body,
    "Connection: close",
  }
  for _, l in ipairs(extra or {}) do lines[#lines + 1] = l end
  sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. body)
end

local function handle(sock)
  sock:settimeout(5)
  local line = sock:receive("*l")
  if not line then return end
  reqlog:write(line, "\n")
  local path = line:match("^%S+ (%S+)") or "/"
  local hdrs = {}
  while true do
    local h = sock:receive("*l")
    if not h or h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.-)%s*$")
    if k then hdrs[k:lower()] = v end
  end
  local body = ""
  local n = tonumber(hdrs["content-length"] or "0") or 0
  if n > 0 then body = sock:receive(n) or "" end
  if path:match("/_shutdown$") then
    respond(sock, 200, "{}")
    return "exit"
  end
  remember(hdrs.authorization)
  remember(hdrs["x-api-key"])
  remember(body)
  local all = table.concat(seen, " | ")
  local mode = hdrs["x-hostile"]
  if mode == "ok" then
    respond(sock, 200, '{"ok":true}')
  elseif mode == "echo-ok" then
    respond(sock, 200, cjson.encode({ ok = true, echo = all, nested = { deeper = { all } } }))
  elseif mode == "echo-failed" then
    respond(sock, 200, cjson.encode({ job_id = "j1", status = "failed", current_stage = "generation",
      error_message = "failed: " .. all, echo = { all } }))
  elseif mode == "ctl-error" then
    respond(sock, 400, cjson.encode({
      error = { code = "BAD" .. CTL, message = "first line" .. CTL .. " end" },
      detail = { { loc = { "body", "field" .. CTL }, msg = "problem" .. CTL } },
    }), { "X-Request-Id: req\27[2Jid" })
  elseif mode == "ctl-job" then
    respond(sock, 200, cjson.encode({
      job_id = "job" .. CTL, status = "completed" .. CTL, current_stage = "complete",
      progress_percent = 100, product_name = "Mug" .. CTL,
      final_video_url = "http://127.0.0.1:" .. port .. "/v" .. CTL .. ".mp4",
    }))
  elseif mode == "ctl-failed" then
    respond(sock, 200, cjson.encode({
      job_id = "j1", status = "failed", current_stage = "generation" .. CTL, progress_percent = 40,
      error_message = "boom" .. CTL,
    }))
  else
    local auth = hdrs.authorization or hdrs["x-api-key"] or "none"
    local details = {
      authorization = hdrs.authorization, x_api_key = hdrs["x-api-key"], body = body,
      nested = { deeper = { { seen = all }, all } },
    }
    details[auth] = "the credential as a key"
    respond(sock, 401, cjson.encode({
      error = { code = "ECHO " .. auth, message = line .. " from " .. all, details = details },
      detail = { { loc = { "header", "authorization" }, msg = "bad credential " .. all, input = all } },
    }), { "X-Request-Id: req " .. auth })
  end
end

local started, last = socket.gettime(), socket.gettime()
while socket.gettime() - last < 120 and socket.gettime() - started < 900 do
  local sock = server:accept()
  if sock then
    last = socket.gettime()
    local ok, res = pcall(handle, sock)
    sock:close()
    if ok and res == "exit" then break end
  end
end
server:close()
reqlog:close()
