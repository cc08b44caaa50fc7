-- busted helper: a real nginx (spec/support/nginx.lua) that runs a Lua file
-- in its content phase, the way user code runs under content_by_lua_block,
-- with chosen environment variables visible to os.getenv (nginx `env`
-- directives). For docs snippets and SDK calls inside OpenResty.
--
--   local L = require "support.lua_in_nginx"
--   local srv = L.start{ UGEN_BASE_URL = "...", UGEN_API_KEY = "..." }
--   local r = srv.run_file("/tmp/x/snippet.lua")   -- { status =, body = }
--   -- 200 and what the file printed with ngx.say; 500 and "error: ..." when it
--   -- raised (or failed to load); any status the file set itself otherwise
--   srv.stop()

local N = require "support.nginx"
local util = require "support.util"

local M = {}

local CONF = [[
${MODULES}
${USER}
${ENV}
worker_processes 1;
daemon on;
master_process on;
pid ${DIR}/nginx.pid;
error_log ${DIR}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${DIR}/tmp/body;
  proxy_temp_path ${DIR}/tmp/proxy;
  fastcgi_temp_path ${DIR}/tmp/fastcgi;
  uwsgi_temp_path ${DIR}/tmp/uwsgi;
  scgi_temp_path ${DIR}/tmp/scgi;
  lua_package_path "${ROOT}/lua/?.lua;${ROOT}/lua/?/init.lua;;";
  lua_package_cpath "${ROOT}/build/luajit/?.so;;";
  lua_socket_log_errors off;
  server {
    listen 127.0.0.1:${PORT};
    location = /run {
      content_by_lua_block {
        local fn, lerr = loadfile(ngx.var.arg_path)
        if not fn then ngx.status = 500; ngx.say("error: ", lerr); return end
        local ok, err = pcall(fn)
        if not ok then ngx.status = 500; ngx.say("error: ", tostring(err)); return end
      }
    }
  }
}
]]

--- Start an nginx whose /run executes a Lua file; env: name -> value.
function M.start(env)
  env = env or {}
  local srv = N.start{
    env = env,
    conf = function(dir, ports)
      local modules, names = {}, {}
      for _, m in ipairs({ "ndk_http_module.so", "ngx_http_lua_module.so" }) do
        local p = "/usr/lib/nginx/modules/" .. m
        if util.read_file(p) then modules[#modules + 1] = "load_module " .. p .. ";" end
      end
      for k in pairs(env) do names[#names + 1] = "env " .. k .. ";" end
      table.sort(names)
      local vars = { MODULES = table.concat(modules, "\n"), ENV = table.concat(names, "\n"),
        USER = util.capture("id -u"):match("^0%s*$") and "user root;" or "",
        DIR = dir, ROOT = N.root, PORT = ports[1] }
      return (CONF:gsub("%${([%w_]+)}", function(k) return assert(vars[k], k) end))
    end,
  }
  function srv.run_file(path, timeout)
    local r = srv.request{ path = "/run?path=" .. path:gsub("[^%w/._-]", function(c)
      return ("%%%02X"):format(c:byte())
    end), timeout = timeout or 60 }
    return { status = r.status, body = r.body }
  end
  return srv
end

return M
