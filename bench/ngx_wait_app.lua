-- luacheck: globals ngx
-- bench/ngx_wait_app.lua: the nginx side of bench/wait_ngx.lua (loaded by that nginx through
-- lua_package_path). POST /wait {base_url, api_key, ids, delay, interval, pool_size, clock_port,
-- clock_body} awaits every job from this one request with client.jobs:wait_all (one light
-- thread per job, the ngx transport, default settings but pool_size) and answers
-- {wall, cpu, completed, first_err}. Once every job had its first answer, the sandbox clock is
-- started (POST /_sandbox/clock on a connection of its own, outside the pool the polls use),
-- so that each job's next poll finds it completed.
local ugen = require "ugen"
local json = require "ugen.json"

local _M = {}

local function now() ngx.update_time(); return ngx.now() end

-- POST /_sandbox/clock over its own TLS connection -> status line
local function start_clock(port, api_key, body)
  local s = ngx.socket.tcp()
  s:settimeouts(5000, 5000, 5000)
  assert(s:connect("127.0.0.1", port))
  assert(s:sslhandshake(nil, "localhost", true))
  assert(s:send(("POST /_sandbox/clock HTTP/1.1\r\nHost: localhost:%d\r\nX-API-Key: %s\r\n"
    .. "Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s")
    :format(port, api_key, #body, body)))
  local line = s:receive("*l")
  s:close()
  return line
end

function _M.wait()
  ngx.req.read_body()
  local spec = json.decode(ngx.req.get_body_data(), true)
  local t = require "ugen.transport.ngx"
  local prev = t.configure{ pool_size = spec.pool_size }
  local c = ugen.new{ base_url = spec.base_url, api_key = spec.api_key, user_agent = spec.marker }
  local n, seen, answered, clock = #spec.ids, {}, 0, {}
  local opts = { interval = spec.interval, timeout = 60,
                 headers = { ["X-Sandbox-Fault"] = "delay=" .. spec.delay } }
  function opts.on_progress(_, id)
    if seen[id] then return end
    seen[id] = true
    answered = answered + 1
    if answered == n then
      -- (a thread of the poll's thread: only that one could ngx.thread.wait for it)
      ngx.thread.spawn(function()
        clock.line = start_clock(spec.clock_port, spec.api_key, spec.clock_body)
      end)
    end
  end
  local c0, w0 = os.clock(), now()
  local jobs, errs = c.jobs:wait_all(spec.ids, opts)
  local out = { wall = now() - w0, cpu = os.clock() - c0, completed = 0 }
  out.clock = clock.line
  for i = 1, n do
    if jobs[i] and jobs[i].status == "completed" then out.completed = out.completed + 1 end
    if errs[i] and not out.first_err then out.first_err = tostring(errs[i]) end
  end
  t.configure(prev)
  ngx.header["Content-Type"] = "application/json"
  ngx.print(json.encode(out))
end

return _M
