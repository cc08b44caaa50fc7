-- Starts and stops spec/support/deadline_httpd.lua (a loopback server that
-- hangs, answers 429/503 with hostile Retry-After values, logs arrival times
-- and drips bodies slowly) as a background process.
--   local D = require "support.deadline_server"
--   local srv = D.start()        -- srv.base = "http://127.0.0.1:PORT"
--   srv:log("key") -> { arrival times (seconds, server clock) }
--   srv:stop()
local core = require "ugen.core"
local json = require "ugen.json"

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
  -- plain lua5.4: keep sanitizer preloads of the spec run out of it
  os.execute(("env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS -u LSAN_OPTIONS "
    .. "lua5.4 spec/support/deadline_httpd.lua %s >%s.log 2>&1 &"):format(portfile, portfile))
  local deadline = core.now() + 10
  local port
  repeat
    port = read_port(portfile)
    if not port then core.sleep(0.02) end
  until port or core.now() > deadline
  assert(port, "deadline_httpd did not start (see " .. portfile .. ".log)")
  local srv = { port = port, base = "http://127.0.0.1:" .. port }
  function srv.log(_, key)
    local e = core.engine()
    local res = assert(e:request{ url = srv.base .. "/log/" .. key, timeout = 5 })
    e:close()
    return assert(json.decode(res.body))
  end
  function srv.stop()
    local e = core.engine()
    e:request{ url = srv.base .. "/shutdown", timeout = 2 }
    e:close()
    os.remove(portfile)
    os.remove(portfile .. ".log")
  end
  return srv
end

return M
