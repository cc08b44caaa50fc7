-- ugen.sandbox: the sandbox MANAGER, client side: starts, stops and inspects
-- the local U-Gen sandbox server from any Lua (what `ugen sandbox ...` and the
-- specs use). The SERVER itself is another package, `ugen_sandbox_server.*` in
-- sandbox/lib/ugen_sandbox_server/: the code nginx's Lua module runs (the fake API),
-- never loaded by the SDK; this manager only renders sandbox/nginx.conf.tmpl,
-- runs nginx on it and reads the server's seed module for the tenants' keys.
--
--   local sandbox = require "ugen.sandbox"
--   local info, err = sandbox.start{ port = 0, dir = nil, speed = 1, seed = "ugen-sandbox", tls = false }
--   -- info = { base_url = "http://127.0.0.1:PORT/api/v1", origin = "http://127.0.0.1:PORT",
--   --          tls =, cainfo = <CA certificate path, with tls = true: https URLs>,
--   --          port =, dir =, pid =, worker_pid =, speed =, seed =, api_key = <default tenant key>,
--   --          jwt = <default tenant JWT>, tenants = { { slug =, name =, id =, api_key =, jwt =,
--   --          jwt_expired =, credits =, concurrent_limit =, daily_limit = }, ... } }
--   sandbox.status{ dir = } -> info | nil, message
--   sandbox.stop{ dir = }   -> true | nil, message
--   sandbox.exports(info)   -> the export lines `ugen sandbox start` prints
--   sandbox.root(), sandbox.default_dir() -> the server's sandbox/ dir, the default state dir
--   sandbox.tls             -> ugen.sandbox.tls (a private CA and its certificates)
-- The `ugen sandbox start|stop|status` commands are ugen.cli.cmd_sandbox.
--
-- Parts (lua/ugen/sandbox/): locate (the server's files, nginx, the LuaJIT
-- core), nginx (nginx.conf, the nginx process), tls (CA and certificates),
-- sys (shell, file and process helpers). None of them requires this module.
--
-- Works from Lua 5.1-5.4 and LuaJIT, from a checkout or an installed rock.
-- Needs the `nginx` binary with the Lua module (Debian: nginx +
-- libnginx-mod-http-lua), the C core ugen.core for the calling interpreter
-- (JWT signing) and a LuaJIT build of it for nginx's Lua module (the server's
-- HMAC), and luasocket (port picking, readiness probe); with tls, the openssl
-- CLI (UGEN_OPENSSL names another binary). The LuaJIT core is, in order: a
-- checkout's build/luajit/, the installed one on a LuaRocks 5.1 tree, else
-- built once from the sources (the checkout's or the rock's csrc/) into
-- $XDG_CACHE_HOME/lua-ugen/ (default ~/.cache/lua-ugen/; needs cc, LuaJIT's
-- headers and the libcurl/OpenSSL headers the rock was built with). nginx
-- starts without the caller's LUA_PATH/LUA_CPATH (another Lua's modules).
--
-- Environment: UGEN_SANDBOX_ROOT (the sandbox/ directory; default: next to
-- this checkout's lua/, else the installed rock's copy), UGEN_SANDBOX_CORE (a
-- directory holding ugen/core.so built for LuaJIT), UGEN_LUAJIT_INCDIR (LuaJIT's
-- lua.h, to build one; default /usr/include/luajit-2.1 and the like), CC,
-- UGEN_NGINX (nginx binary; default: nginx on PATH, then /usr/sbin/nginx),
-- UGEN_NGINX_MODULES (dir with ngx_http_lua_module.so; default
-- /usr/lib/nginx/modules, skipped when absent: modules compiled in).

local sys = require "ugen.sandbox.sys"
local locate = require "ugen.sandbox.locate"
local nginx = require "ugen.sandbox.nginx"
local tls = require "ugen.sandbox.tls"
local args = require "ugen.args"
local argerror = args.argerror

local _M = { _VERSION = locate.VERSION, tls = tls, root = locate.root, default_dir = locate.default_dir }

local type, tostring, pairs, ipairs, pcall, require = type, tostring, pairs, ipairs, pcall, require
local format, concat = string.format, table.concat
local q, run, read_file, write_file, alive, abspath, norm =
  sys.q, sys.run, sys.read_file, sys.write_file, sys.alive, sys.abspath, sys.norm

local DEFAULT_SEED = "ugen-sandbox"
local START_TIMEOUT = 10 -- seconds to wait for the server to answer

----------------------------------------------------------------------------
-- info file (a Lua table literal, loaded without globals)
----------------------------------------------------------------------------

local function serialize(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "string" then return format("%q", v) end
  if t == "number" or t == "boolean" then return tostring(v) end
  if t ~= "table" then return "nil" end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) then return a < b end
    return type(a) == "number"
  end)
  local out = { "{\n" }
  for _, k in ipairs(keys) do
    local key = type(k) == "number" and ("[" .. k .. "]") or ("[" .. format("%q", k) .. "]")
    out[#out + 1] = indent .. "  " .. key .. " = " .. serialize(v[k], indent .. "  ") .. ",\n"
  end
  out[#out + 1] = indent .. "}"
  return concat(out)
end

local function load_table(path)
  local src = read_file(path)
  if not src then return nil end
  local chunk
  if setfenv then
    chunk = loadstring(src, "=" .. path)
    if chunk then setfenv(chunk, {}) end
  else
    chunk = load(src, "=" .. path, "t", {})
  end
  if not chunk then return nil end
  local ok, t = pcall(chunk)
  if ok and type(t) == "table" then return t end
  return nil
end

----------------------------------------------------------------------------
-- seed data (the server's own module: sandbox/lib/ugen_sandbox_server/seed.lua)
----------------------------------------------------------------------------

local function load_seed_module(root)
  local path = root .. "/lib/ugen_sandbox_server/seed.lua"
  local chunk, err = loadfile(path)
  if not chunk then return nil, "cannot load " .. path .. ": " .. tostring(err) end
  return chunk()
end

local function tenants_for(root, seed)
  local seedmod, err = load_seed_module(root)
  if not seedmod then return nil, err end
  local ok, crypto = pcall(require, "ugen.crypto")
  if not ok then return nil, "cannot load ugen.crypto: " .. tostring(crypto) end
  local ok2, list = pcall(seedmod.tenants, seed, crypto.hmac_sha256)
  if not ok2 then return nil, "cannot sign the sandbox JWTs (is ugen.core built? run `make build`): "
                              .. tostring(list) end
  return list
end

----------------------------------------------------------------------------
-- public API
----------------------------------------------------------------------------

local function check_opts(fname, opts)
  if opts == nil then return {} end
  args.check_table(opts, 1, fname, 3)
  if opts.dir ~= nil and type(opts.dir) ~= "string" then
    argerror(1, fname, "dir: string expected, got " .. type(opts.dir), 3)
  end
  return opts
end

--- The running sandbox in dir -> info | nil, message
function _M.status(opts)
  opts = check_opts("status", opts)
  local dir = opts.dir or locate.default_dir()
  local pid = nginx.running(dir)
  if not pid then
    return nil, "no sandbox running in " .. dir
  end
  local info = load_table(dir .. "/sandbox-info.lua")
  if not info then
    return nil, "a sandbox nginx (pid " .. pid .. ") runs in " .. dir .. " but its info file is missing"
  end
  info.pid = pid
  return info
end

--- Start a sandbox -> info | nil, message
function _M.start(opts)
  opts = check_opts("start", opts)
  local port, speed, seed = opts.port, opts.speed, opts.seed
  if port ~= nil and (type(port) ~= "number" or port < 0 or port > 65535 or port % 1 ~= 0) then
    argerror(1, "start", "port: integer 0-65535 expected, got " .. tostring(port), 2)
  end
  if speed ~= nil and (type(speed) ~= "number" or speed ~= speed or speed <= 0 or speed == math.huge) then
    argerror(1, "start", "speed: positive number expected, got " .. tostring(speed), 2)
  end
  if seed ~= nil and type(seed) ~= "string" and type(seed) ~= "number" then
    argerror(1, "start", "seed: string expected, got " .. type(seed), 2)
  end
  if opts.owner_pid ~= nil and type(opts.owner_pid) ~= "number" then
    argerror(1, "start", "owner_pid: number expected, got " .. type(opts.owner_pid), 2)
  end
  if opts.tls ~= nil and type(opts.tls) ~= "boolean" then
    argerror(1, "start", "tls: boolean expected, got " .. type(opts.tls), 2)
  end
  local use_tls = opts.tls == true
  speed = speed or 1
  seed = tostring(seed or DEFAULT_SEED)
  local dir = norm(abspath(opts.dir or locate.default_dir()))

  local running = _M.status{ dir = dir }
  if running then
    return nil, format("a sandbox is already running in %s (pid %d, %s); stop it first with "
                       .. "`ugen sandbox stop --dir %s`", dir, running.pid, running.base_url, dir)
  end
  local old_pid = nginx.read_pid(dir)
  if old_pid and alive(old_pid) then
    return nil, format("%s/nginx.pid names a live process (%d) that is not a sandbox nginx", dir, old_pid)
  end

  local root = locate.root()
  local template = read_file(root .. "/nginx.conf.tmpl")
  if not template then return nil, "sandbox files not found in " .. root .. " (set UGEN_SANDBOX_ROOT)" end
  local nginx_bin = locate.nginx()
  if not nginx_bin then
    return nil, "nginx not found (install nginx and libnginx-mod-http-lua, or set UGEN_NGINX)"
  end

  local tenants, terr = tenants_for(root, seed)
  if not tenants then return nil, terr end

  if not run("mkdir -p " .. q(dir .. "/tmp") .. " " .. q(dir .. "/files") .. " && chmod 700 " .. q(dir)) then
    return nil, "cannot create " .. dir
  end
  os.remove(dir .. "/nginx.pid")
  os.remove(dir .. "/sandbox-info.lua")

  local tlsf
  if use_tls then
    local err
    tlsf, err = tls.server_files(dir)
    if not tlsf then return nil, "cannot make the sandbox's TLS certificate: " .. tostring(err) end
  end
  local scheme = use_tls and "https" or "http"

  local core_dir, core_err = locate.luajit_core()
  if not core_dir then return nil, core_err end
  local luadir = locate.lua_dir()

  local attempts = (port == nil or port == 0) and 5 or 1
  local last_err
  for _ = 1, attempts do
    local p = (port == nil or port == 0) and nginx.free_port() or port
    local conf = nginx.render(template, { dir = dir, root = root, port = p, lua_dir = luadir,
                                          core_dir = core_dir, tls = tlsf })
    local ok, werr = write_file(dir .. "/nginx.conf", conf)
    if not ok then return nil, "cannot write " .. dir .. "/nginx.conf: " .. tostring(werr) end
    -- the server's settings (read by sandbox/lib/ugen_sandbox_server/)
    local config = format("return { seed = %q, speed = %s, dir = %q, port = %d, root = %q, owner_pid = %s, "
      .. "tls = %s }\n", seed, format("%.17g", speed), dir, p, root,
      opts.owner_pid and format("%d", opts.owner_pid) or "nil", tostring(use_tls))
    write_file(dir .. "/sandbox-config.lua", config)
    write_file(dir .. "/error.log", "")

    if nginx.launch(nginx_bin, dir) then
      local pid, werr2 = nginx.wait_up(dir, p, tlsf and tlsf.cainfo, START_TIMEOUT)
      if pid then
        local info = {
          base_url = format("%s://127.0.0.1:%d/api/v1", scheme, p), origin = format("%s://127.0.0.1:%d", scheme, p),
          tls = use_tls, cainfo = tlsf and tlsf.cainfo,
          port = p, dir = dir, pid = pid, speed = speed, seed = seed, root = root,
          api_key = tenants[1].api_key, jwt = tenants[1].jwt, tenants = tenants,
          started_at = os.date("!%Y-%m-%dT%H:%M:%SZ"),
        }
        write_file(dir .. "/sandbox-info.lua", "return " .. serialize(info) .. "\n")
        return info
      end
      last_err = werr2
    else
      last_err = "nginx failed to start"
    end
    local tail = nginx.log_tail(dir)
    last_err = last_err .. " (" .. dir .. "/error.log):\n" .. tail
    if not tail:find("Address already in use", 1, true) then break end
  end
  return nil, last_err
end

--- Stop the sandbox in dir -> true | nil, message
function _M.stop(opts)
  opts = check_opts("stop", opts)
  local dir = norm(abspath(opts.dir or locate.default_dir()))
  local pid = nginx.running(dir)
  if not pid then
    os.remove(dir .. "/sandbox-info.lua")
    return nil, "no sandbox running in " .. dir
  end
  nginx.kill(pid)
  os.remove(dir .. "/sandbox-info.lua")
  os.remove(dir .. "/nginx.pid")
  return true
end

-- Shell-safe value for an export line: as is when it holds only characters
-- that need no quoting (URLs, keys, plain paths), else single-quoted.
local function shell_word(s)
  s = tostring(s)
  if s:find("^[%w%%+,./:=@_-]+$") then return s end
  return q(s)
end

--- The lines `ugen sandbox start` prints for eval "$(...)" (info from start):
-- UGEN_BASE_URL, UGEN_API_KEY and, for a TLS sandbox, UGEN_CAINFO.
function _M.exports(info)
  local lines = { "export UGEN_BASE_URL=" .. shell_word(info.base_url) .. "\n",
                  "export UGEN_API_KEY=" .. shell_word(info.api_key) .. "\n" }
  if info.cainfo then lines[3] = "export UGEN_CAINFO=" .. shell_word(info.cainfo) .. "\n" end
  return concat(lines)
end

return _M
