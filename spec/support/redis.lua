-- busted helper: a private redis-server for a spec (127.0.0.1, a free port,
-- no persistence, its own directory), stopped at the end of the busted run.
--
--   local R = require "support.redis"
--   local r = R.start()          -- r.port, r.dir
--   r.cmd("GET", "k")            -- one command through redis-cli -> its output (string, trailing newline cut)
--   r.stop() ; r.restart()       -- SIGTERM and wait / start again on the same port
local tools = require "support.tools"
local util = require "support.util"
local N = require "support.nginx"
local socket = require "socket"

local M = {}
local q, run, capture, read_file = util.q, util.run, util.capture, util.read_file

local running = {}
local hooked
local function hook()
  if hooked then return end
  hooked = true
  require("busted").subscribe({ "suite", "end" }, function()
    for r in pairs(running) do r.stop() end
    return nil, true
  end, { priority = 1 })
end

local function alive(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end

function M.start()
  tools.need("redis-server")
  tools.need("redis-cli")
  hook()
  local r = { dir = N.tmpdir(), port = N.free_port() }
  function r.cmd(...)
    local argv = { "redis-cli", "-h", "127.0.0.1", "-p", tostring(r.port) }
    for _, a in ipairs({ ... }) do argv[#argv + 1] = q(a) end
    return (capture(table.concat(argv, " ") .. " 2>&1"):gsub("\n$", ""))
  end
  function r.restart()
    local pidfile = r.dir .. "/redis.pid"
    os.remove(pidfile)
    assert(run(("redis-server --bind 127.0.0.1 --port %d --save '' --appendonly no --daemonize yes "
      .. "--dir %s --pidfile %s --logfile %s"):format(r.port, q(r.dir), q(pidfile), q(r.dir .. "/redis.log"))))
    local deadline = socket.gettime() + 10
    repeat
      if r.cmd("PING") == "PONG" then
        r.pid = tonumber((read_file(pidfile) or ""):match("%d+"))
        running[r] = true
        -- a second line of defence: the server goes when this busted process is gone
        run(("(while kill -0 %d 2>/dev/null && kill -0 %d 2>/dev/null; do sleep 1; done; kill %d 2>/dev/null) "
          .. ">/dev/null 2>&1 &"):format(N.self_pid(), r.pid, r.pid))
        return r
      end
      socket.sleep(0.05)
    until socket.gettime() > deadline
    error("support.redis: redis-server did not start:\n" .. (read_file(r.dir .. "/redis.log") or ""))
  end
  function r.stop()
    if not running[r] then return end
    running[r] = nil
    run("kill -TERM " .. r.pid .. " 2>/dev/null")
    local deadline = socket.gettime() + 5
    while alive(r.pid) and socket.gettime() < deadline do socket.sleep(0.02) end
    if alive(r.pid) then run("kill -KILL " .. r.pid .. " 2>/dev/null") end
  end
  return r.restart()
end

return M
