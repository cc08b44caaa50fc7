-- busted helper for the nginx suite (spec/nginx): start a real nginx with
-- lua-nginx-module and THIS tree's SDK (lua/ on lua_package_path,
-- build/luajit/ on lua_package_cpath), worker_processes 1, loopback only,
-- pid/logs/temp under a private temp dir; stopped at the end of the busted
-- run (suite end) and, as a second line of defence, by a __gc guard.
--
--   local N = require "support.nginx"
--   local srv = N.start{
--     ports = 2,                      -- how many free ports to reserve: ${PORT1}, ${PORT2}, ...
--     http = [[ server { listen 127.0.0.1:${PORT1}; location / { content_by_lua_block { ... } } } ]],
--     vars = { NAME = "value" },      -- extra ${NAME} substitutions
--     conf = function(dir, ports) -> whole nginx.conf text (instead of http),
--     env = { NAME = "value" },       -- environment of the nginx master
--     pid_file = "nginx.pid", error_log = "error.log",   -- relative to the prefix dir
--   }
--   srv.port(1), srv.url(path[, i]), srv.dir, srv.log() -> error.log text
--   srv.request{ method =, path =, body =, headers = {...}, port = i, timeout = } ->
--       { status =, headers = {lowercase = value}, body =, json = }  (luasocket, Connection: close)
--   N.parallel{ {url =, ...}, ... } -> list of { status =, body =, time = } (one curl process each)
--   srv.stop()
local json = require "ugen.json"
local socket = require "socket"

local M = {}

local util = require "support.util"
local q, read_file, write_file, run, capture = util.q, util.read_file, util.write_file, util.run, util.capture
M.q, M.read_file, M.write_file, M.capture = q, read_file, write_file, capture

local function repo_root()
  local src = debug.getinfo(1, "S").source:sub(2)          -- spec/support/nginx.lua
  if src:sub(1, 1) ~= "/" then src = (capture("pwd"):gsub("%s+$", "")) .. "/" .. src end
  return (src:gsub("/spec/support/nginx%.lua$", ""))
end
M.root = repo_root()

local tmp_base
local function self_pid()
  return tonumber(capture("echo $PPID"):match("%d+"))
end
M.self_pid = self_pid

function M.tmpdir()
  if not tmp_base then
    -- under scripts/test.sh's spec dir when set: its exit trap stops every
    -- nginx.pid it finds there, should this process die before suite end
    local base = os.getenv("UGEN_SANDBOX_SPEC_DIR")
    if base and base ~= "" then
      tmp_base = base .. "/nginx-" .. tostring(self_pid())
    else
      local name = os.tmpname()
      os.remove(name)
      tmp_base = name .. ".ugen-nginx"
    end
  end
  M.count = (M.count or 0) + 1
  local d = tmp_base .. "/" .. M.count
  assert(run("mkdir -p " .. q(d .. "/tmp") .. " && chmod 700 " .. q(tmp_base)))
  return d
end

local running = {}

local function stop_all()
  for srv in pairs(running) do srv.stop() end
  if tmp_base then run("rm -rf " .. q(tmp_base)) end
  tmp_base = nil
end

local guard
local newproxy = rawget(_G, "newproxy")
local function install_guards()
  if guard then return end
  local busted = require "busted"
  busted.subscribe({ "suite", "end" }, function() stop_all(); return nil, true end, { priority = 1 })
  if newproxy then
    guard = newproxy(true)
    getmetatable(guard).__gc = stop_all
  else
    guard = setmetatable({}, { __gc = stop_all })
  end
end

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end
M.free_port = free_port

local function alive(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end

local SKELETON = [[
${LOAD_MODULES}
${USER}
worker_processes 1;
daemon on;
master_process on;
pid ${DIR}/nginx.pid;
error_log ${DIR}/error.log ${LOG_LEVEL};
events { worker_connections 1024; }
http {
  access_log ${DIR}/access.log;
  client_body_temp_path ${DIR}/tmp/body;
  proxy_temp_path ${DIR}/tmp/proxy;
  fastcgi_temp_path ${DIR}/tmp/fastcgi;
  uwsgi_temp_path ${DIR}/tmp/uwsgi;
  scgi_temp_path ${DIR}/tmp/scgi;
  default_type application/octet-stream;
  lua_package_path "${ROOT}/spec/nginx/server/?.lua;${ROOT}/lua/?.lua;${ROOT}/lua/?/init.lua;;";
  lua_package_cpath "${ROOT}/build/luajit/?.so;;";
  lua_code_cache on;
  lua_socket_log_errors off;
${HTTP}
}
]]

local function subst(s, vars)
  return (s:gsub("%${([%w_]+)}", function(k)
    local v = vars[k]
    if v == nil then error("support.nginx: no value for ${" .. k .. "}") end
    return tostring(v)
  end))
end

function M.start(o)
  install_guards()
  local dir = M.tmpdir()
  local modules = {}
  for _, m in ipairs({ "ndk_http_module.so", "ngx_http_lua_module.so" }) do
    local p = "/usr/lib/nginx/modules/" .. m
    if read_file(p) then modules[#modules + 1] = "load_module " .. p .. ";" end
  end
  local uid = capture("id -u"):match("%d+")
  local last
  for _ = 1, 4 do
    local vars = {
      LOAD_MODULES = table.concat(modules, "\n"), USER = uid == "0" and "user root;" or "",
      DIR = dir, ROOT = M.root, LOG_LEVEL = o.log_level or "warn",
    }
    local ports = {}
    for i = 1, (o.ports or 1) do
      ports[i] = free_port()
      vars["PORT" .. i] = ports[i]
    end
    for k, v in pairs(o.vars or {}) do vars[k] = v end
    if o.prepare then o.prepare(dir, ports) end
    if o.conf then
      write_file(dir .. "/nginx.conf", o.conf(dir, ports))
    else
      vars.HTTP = subst(o.http, vars)
      write_file(dir .. "/nginx.conf", subst(SKELETON, vars))
    end
    write_file(dir .. "/error.log", "")
    local env = {}
    for k, v in pairs(o.env or {}) do env[#env + 1] = k .. "=" .. q(v) end
    local ok = run(("%snginx -p %s -c %s -e %s 2>%s"):format(#env > 0 and ("env " .. table.concat(env, " ") .. " ")
      or "", q(dir .. "/"), q(dir .. "/nginx.conf"),
      q(dir .. "/error.log"), q(dir .. "/start.err")))
    local srv = { dir = dir, ports = ports, error_log = dir .. "/" .. (o.error_log or "error.log") }
    if ok then
      -- wait until every port accepts
      local deadline = socket.gettime() + 10
      local up
      repeat
        up = true
        for _, p in ipairs(ports) do
          local c = socket.tcp()
          c:settimeout(0.2)
          if not c:connect("127.0.0.1", p) then up = false end
          c:close()
        end
        if not up then socket.sleep(0.02) end
      until up or socket.gettime() > deadline
      local pid = tonumber((read_file(dir .. "/" .. (o.pid_file or "nginx.pid")) or ""):match("%d+"))
      if up and pid then
        srv.pid = pid
        M._bind(srv)
        running[srv] = true
        return srv
      end
      if pid then run("kill -TERM " .. pid) end
    end
    last = (read_file(dir .. "/start.err") or "") .. (read_file(srv.error_log) or "")
    if not last:find("Address already in use", 1, true) then break end
  end
  error("support.nginx: nginx did not start:\n" .. tostring(last))
end

-- Parse a raw HTTP response (Connection: close).
local function parse_response(raw)
  local head, body = raw:match("^(.-)\r\n\r\n(.*)$")
  if not head then return { status = 0, headers = {}, body = raw, raw = raw } end
  local status = tonumber(head:match("^HTTP/%d%.%d (%d%d%d)")) or 0
  local headers = {}
  for line in head:gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then headers[k:lower()] = v end
  end
  if (headers["transfer-encoding"] or ""):find("chunked") then
    local out, pos = {}, 1
    while true do
      local size_hex, after = body:match("^(%x+)[^\r\n]*\r\n()", pos)
      if not size_hex then break end
      local n = tonumber(size_hex, 16)
      if n == 0 then break end
      out[#out + 1] = body:sub(after, after + n - 1)
      pos = after + n + 2
    end
    body = table.concat(out)
  end
  local res = { status = status, headers = headers, body = body }
  if body ~= "" and (headers["content-type"] or ""):find("json") then res.json = json.decode(body) end
  return res
end

function M._bind(srv)
  function srv.port(i) return srv.ports[i or 1] end
  function srv.url(path, i) return "http://127.0.0.1:" .. srv.ports[i or 1] .. (path or "/") end
  function srv.log() return read_file(srv.error_log) or "" end
  function srv.request(r)
    local c = socket.tcp()
    c:settimeout(r.timeout or 30)
    assert(c:connect("127.0.0.1", srv.ports[r.port or 1]))
    local lines = { (r.method or "GET") .. " " .. (r.path or "/") .. " HTTP/1.1", "Host: 127.0.0.1",
                    "Connection: close" }
    local body = r.body
    if r.json ~= nil then
      body = assert(json.encode(r.json))
      lines[#lines + 1] = "Content-Type: application/json"
    end
    for k, v in pairs(r.headers or {}) do
      if type(v) == "table" then
        for _, x in ipairs(v) do lines[#lines + 1] = k .. ": " .. x end
      else
        lines[#lines + 1] = k .. ": " .. v
      end
    end
    if body then lines[#lines + 1] = "Content-Length: " .. #body end
    assert(c:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")))
    local raw, err, partial = c:receive("*a")
    c:close()
    raw = raw or partial
    if not raw or raw == "" then error("support.nginx: no response (" .. tostring(err) .. ")") end
    return parse_response(raw)
  end
  function srv.stop()
    if not running[srv] then return end
    running[srv] = nil
    local pid = srv.pid
    local children = read_file("/proc/" .. pid .. "/task/" .. pid .. "/children") or ""
    run("kill -TERM " .. pid .. " 2>/dev/null")
    local deadline = socket.gettime() + 5
    while alive(pid) and socket.gettime() < deadline do socket.sleep(0.02) end
    if alive(pid) then run("kill -KILL " .. pid .. " 2>/dev/null") end
    for child in children:gmatch("%d+") do
      local d2 = socket.gettime() + 2
      while alive(child) and socket.gettime() < d2 do socket.sleep(0.02) end
      if alive(child) then run("kill -KILL " .. child .. " 2>/dev/null") end
    end
  end
end

local APP_HTTP = [[
  lua_shared_dict ugen_webhooks 1m;
  lua_shared_dict events 1m;
  lua_shared_dict phase 1m;
  lua_ssl_trusted_certificate ${DIR}/ca-bundle.crt;
  lua_ssl_verify_depth 2;
  init_by_lua_block { require("ugen_test_app").init(dofile(ngx.config.prefix() .. "app-config.lua")) }
  init_worker_by_lua_block { require("ugen_test_app").init_worker() }
  server {
    listen 127.0.0.1:${PORT1};
    client_max_body_size 4m;
    location /api/v1/ { content_by_lua_block { require("ugen_test_app").fake_api() } }
    location = /echo { content_by_lua_block { require("ugen_test_app").echo() } }
    location = /raw { content_by_lua_block { require("ugen_test_app").raw() } }
    location = /chunked { content_by_lua_block { require("ugen_test_app").chunked_stream() } }
    location = /nobody { content_by_lua_block { require("ugen_test_app").nobody() } }
    location = /redir { content_by_lua_block { require("ugen_test_app").redir() } }
    location /static/ { alias ${DIR}/static/; }
    location = /run { content_by_lua_block { require("ugen_test_app").run() } }
    location = /fanout { content_by_lua_block { require("ugen_test_app").fanout() } }
    location = /one { content_by_lua_block { require("ugen_test_app").one() } }
    location = /wait_all { content_by_lua_block { require("ugen_test_app").wait_all() } }
    location = /sleep_probe { content_by_lua_block { require("ugen_test_app").sleep_probe() } }
    location = /hooks/ugen {
      client_body_buffer_size 64k;
      content_by_lua_block { require("ugen_test_app").hook() }
    }
    location = /hooks/small {
      client_body_buffer_size 1k;
      content_by_lua_block { require("ugen_test_app").hook_small() }
    }
    location = /events { content_by_lua_block { require("ugen_test_app").events() } }
    location = /phase { content_by_lua_block { require("ugen_test_app").phase() } }
    location = /logphase {
      content_by_lua_block { ngx.say("ok") }
      header_filter_by_lua_block { require("ugen_test_app").call_in_phase("header_filter") }
      log_by_lua_block { require("ugen_test_app").call_in_phase("log") }
    }
  }
  server {
    listen 127.0.0.1:${PORT2} ssl;
    ssl_certificate ${DIR}/trusted.crt;
    ssl_certificate_key ${DIR}/trusted.key;
    location / { content_by_lua_block { require("ugen_test_app").fake_api() } }
    location = /echo { content_by_lua_block { require("ugen_test_app").echo() } }
  }
  server {
    listen 127.0.0.1:${PORT3} ssl;
    ssl_certificate ${DIR}/untrusted.crt;
    ssl_certificate_key ${DIR}/untrusted.key;
    location / { content_by_lua_block { require("ugen_test_app").fake_api() } }
  }
  server {
    listen 127.0.0.1:${PORT4} ssl;
    ssl_certificate ${DIR}/othername.crt;
    ssl_certificate_key ${DIR}/othername.key;
    location / { content_by_lua_block { require("ugen_test_app").fake_api() } }
  }
]]

-- The one configuration of the shared test app (every spec file gets the same server).
M.SECRETS = { require("ugen.webhook").new_secret(), require("ugen.webhook").new_secret() }
-- transport = nil: the SDK picks "ngx" by itself inside nginx (and sleeps with ngx.sleep).
M.APP_CONFIG = { secrets = M.SECRETS }

local app
--- The shared test app (one per busted run): the SDK inside nginx (ugen_test_app).
-- cfg: { secrets = {...}, transport = "ngx" | nil }
function M.app(cfg)
  if app then return app end
  cfg = cfg or M.APP_CONFIG
  app = M.start{
    ports = 4, http = APP_HTTP,
    prepare = function(dir, ports)
      if not read_file(dir .. "/trusted.crt") then
        M.make_cert(dir, "trusted")
        M.make_cert(dir, "untrusted")
        M.make_cert(dir, "othername", "DNS:other.example")
        write_file(dir .. "/ca-bundle.crt", read_file(dir .. "/trusted.crt") .. read_file(dir .. "/othername.crt"))
        -- a file nginx serves statically (Range requests work)
        assert(run("mkdir -p " .. q(dir .. "/static")))
        local t = {}
        for i = 1, 20000 do t[i] = string.format("%05d", i) end
        write_file(dir .. "/static/blob.bin", table.concat(t))
      end
      local c = {}
      for k, v in pairs(cfg or {}) do c[k] = v end
      c.port = ports[1]
      c.owner_pid = self_pid()
      local json_cfg = assert(json.encode(c))
      write_file(dir .. "/app-config.lua", ("return require('ugen.json').decode(%q, true)\n"):format(json_cfg))
    end,
  }
  app.config = cfg
  return app
end

--- POST /run on the app -> decoded JSON reply
function M.run(spec)
  local r = M.app().request{ method = "POST", path = "/run", json = spec, timeout = 60 }
  assert(r.status == 200, "POST /run: HTTP " .. tostring(r.status) .. " " .. tostring(r.body))
  return r.json
end

--- The adapter alone inside nginx: transport{url =, ...} -> res, err, elapsed
function M.transport(spec)
  spec.call = "transport"
  local j = M.run(spec)
  return j.res, j.err, j.elapsed
end

--- Several GETs at once, one curl process each -> { {status =, body =, time =}, ... }
function M.parallel(list)
  local d = M.tmpdir()
  local cmds = {}
  for i, r in ipairs(list) do
    local p = d .. "/p" .. i
    cmds[i] = ("( curl -sS --max-time %d -o %s -w '%%{http_code} %%{time_total}' %s > %s 2>/dev/null ) &")
      :format(r.timeout or 20, q(p .. ".body"), q(r.url), q(p .. ".meta"))
  end
  local t0 = socket.gettime()
  run(table.concat(cmds, "\n") .. "\nwait")
  local wall = socket.gettime() - t0
  local out = {}
  for i = 1, #list do
    local p = d .. "/p" .. i
    local meta = read_file(p .. ".meta") or ""
    local code, t = meta:match("^(%d+) ([%d.]+)")
    local body = read_file(p .. ".body") or ""
    out[i] = { status = tonumber(code) or 0, time = tonumber(t), body = body, json = json.decode(body) }
  end
  return out, wall
end

--- Self-signed certificate -> crt path, key path. san default: the names a
-- client uses for 127.0.0.1 (nginx checks names with X509_check_host, so an
-- IP literal must also appear as a DNS name).
function M.make_cert(dir, name, san)
  local crt, key = dir .. "/" .. name .. ".crt", dir .. "/" .. name .. ".key"
  san = san or "IP:127.0.0.1,DNS:127.0.0.1,DNS:localhost"
  local ok = run(("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj %s -addext %s -keyout %s -out %s "
    .. ">/dev/null 2>&1"):format(q("/CN=" .. name), q("subjectAltName=" .. san), q(key), q(crt)))
  assert(ok, "openssl could not make a certificate")
  return crt, key
end

return M
