-- Starts and stops spec/support/echo_api_httpd.lua (a hostile loopback API
-- server) as a background lua5.4 process.
--   local echo_api = require "support.echo_api"
--   local srv = echo_api.start()   -- srv.base = "http://127.0.0.1:PORT/api/v1"
--   srv.requests()                -- request lines received so far, in order
--   srv.stop()
local socket = require "socket"
local util = require "support.util"

local M = {}

function M.start()
  local portfile = os.tmpname()
  os.remove(portfile)
  local cmd = ("env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS -u LSAN_OPTIONS "
    .. "lua5.4 spec/support/echo_api_httpd.lua %s >%s.log 2>&1 &"):format(util.q(portfile), util.q(portfile))
  os.execute(cmd)
  local deadline = socket.gettime() + 10
  local port
  repeat
    port = tonumber(util.read_file(portfile) or "")
    if not port then socket.sleep(0.02) end
  until port or socket.gettime() > deadline
  assert(port, "hostile httpd did not start (see " .. portfile .. ".log)")
  local srv = { port = port, origin = "http://127.0.0.1:" .. port }
  srv.base = srv.origin .. "/api/v1"
  function srv.requests()
    local list = {}
    for l in (util.read_file(portfile .. ".req") or ""):gmatch("[^\n]+") do list[#list + 1] = l end
    return list
  end
  function srv.stop()
    local c = socket.tcp()
    c:settimeout(2)
    if c:connect("127.0.0.1", port) then
      c:send("GET /_shutdown HTTP/1.1\r\nHost: x\r\n\r\n")
      c:receive("*a")
    end
    c:close()
    for _, suffix in ipairs({ "", ".req", ".log" }) do os.remove(portfile .. suffix) end
  end
  return srv
end

return M
