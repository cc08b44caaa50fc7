-- ugen.sandbox.nginx: the sandbox server's nginx process as the manager sees
-- it: renders sandbox/nginx.conf.tmpl into DIR/nginx.conf, starts
-- `nginx -p DIR/ -c DIR/nginx.conf`, waits for GET /_sandbox/health, finds the
-- master's pid and stops it with its workers. Knows nothing of tenants or the
-- info file (ugen.sandbox does). Internal part of ugen.sandbox.

local sys = require "ugen.sandbox.sys"

local M = {}

local type, tostring, tonumber, ipairs, pcall, require = type, tostring, tonumber, ipairs, pcall, require
local format, concat = string.format, table.concat
local q, run, read_file, capture, alive, is_nginx, sleep, monotime =
  sys.q, sys.run, sys.read_file, sys.capture, sys.alive, sys.is_nginx, sys.sleep, sys.monotime

--- The master's pid from DIR/nginx.pid -> number | nil
function M.read_pid(dir)
  local s = read_file(dir .. "/nginx.pid")
  return s and tonumber(s:match("%d+"))
end

--- The pid of the sandbox nginx running in dir -> pid | nil
function M.running(dir)
  local pid = M.read_pid(dir)
  if not pid or not alive(pid) or not is_nginx(pid) then return nil end
  return pid
end

--- A free port on 127.0.0.1 (luasocket; else a random one in 20000-60000)
function M.free_port()
  local socket = sys.socket
  if socket then
    local s = socket.tcp()
    if s and s:bind("127.0.0.1", 0) then
      local _, port = s:getsockname()
      s:close()
      return tonumber(port)
    end
    if s then s:close() end
  end
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  return math.random(20000, 60000)
end

--- nginx.conf from the template (its ${NAME} placeholders) -> string.
-- c: dir, root (sandbox/), port, lua_dir (the ugen modules), core_dir (a
-- LuaJIT ugen/core.so), tls = nil | { cainfo =, cert =, key = }.
-- UGEN_NGINX_MODULES: where ndk_http_module.so / ngx_http_lua_module.so are
-- (default /usr/lib/nginx/modules; each skipped when absent: compiled in).
function M.render(template, c)
  local modules_dir = os.getenv("UGEN_NGINX_MODULES")
  if not modules_dir or modules_dir == "" then modules_dir = "/usr/lib/nginx/modules" end
  local load = {}
  for _, m in ipairs({ "ndk_http_module.so", "ngx_http_lua_module.so" }) do
    if read_file(modules_dir .. "/" .. m) then load[#load + 1] = 'load_module "' .. modules_dir .. "/" .. m .. '";' end
  end
  local tlsf = c.tls
  local vars = {
    LOAD_MODULES = concat(load, "\n"), USER = sys.uid() == "0" and "user root;" or "",
    DIR = c.dir, ROOT = c.root, PORT = tostring(c.port), LOG_LEVEL = "warn",
    LISTEN_OPTS = tlsf and " ssl http2" or "",
    TLS_SERVER = tlsf and format('ssl_certificate "%s";\n    ssl_certificate_key "%s";\n'
      .. '    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:ugen_sandbox_tls:1m;\n'
      .. '    ssl_session_timeout 1h;', tlsf.cert, tlsf.key) or "",
    TLS_HTTP = tlsf and format('lua_ssl_trusted_certificate "%s";\n  lua_ssl_verify_depth 2;\n'
      .. '  lua_ssl_protocols TLSv1.2 TLSv1.3;', tlsf.cainfo) or "",
    LUA_PATH = concat({ c.root .. "/lib/?.lua", c.lua_dir .. "/?.lua", c.lua_dir .. "/?/init.lua" }, ";"),
    LUA_CPATH = c.core_dir .. "/?.so",
  }
  return (template:gsub("%${([%u_]+)}", function(k) return vars[k] end))
end

--- Runs the nginx binary on DIR/nginx.conf (it daemonizes) -> true | false.
-- The caller's LUA_PATH/LUA_CPATH may name another Lua's modules (a 5.4
-- cjson): nginx's LuaJIT gets the configured paths, then its own defaults.
function M.launch(bin, dir)
  os.remove(dir .. "/start.err")
  return run(format("unset LUA_PATH LUA_CPATH; %s -p %s -c %s -e %s 2>%s", q(bin), q(dir .. "/"),
                    q(dir .. "/nginx.conf"), q(dir .. "/error.log"), q(dir .. "/start.err")))
end

-- GET /_sandbox/health -> true when it answers 200 | false[, message when
-- waiting longer cannot help: the server's certificate does not verify]
local function probe(port, cainfo)
  if cainfo then
    -- over TLS through the SDK's own libcurl transport (the C core is loaded
    -- already: it signed the JWTs), verifying against the sandbox CA
    local ok, curl = pcall(require, "ugen.runtime.curl")
    if not ok then return false, "cannot load ugen.runtime.curl: " .. tostring(curl) end
    local res, err = curl.perform{ method = "GET", url = format("https://127.0.0.1:%d/_sandbox/health", port),
                                        cainfo = cainfo, timeout = 1, connect_timeout = 1 }
    if res then return res.status == 200 end
    if type(err) == "table" and err.kind == "tls" then
      return false, "the sandbox's certificate does not verify against " .. cainfo .. ": " .. tostring(err.message)
    end
    return false
  end
  local socket = sys.socket
  if socket then
    local c = socket.tcp()
    c:settimeout(1)
    if not c:connect("127.0.0.1", port) then c:close(); return false end
    c:send("GET /_sandbox/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    local line = c:receive("*l")
    c:close()
    return line ~= nil and line:match("^HTTP/%d%.%d 200") ~= nil
  end
  return run(format("curl -fsS -m 1 -o /dev/null http://127.0.0.1:%d/_sandbox/health 2>/dev/null", port))
end

--- Waits up to timeout seconds for the just launched server in dir to answer
-- on port (over TLS verified against cainfo when given) -> pid | nil, message.
-- A server that does not come up is killed.
function M.wait_up(dir, port, cainfo, timeout)
  local deadline = monotime() + timeout
  local up, fatal
  repeat
    up, fatal = probe(port, cainfo)
    if up or fatal then break end
    local pid = M.read_pid(dir)
    if pid and not alive(pid) then break end
    sleep(0.05)
  until monotime() > deadline
  local pid = M.read_pid(dir)
  if up and pid then return pid end
  if pid and alive(pid) then run("kill -TERM " .. pid .. " 2>/dev/null") end
  return nil, fatal or ("the sandbox did not come up within " .. timeout .. " s")
end

--- The last n (default 8) lines of DIR/error.log and DIR/start.err
function M.log_tail(dir, n)
  local s = read_file(dir .. "/error.log") or ""
  local err = read_file(dir .. "/start.err") or ""
  s = s .. err
  local lines = {}
  for line in s:gmatch("[^\n]+") do lines[#lines + 1] = line end
  local first = math.max(1, #lines - (n or 8) + 1)
  return concat(lines, "\n", first, #lines)
end

--- Stops the nginx master pid (TERM, then KILL after 5 s) and makes sure none
-- of its workers outlives it.
function M.kill(pid)
  local children = capture("cat /proc/" .. pid .. "/task/" .. pid .. "/children 2>/dev/null") or ""
  run("kill -TERM " .. pid .. " 2>/dev/null")
  local deadline = monotime() + 5
  while alive(pid) and monotime() < deadline do sleep(0.05) end
  if alive(pid) then run("kill -KILL " .. pid .. " 2>/dev/null") end
  for child in children:gmatch("%d+") do
    local d2 = monotime() + 2
    while alive(child) and monotime() < d2 do sleep(0.05) end
    if alive(child) and is_nginx(child) then run("kill -KILL " .. child .. " 2>/dev/null") end
  end
end

return M
