-- bench/wait_ngx.lua: 1,000 jobs awaited at once INSIDE nginx (OpenResty transport, ngx.thread
-- light threads) over HTTPS, the OpenResty side of bench/wait_h2.lua.
--
--   luajit bench/wait_ngx.lua [--jobs 1000] [--delay 0.2] [--interval 0.1] [--rounds 3]
--                             [--pool 64] [--pool2 256]      (or: BENCH_ONLY=wait_ngx sh bench/run.sh)
--
-- Starts a private TLS sandbox (sandbox.start{ tls = true }) and, per round, a FRESH nginx
-- (worker_processes 1, lua_ssl_trusted_certificate = the sandbox's CA, TLS 1.2 and 1.3: no
-- pooled connection, no TLS session) running the SDK from this tree. Each round creates --jobs
-- jobs on a stopped sandbox clock, then ONE request to that nginx awaits them all with
--     client.jobs:wait_all(ids, { interval =, headers = { ["X-Sandbox-Fault"] = "delay=S" } })
-- (one light thread per job, the ngx transport, defaults but pool_size; bench/ngx_wait_app.lua).
-- Every poll is answered --delay s late. When every job had its first answer the clock starts
-- and every job ends at once: a job's next poll finds it completed (2 polls per job, a few 3).
-- HTTP/1.1 only (cosockets): at most about pool_size polls in flight, one per connection, the
-- others wait for a free connection. The floor is (jobs / pool) x 2 x delay.
-- Counted in the sandbox's access log: the polls, the connections that carried them and how
-- many of those resumed a TLS session ($ssl_session_reused; the others made a full handshake).
-- CPU: the nginx worker's (os.clock in the request) over the wait alone. Best of --rounds, with
-- pool_size --pool (the default, 64), then one round with --pool2 (0: skipped).
-- Exit status 1 when a job did not complete.

local function here()
  local src = debug.getinfo(1, "S").source
  return (src:sub(1, 1) == "@" and src:sub(2) or "bench/wait_ngx.lua"):match("^(.*)/bench/[^/]+$") or "."
end
local root = here()
if root:sub(1, 1) ~= "/" then root = (io.popen("pwd"):read("*l")) .. "/" .. root end
local sub = (type(jit) == "table" and "luajit") or _VERSION:match("%d+%.%d+")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/bench/?.lua;" .. package.path
package.cpath = root .. "/build/" .. sub .. "/?.so;" .. package.cpath

local ugen = require "ugen"
local json = require "ugen.json"
local sandbox = require "ugen.sandbox"
local socket = require "socket"
local B = require "lib"
local q, read_file, write_file = B.q, B.read_file, B.write_file

local opts = { jobs = 1000, delay = 0.2, interval = 0.1, rounds = 3, pool = 64, pool2 = 256 }
do
  local i = 1
  while arg and arg[i] do
    local k = arg[i]:match("^%-%-(%w+)$")
    local v = tonumber(arg[i + 1] or "")
    if not k or opts[k] == nil or not v or v < 0 then
      io.stderr:write("usage: bench/wait_ngx.lua [--jobs N] [--delay S] [--interval S] [--rounds N] [--pool N] "
        .. "[--pool2 N]\n")
      os.exit(2)
    end
    opts[k] = v
    i = i + 2
  end
end
local N, ROUNDS = math.floor(opts.jobs), math.max(1, math.floor(opts.rounds))

local function tmpdir(tag)
  local d = os.tmpname()
  os.remove(d)
  return d .. ".ugen-bench-" .. tag
end

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local NGINX_CONF = [[
%s
%s
worker_processes 1;
daemon on;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %s/tmp; proxy_temp_path %s/tmp; fastcgi_temp_path %s/tmp;
  uwsgi_temp_path %s/tmp; scgi_temp_path %s/tmp;
  lua_package_path "%s/bench/?.lua;%s/lua/?.lua;%s/lua/?/init.lua;;";
  lua_package_cpath "%s/build/luajit/?.so;;";
  lua_socket_log_errors off;
  lua_ssl_trusted_certificate %s;
  lua_ssl_verify_depth 2;
  lua_ssl_protocols TLSv1.2 TLSv1.3;
  client_body_buffer_size 1m;
  server {
    listen 127.0.0.1:%d;
    location = /wait { content_by_lua_block { require("ngx_wait_app").wait() } }
  }
}
]]

-- a fresh nginx for one round -> { port, dir, stop }
local function start_nginx(cainfo)
  local dir = tmpdir("ngx")
  assert(os.execute("mkdir -p " .. q(dir .. "/tmp")))
  local mods = {}
  for _, m in ipairs({ "ndk_http_module.so", "ngx_http_lua_module.so" }) do
    local p = "/usr/lib/nginx/modules/" .. m
    if read_file(p) then mods[#mods + 1] = "load_module " .. p .. ";" end
  end
  local user = io.popen("id -u"):read("*l") == "0" and "user root;" or ""
  local port = free_port()
  write_file(dir .. "/nginx.conf", NGINX_CONF:format(table.concat(mods, "\n"), user, dir, dir, dir, dir, dir, dir,
    dir, root, root, root, root, cainfo, port))
  local nginx = os.getenv("UGEN_NGINX") or "/usr/sbin/nginx"
  assert(os.execute(q(nginx) .. " -p " .. q(dir .. "/") .. " -c " .. q(dir .. "/nginx.conf") .. " -e "
    .. q(dir .. "/error.log")), "nginx did not start")
  for _ = 1, 100 do
    local c = socket.tcp()
    c:settimeout(0.1)
    if c:connect("127.0.0.1", port) then c:close(); break end
    c:close()
    socket.sleep(0.05)
  end
  local srv = { port = port, dir = dir }
  function srv.stop()
    local pid = read_file(dir .. "/nginx.pid")
    if pid then os.execute("kill -QUIT " .. pid:match("%d+")) end
    socket.sleep(0.2)
    os.execute("rm -rf " .. q(dir))
  end
  return srv
end

-- requests carrying marker after byte `from` of the access log -> polls, connections, resumed
local function count(info, marker, from)
  local log = (read_file(info.dir .. "/access.log") or ""):sub(from + 1)
  local conns, n, resumed, polls = {}, 0, 0, 0
  for line in log:gmatch("[^\n]+") do
    if line:find(marker, 1, true) then
      polls = polls + 1
      local conn, reused = line:match("conn=(%d+) reqs=%d+ tls_reused=(%S+)")
      if conn and not conns[conn] then
        conns[conn] = true
        n = n + 1
        if reused == "r" then resumed = resumed + 1 end
      end
    end
  end
  return polls, n, resumed
end

local function post(port, body)
  local c = socket.tcp()
  c:settimeout(120)
  assert(c:connect("127.0.0.1", port))
  assert(c:send(("POST /wait HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    .. "Content-Length: %d\r\nConnection: close\r\n\r\n%s"):format(#body, body)))
  local raw = c:receive("*a")
  c:close()
  local status, rbody = raw:match("^HTTP/1%.%d (%d+).-\r\n\r\n(.*)$")
  if status ~= "200" then error("nginx answered " .. tostring(status) .. ": " .. raw:sub(1, 2000), 0) end
  return json.decode(rbody)
end

local function round(info, pool)
  local c = ugen.new{ base_url = info.base_url, api_key = info.api_key, cainfo = info.cainfo, timeout = 30 }
  local admin = ugen.new{ base_url = info.origin, api_key = info.api_key, cainfo = info.cainfo, timeout = 30 }
  assert(admin:request("POST", "/_sandbox/clock", { speed = 0.001 }))   -- stopped (nginx starts it)
  local ids = {}
  ugen.run(function()
    for i = 1, N do
      c:spawn(function()
        local job, err = c.jobs:create{ product_name = "Bench mug " .. i,
          product_image_url = "https://example.com/mug.jpg", segment_count = 1 }
        ids[i] = assert(job, tostring(err)).job_id
      end)
    end
  end)
  local srv = start_nginx(info.cainfo)
  local marker = ("bench-ngx-%d-%d"):format(os.time(), math.random(1e9))
  local from = #(read_file(info.dir .. "/access.log") or "")
  local ok, r = pcall(post, srv.port, assert(json.encode{
    base_url = info.base_url:gsub("127%.0%.0%.1", "localhost"), api_key = info.api_key, ids = ids,
    delay = opts.delay, interval = opts.interval, pool_size = pool, marker = marker,
    clock_port = tonumber(info.origin:match(":(%d+)$")),
    clock_body = assert(json.encode{ speed = 1, advance = 20 }) }))
  local elog = read_file(srv.dir .. "/error.log") or ""
  srv.stop()
  if not ok then error(tostring(r) .. "\nnginx error.log:\n" .. elog:sub(-3000), 0) end
  socket.sleep(0.3)   -- nginx logs a request after answering it
  r.polls, r.conns, r.resumed = count(info, marker, from)
  return r
end

local function fmt(label, r)
  return ("  %-30s %6.3f s wall %6.3f s CPU  %5d polls  %4d connections (%d full TLS handshakes, %d resumed)  "
    .. "%d/%d completed"):format(label, r.wall, r.cpu, r.polls, r.conns, r.conns - r.resumed, r.resumed,
    r.completed, N)
end

local info
local function main()
  print(("wait_ngx: nginx/LuaJIT (OpenResty transport, HTTP/1.1 over TLS), %d jobs awaited at once from one "
    .. "request, every poll delayed %.2f s, interval %.2f s"):format(N, opts.delay, opts.interval))
  info = assert(sandbox.start{ port = 0, dir = tmpdir("sb"), speed = 0.001, seed = "bench", tls = true })
  local admin = ugen.new{ base_url = info.origin, api_key = info.api_key, cainfo = info.cainfo, timeout = 30 }
  local total = N * (ROUNDS + 2)
  assert(admin:request("PUT", "/_sandbox/limits", { concurrent_limit = total + 10, daily_limit = total * 2 + 100 }))
  assert(admin:request("POST", "/_sandbox/credits", { amount = total * 1000 }))
  local ok = true
  local pools = { { opts.pool, ROUNDS } }
  if opts.pool2 > 0 then pools[2] = { opts.pool2, 1 } end
  for _, p in ipairs(pools) do
    local pool, rounds = p[1], p[2]
    local floor = math.ceil(N / pool) * 2 * opts.delay
    local best
    for i = 1, rounds do
      local r = round(info, pool)
      print(fmt(("pool_size %d, round %d"):format(pool, i), r))
      if r.first_err then print("    first error: " .. r.first_err) end
      if r.completed ~= N then ok = false end
      if not best or r.wall < best.wall then best = r end
    end
    print(("  pool_size %d best of %d: %.3f s wall (floor %.2f s), %.3f s CPU, %d connections for %d polls")
      :format(pool, rounds, best.wall, floor, best.cpu, best.conns, best.polls))
  end
  print(ok and "PASS (every job completed)" or "FAIL: not every job completed")
  return ok
end

local okrun, res = xpcall(main, debug.traceback)
if info then
  sandbox.stop{ dir = info.dir }
  os.execute("rm -rf " .. q(info.dir))
end
if not okrun then
  io.stderr:write(tostring(res), "\n")
  os.exit(1)
end
os.exit(res and 0 or 1)
