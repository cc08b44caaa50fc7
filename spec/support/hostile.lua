-- Starts and stops spec/support/hostile_httpd.lua (scripted hostile answers,
-- request log) as a background process.
--   local hostile = require "support.hostile"
--   local srv = hostile.start()       -- two ports: two origins
--   srv.url(i, path)                  -- "http://127.0.0.1:<port i><path>"
--   srv.log()                         -- requests since the last call (port, path, headers = {lowercase = value})
--   srv.stop()
local native = require "ugen.native"
local json = require "ugen.json"

local M = {}

function M.start(nports)
  local portfile = os.tmpname()
  os.remove(portfile)
  os.execute(("env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS -u LSAN_OPTIONS "
    .. "lua5.4 spec/support/hostile_httpd.lua %s %d >%s.log 2>&1 &"):format(portfile, nports or 2, portfile))
  local deadline = native.now() + 10
  local line
  repeat
    local f = io.open(portfile, "r")
    if f then line = f:read("*l"); f:close() end
    if not line then native.sleep(0.02) end
  until line or native.now() > deadline
  assert(line, "hostile httpd did not start (see " .. portfile .. ".log)")
  local ports = {}
  for p in line:gmatch("%d+") do ports[#ports + 1] = tonumber(p) end
  local e = native.engine()
  local srv = { ports = ports }
  function srv.url(i, path) return "http://127.0.0.1:" .. ports[i] .. (path or "/") end
  function srv.log()
    local res = assert(e:request { url = srv.url(1, "/log"), timeout = 10 })
    return assert(json.decode(res.body))
  end
  function srv.stop()
    e:request { url = srv.url(1, "/shutdown"), timeout = 2 }
    e:close()
    os.remove(portfile)
    os.remove(portfile .. ".log")
  end
  return srv
end

return M
