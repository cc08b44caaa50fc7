-- Starts and stops spec/support/httpd.lua (the loopback test server) as a
-- background process for the C-core specs.
--   local httpd = require "support.httpd_ctl"
--   local srv = httpd.start()   -- srv.base = "http://127.0.0.1:PORT"
--   srv:stop()
local core = require "ugen.core"

local M = {}

local function read_port(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local port = tonumber(f:read("*l"))
  f:close()
  return port
end

function M.start()
  local portfile = os.tmpname()
  os.remove(portfile)
  -- The server is plain lua5.4: keep sanitizer preloads of the spec run out of it.
  local cmd = ("env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS -u LSAN_OPTIONS "
    .. "lua5.4 spec/support/httpd.lua %s >%s.log 2>&1 &"):format(portfile, portfile)
  -- the shell's exit status says nothing about the background server: the
  -- port file is the readiness signal
  os.execute(cmd)
  local deadline = core.now() + 10
  local port
  repeat
    port = read_port(portfile)
    if not port then core.sleep(0.02) end
  until port or core.now() > deadline
  assert(port, "loopback httpd did not start (see " .. portfile .. ".log)")
  local srv = { port = port, base = "http://127.0.0.1:" .. port, portfile = portfile }
  function srv.url(_, path) return srv.base .. path end
  function srv.stop()
    local e = core.engine()
    e:request { url = srv.base .. "/shutdown", timeout = 2 }
    e:close()
    os.remove(portfile .. ".log")
  end
  return srv
end

return M
