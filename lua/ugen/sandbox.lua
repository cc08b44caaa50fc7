-- ugen.sandbox: start, stop and inspect the local U-Gen sandbox server
-- (sandbox/ on real nginx + lua-nginx-module, loopback only).
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
--   sandbox.main(argv)      -> exit code (`ugen sandbox start|stop|status ...`)
--   sandbox.exports(info)   -> the export lines `ugen sandbox start` prints
--   sandbox.tls.ca(dir[, { cn = }]) -> { dir, key, cert } (a usable CA in dir, else a new one)
--   sandbox.tls.issue(ca, { name =, dns =, ip =, cn =, days = | not_before =, not_after = })
--                           -> { key, cert } (EC P-256 server certificates, e.g. expired ones)
--   sandbox.tls.server_files(dir) -> { cainfo, cert, key } (DIR/tls/, made once, reused while valid)
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

local _M = { _VERSION = "0.1.0" }

local type, tostring, tonumber, pairs, ipairs = type, tostring, tonumber, pairs, ipairs
local format, concat = string.format, table.concat

local DEFAULT_SEED = "ugen-sandbox"
local START_TIMEOUT = 10 -- seconds to wait for the server to answer

----------------------------------------------------------------------------
-- small OS helpers
----------------------------------------------------------------------------

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- os.execute -> boolean success on every Lua version
local function run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write_file(path, data)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  f:write(data)
  f:close()
  return true
end

local function capture(cmd)
  local p = io.popen(cmd)
  if not p then return nil end
  local s = p:read("*a")
  p:close()
  return s
end

local socket_ok, socket = pcall(require, "socket")
if not socket_ok then socket = nil end

local function sleep(s)
  if socket then socket.sleep(s) else run("sleep " .. format("%.3f", s)) end
end

local function monotime()
  if socket then return socket.gettime() end
  return os.time()
end

local uid_cache
local function uid()
  if not uid_cache then uid_cache = (capture("id -u 2>/dev/null") or ""):match("%d+") or "0" end
  return uid_cache
end

local function alive(pid)
  if not pid then return false end
  local stat = read_file("/proc/" .. pid .. "/stat")
  if stat then return not stat:match("^%d+ %b() Z") end -- zombies are gone
  return run("kill -0 " .. pid .. " 2>/dev/null")
end

local function is_nginx(pid)
  local cmd = read_file("/proc/" .. pid .. "/cmdline")
  if cmd == nil then return alive(pid) end
  return cmd:find("nginx", 1, true) ~= nil
end

----------------------------------------------------------------------------
-- locations
----------------------------------------------------------------------------

local function abspath(p)
  if p:sub(1, 1) == "/" then return p end
  local cwd = (capture("pwd") or ""):gsub("%s+$", "")
  p = p:gsub("^%./", "")
  return cwd .. "/" .. p
end

local function dirname(p) return (p:match("^(.*)/[^/]*$")) or "." end

-- lua/ugen/sandbox.lua -> lua/
local function lua_dir()
  local src = debug.getinfo(1, "S").source
  src = src:sub(1, 1) == "@" and src:sub(2) or "./lua/ugen/sandbox.lua"
  return dirname(dirname(abspath(src)))
end

local function norm(p)
  local out = {}
  for part in p:gmatch("[^/]+") do
    if part == ".." and #out > 0 and out[#out] ~= ".." then out[#out] = nil
    elseif part ~= "." then out[#out + 1] = part end
  end
  return "/" .. concat(out, "/")
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- Installed by LuaRocks, this file is TREE/share/lua/V/ugen/sandbox.lua and the
-- rock's copied directories (sandbox/, csrc/) are in
-- TREE/lib/luarocks/rocks-V/lua-ugen/<version>/ -> that directory | nil
local function rock_dir()
  local tree, v = lua_dir():match("^(.*)/share/lua/(%d+%.%d+)$")
  if not tree then return nil end
  local base = tree .. "/lib/luarocks/rocks-" .. v .. "/lua-ugen"
  local own = base .. "/" .. _M._VERSION .. "-"
  local found
  for d in (capture("ls -d " .. q(base) .. "/*/ 2>/dev/null") or ""):gmatch("[^\n]+") do
    d = d:gsub("/$", "")
    if exists(d .. "/sandbox/nginx.conf.tmpl") then
      if d:sub(1, #own) == own or not found then found = d end
    end
  end
  return found
end

-- The directory holding sandbox/ and csrc/: this checkout, else the installed rock.
local function source_dir()
  local repo = norm(lua_dir() .. "/..")
  if exists(repo .. "/sandbox/nginx.conf.tmpl") then return repo end
  return rock_dir() or repo
end

function _M.root()
  local env = os.getenv("UGEN_SANDBOX_ROOT")
  if env and env ~= "" then return norm(abspath(env)) end
  return source_dir() .. "/sandbox"
end

function _M.default_dir()
  local tmp = os.getenv("TMPDIR")
  if not tmp or tmp == "" then tmp = "/tmp" end
  return tmp .. "/ugen-sandbox-" .. uid()
end

-- Where to cache a LuaJIT build of the C core: $XDG_CACHE_HOME, ~/.cache, else the sandbox dir.
local function cache_dir()
  local c = os.getenv("XDG_CACHE_HOME")
  if c and c ~= "" then return c end
  local home = os.getenv("HOME")
  if home and home ~= "" then return home .. "/.cache" end
  return _M.default_dir()
end

local LUAJIT_INCDIRS = { "/usr/include/luajit-2.1", "/usr/local/include/luajit-2.1",
                         "/usr/local/openresty/luajit/include/luajit-2.1", "/usr/include/lua5.1",
                         "/usr/local/include/lua5.1" }

-- Compiles src/*.c for LuaJIT into out/ugen/core.so -> true | nil, message
local function build_core(src, out)
  local inc = os.getenv("UGEN_LUAJIT_INCDIR")
  if inc and inc ~= "" and not exists(inc .. "/lua.h") then
    return nil, "UGEN_LUAJIT_INCDIR=" .. inc .. " holds no lua.h"
  end
  if not inc or inc == "" then
    inc = nil
    for _, d in ipairs(LUAJIT_INCDIRS) do
      if exists(d .. "/lua.h") then inc = d break end
    end
    local pc = not inc and (capture("pkg-config --variable=includedir luajit 2>/dev/null") or ""):match("%S+")
    if pc and exists(pc .. "/luajit-2.1/lua.h") then inc = pc .. "/luajit-2.1" end
  end
  if not inc then
    return nil, "the sandbox's nginx runs LuaJIT and needs ugen.core built for it; building it needs "
      .. "LuaJIT's headers (Debian: libluajit2-5.1-dev or libluajit-5.1-dev) "
      .. "or UGEN_LUAJIT_INCDIR=<dir with lua.h>"
  end
  local tmp = format("%s/ugen/core.so.%d", out, os.time())
  local log = out .. "/build.log"
  local cc = os.getenv("CC")
  if not cc or cc == "" then cc = "cc" end
  local cmd = format("mkdir -p %s && %s -std=c99 -O2 -fPIC -shared -D_POSIX_C_SOURCE=200809L -I%s "
    .. "$(pkg-config --cflags libcurl libcrypto 2>/dev/null) %s/*.c -o %s "
    .. "$(pkg-config --libs libcurl libcrypto 2>/dev/null || echo -lcurl -lcrypto) >%s 2>&1 && mv -f %s %s",
    q(out .. "/ugen"), cc, q(inc), q(src), q(tmp), q(log), q(tmp), q(out .. "/ugen/core.so"))
  if run(cmd) then return true end
  os.remove(tmp)
  local msg = (read_file(log) or ""):gsub("%s+$", "")
  if #msg > 600 then msg = "..." .. msg:sub(-600) end
  return nil, "cannot build ugen.core for the sandbox's LuaJIT from " .. src .. " (" .. log .. "): " .. msg
end

-- The C core for the sandbox's nginx, whose lua module is LuaJIT whatever
-- interpreter runs this file -> a directory D holding D/ugen/core.so built for
-- LuaJIT (or Lua 5.1: the same ABI) | nil, message. In order:
-- UGEN_SANDBOX_CORE; a checkout's build/luajit/; the installed core when this
-- is a LuaRocks 5.1 tree; else a build from the rock's (or checkout's) csrc/,
-- made once into $XDG_CACHE_HOME/lua-ugen/ (default ~/.cache/lua-ugen/).
local function luajit_core()
  local env = os.getenv("UGEN_SANDBOX_CORE")
  if env and env ~= "" then
    env = norm(abspath(env))
    if exists(env .. "/ugen/core.so") then return env end
    return nil, "UGEN_SANDBOX_CORE=" .. env .. " holds no ugen/core.so"
  end
  local luadir = lua_dir()
  local repo = norm(luadir .. "/..")
  if exists(repo .. "/build/luajit/ugen/core.so") then return repo .. "/build/luajit" end
  local tree = luadir:match("^(.*)/share/lua/5%.1$")
  if tree and exists(tree .. "/lib/lua/5.1/ugen/core.so") then return tree .. "/lib/lua/5.1" end
  local src = source_dir() .. "/csrc"
  local sum = (capture(format("cat %s/*.c %s/*.h 2>/dev/null | cksum", q(src), q(src))) or ""):match("^%d+")
  if not exists(src .. "/ugen_core.c") or not sum then
    return nil, "no ugen.core built for LuaJIT (the sandbox's nginx runs LuaJIT) and no C sources in " .. src
      .. " to build one (in a checkout: make build; or set UGEN_SANDBOX_CORE)"
  end
  local out = format("%s/lua-ugen/core-%s-%s/luajit", cache_dir(), _M._VERSION, sum)
  if exists(out .. "/ugen/core.so") then return out end
  local ok, err = build_core(src, out)
  if not ok then return nil, err end
  return out
end

local function find_nginx()
  local env = os.getenv("UGEN_NGINX")
  if env and env ~= "" then return env end
  local p = capture("command -v nginx 2>/dev/null")
  p = p and p:match("^%s*(%S+)")
  if p then return p end
  for _, c in ipairs({ "/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/openresty/nginx/sbin/nginx" }) do
    if read_file(c) then return c end
  end
  return nil
end

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
-- seed data (shared with the server: sandbox/lib/ugen_sandbox/seed.lua)
----------------------------------------------------------------------------

local function load_seed_module(root)
  local path = root .. "/lib/ugen_sandbox/seed.lua"
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
-- TLS: a private CA and certificates it signs, made with the openssl CLI
----------------------------------------------------------------------------
-- A CA lives in one directory: ca.key, ca.crt (EC P-256, 10 years,
-- CA:TRUE pathlen 0), ca.cnf (its `openssl ca` setup), index.txt, serial and
-- issued/ (openssl ca's database). Certificates it issues go next to it as
-- NAME.key / NAME.crt: EC P-256, CA:FALSE, digitalSignature, EKU serverAuth,
-- the SAN given (DNS and IP entries), 397 days unless dates are given.

local tls = {}
_M.tls = tls

tls.CA_DAYS = 3650
tls.CERT_DAYS = 397
tls.MIN_LEFT = 86400 -- a CA or certificate expiring within a day is not reused

local function openssl_bin()
  local env = os.getenv("UGEN_OPENSSL")
  if env and env ~= "" then return env end
  return "openssl"
end

-- Runs `openssl ARGS` in dir with umask 077 -> true | nil, message (its output's tail)
local function openssl(dir, args)
  local log = dir .. "/openssl.log"
  if run(format("cd %s && umask 077 && %s %s >%s 2>&1", q(dir), q(openssl_bin()), args, q(log))) then
    os.remove(log)
    return true
  end
  local out = (read_file(log) or ""):gsub("%s+$", "")
  if #out > 600 then out = "..." .. out:sub(-600) end
  return nil, "openssl " .. args:match("^%S+") .. " failed in " .. dir .. ": " .. out
end

-- A shell test: the same public key in the key file and the certificate?
local function key_matches_sh(key, cert)
  local bin = q(openssl_bin())
  return format('a=$(%s pkey -in %s -pubout 2>/dev/null) && b=$(%s x509 -in %s -noout -pubkey 2>/dev/null) '
                .. '&& [ -n "$a" ] && [ "$a" = "$b" ]', bin, q(key), bin, q(cert))
end

local function check_name(fname, field, s, pattern, desc)
  if type(s) ~= "string" or not s:find(pattern) then
    error(format("bad argument to 'tls.%s' (%s: %s expected, got %s)", fname, field, desc, tostring(s)), 3)
  end
end

local CA_CNF = [[
# ugen.sandbox: the signing setup of this private CA (openssl ca, run in this directory)
[ ca ]
default_ca = sandbox_ca
[ sandbox_ca ]
database = index.txt
new_certs_dir = issued
serial = serial
default_md = sha256
policy = any_cn
unique_subject = no
copy_extensions = none
email_in_dn = no
[ any_cn ]
commonName = supplied
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
[ ca_ext ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
]]

local NEWKEY = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"

local function ca_table(dir)
  return { dir = dir, key = dir .. "/ca.key", cert = dir .. "/ca.crt" }
end

--- A usable CA already in dir (files present, key matching, not expiring) -> ca | nil
function tls.find_ca(dir)
  local ca = ca_table(dir)
  for _, f in ipairs({ "ca.key", "ca.crt", "ca.cnf", "index.txt", "serial" }) do
    if not read_file(dir .. "/" .. f) then return nil end
  end
  if not run(format("cd %s && %s x509 -in ca.crt -noout -checkend %d >/dev/null 2>&1 && %s", q(dir),
                    q(openssl_bin()), tls.MIN_LEFT, key_matches_sh("ca.key", "ca.crt"))) then
    return nil
  end
  return ca
end

--- A private CA in dir: the one already there when usable, else a new one.
-- opts.cn: its common name (default "U-Gen sandbox CA").
-- -> ca = { dir =, key =, cert = } | nil, message
function tls.ca(dir, opts)
  if type(dir) ~= "string" then error("bad argument #1 to 'tls.ca' (string expected, got " .. type(dir) .. ")", 2) end
  opts = opts or {}
  local cn = opts.cn or "U-Gen sandbox CA"
  check_name("ca", "cn", cn, "^[%w][%w .-]*$", "letters, digits, ' ', '.' or '-'")
  dir = norm(abspath(dir))
  local found = tls.find_ca(dir)
  if found then return found end
  if not run("mkdir -p " .. q(dir .. "/issued") .. " && chmod 700 " .. q(dir)) then
    return nil, "cannot create " .. dir
  end
  for _, f in ipairs({ "ca.key", "ca.crt", "index.txt", "index.txt.attr", "index.txt.old", "serial", "serial.old" }) do
    os.remove(dir .. "/" .. f)
  end
  local ok, err = write_file(dir .. "/ca.cnf", CA_CNF)
  if not ok then return nil, "cannot write " .. dir .. "/ca.cnf: " .. tostring(err) end
  write_file(dir .. "/index.txt", "")
  ok, err = openssl(dir, "rand -hex -out serial 16")
  if not ok then return nil, err end
  ok, err = openssl(dir, format("req -x509 -new %s -keyout ca.key -out ca.crt -days %d -sha256 -subj %s "
    .. "-config ca.cnf -extensions ca_ext", NEWKEY, tls.CA_DAYS, q("/CN=" .. cn)))
  if not ok then return nil, err end
  run("chmod 644 " .. q(dir .. "/ca.crt")) -- the certificate is public; the key stays 0600
  return ca_table(dir)
end

--- Issue a certificate signed by ca (from tls.ca) -> { key =, cert = } | nil, message
-- opts: name (file base name in ca.dir, default "server"), dns = { names }, ip = { addresses },
-- cn (default: the first DNS name or IP), days (default 397) or not_before and not_after
-- ("YYYYMMDDHHMMSSZ", UTC; may both lie in the past: an expired certificate).
function tls.issue(ca, opts)
  opts = opts or {}
  if type(ca) ~= "table" or type(ca.dir) ~= "string" then
    error("bad argument #1 to 'tls.issue' (a CA from tls.ca expected)", 2)
  end
  local name = opts.name or "server"
  check_name("issue", "name", name, "^[%w_-]+$", "letters, digits, '_' or '-'")
  local san = {}
  for _, d in ipairs(opts.dns or {}) do
    if type(d) ~= "string" or not d:find("^[%w*][%w.-]*$") then
      error("bad argument to 'tls.issue' (dns: host names expected, got " .. tostring(d) .. ")", 2)
    end
    san[#san + 1] = "DNS:" .. d
  end
  for _, a in ipairs(opts.ip or {}) do
    if type(a) ~= "string" or not a:find("^[%x:.]+$") then
      error("bad argument to 'tls.issue' (ip: addresses expected, got " .. tostring(a) .. ")", 2)
    end
    san[#san + 1] = "IP:" .. a
  end
  if #san == 0 then error("bad argument to 'tls.issue' (dns or ip: at least one name expected)", 2) end
  local cn = opts.cn or (opts.dns and opts.dns[1]) or opts.ip[1]
  check_name("issue", "cn", cn, "^[%w*][%w .:*-]*$", "a plain name")
  local dates
  if opts.not_before or opts.not_after then
    for _, d in ipairs({ opts.not_before, opts.not_after }) do
      if type(d) ~= "string" or not d:find("^%d%d%d%d%d%d%d%d%d%d%d%d%d%dZ$") then
        error("bad argument to 'tls.issue' (not_before and not_after: \"YYYYMMDDHHMMSSZ\" expected, got "
              .. tostring(d) .. ")", 2)
      end
    end
    dates = "-startdate " .. opts.not_before .. " -enddate " .. opts.not_after
  else
    local days = opts.days or tls.CERT_DAYS
    if type(days) ~= "number" or days < 1 or days % 1 ~= 0 then
      error("bad argument to 'tls.issue' (days: positive integer expected, got " .. tostring(days) .. ")", 2)
    end
    dates = format("-days %d", days)
  end
  local dir = ca.dir
  local ext = "[ ext ]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
    .. "extendedKeyUsage = serverAuth\nsubjectAltName = " .. concat(san, ", ")
    .. "\nauthorityKeyIdentifier = keyid\nsubjectKeyIdentifier = hash\n"
  local ok, err = write_file(dir .. "/" .. name .. ".ext", ext)
  if not ok then return nil, "cannot write " .. dir .. "/" .. name .. ".ext: " .. tostring(err) end
  os.remove(dir .. "/" .. name .. ".crt")
  ok, err = openssl(dir, format("req -new %s -keyout %s.key -out %s.csr -subj %s -config ca.cnf",
                                NEWKEY, name, name, q("/CN=" .. cn)))
  if ok then
    ok, err = openssl(dir, format("ca -batch -notext -config ca.cnf -cert ca.crt -keyfile ca.key -in %s.csr "
                                  .. "-out %s.crt %s -extfile %s.ext -extensions ext", name, name, dates, name))
  end
  os.remove(dir .. "/" .. name .. ".csr")
  if not ok then return nil, err end
  run("chmod 644 " .. q(dir .. "/" .. name .. ".crt"))
  return { key = dir .. "/" .. name .. ".key", cert = dir .. "/" .. name .. ".crt" }
end

-- The sandbox's server certificate in dir (with ca.crt): reused while it
-- chains to that CA, is a server certificate for 127.0.0.1 and localhost,
-- matches its key and neither it nor the CA expires within MIN_LEFT.
local function server_cert_ok(dir)
  for _, f in ipairs({ "ca.crt", "server.crt", "server.key" }) do
    if not read_file(dir .. "/" .. f) then return false end
  end
  return run(format("cd %s && %s verify -CAfile ca.crt -attime %d -purpose sslserver -verify_hostname localhost "
                    .. "-verify_ip 127.0.0.1 server.crt >/dev/null 2>&1 && %s", q(dir), q(openssl_bin()),
                    os.time() + tls.MIN_LEFT, key_matches_sh("server.key", "server.crt")))
end

--- The sandbox's TLS files under dir/tls, made once and then reused while valid:
-- -> { cainfo = CA cert path, cert = server cert path, key = server key path } | nil, message
function tls.server_files(dir)
  if type(dir) ~= "string" then
    error("bad argument #1 to 'tls.server_files' (string expected, got " .. type(dir) .. ")", 2)
  end
  local tdir = norm(abspath(dir)) .. "/tls"
  local files = { cainfo = tdir .. "/ca.crt", cert = tdir .. "/server.crt", key = tdir .. "/server.key" }
  if server_cert_ok(tdir) then return files end
  local ca, err = tls.ca(tdir)
  if not ca then return nil, err end
  local c
  c, err = tls.issue(ca, { name = "server", dns = { "localhost" }, ip = { "127.0.0.1" }, cn = "127.0.0.1" })
  if not c then return nil, err end
  return files
end

----------------------------------------------------------------------------
-- readiness and ports
----------------------------------------------------------------------------

local function free_port()
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

local function log_tail(dir, n)
  local s = read_file(dir .. "/error.log") or ""
  local err = read_file(dir .. "/start.err") or ""
  s = s .. err
  local lines = {}
  for line in s:gmatch("[^\n]+") do lines[#lines + 1] = line end
  local first = math.max(1, #lines - (n or 8) + 1)
  return concat(lines, "\n", first, #lines)
end

----------------------------------------------------------------------------
-- public API
----------------------------------------------------------------------------

local function check_opts(fname, opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(format("bad argument #1 to '%s' (table expected, got %s)", fname, type(opts)), 3)
  end
  if opts.dir ~= nil and type(opts.dir) ~= "string" then
    error(format("bad argument #1 to '%s' (dir: string expected, got %s)", fname, type(opts.dir)), 3)
  end
  return opts
end

local function read_pid(dir)
  local s = read_file(dir .. "/nginx.pid")
  return s and tonumber(s:match("%d+"))
end

--- The running sandbox in dir -> info | nil, message
function _M.status(opts)
  opts = check_opts("status", opts)
  local dir = opts.dir or _M.default_dir()
  local pid = read_pid(dir)
  if not pid or not alive(pid) or not is_nginx(pid) then
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
    error("bad argument #1 to 'start' (port: integer 0-65535 expected, got " .. tostring(port) .. ")", 2)
  end
  if speed ~= nil and (type(speed) ~= "number" or speed ~= speed or speed <= 0 or speed == math.huge) then
    error("bad argument #1 to 'start' (speed: positive number expected, got " .. tostring(speed) .. ")", 2)
  end
  if seed ~= nil and type(seed) ~= "string" and type(seed) ~= "number" then
    error("bad argument #1 to 'start' (seed: string expected, got " .. type(seed) .. ")", 2)
  end
  if opts.owner_pid ~= nil and type(opts.owner_pid) ~= "number" then
    error("bad argument #1 to 'start' (owner_pid: number expected, got " .. type(opts.owner_pid) .. ")", 2)
  end
  if opts.tls ~= nil and type(opts.tls) ~= "boolean" then
    error("bad argument #1 to 'start' (tls: boolean expected, got " .. type(opts.tls) .. ")", 2)
  end
  local use_tls = opts.tls == true
  speed = speed or 1
  seed = tostring(seed or DEFAULT_SEED)
  local dir = norm(abspath(opts.dir or _M.default_dir()))

  local running = _M.status{ dir = dir }
  if running then
    return nil, format("a sandbox is already running in %s (pid %d, %s); stop it first with "
                       .. "`ugen sandbox stop --dir %s`", dir, running.pid, running.base_url, dir)
  end
  local old_pid = read_pid(dir)
  if old_pid and alive(old_pid) then
    return nil, format("%s/nginx.pid names a live process (%d) that is not a sandbox nginx", dir, old_pid)
  end

  local root = _M.root()
  local template = read_file(root .. "/nginx.conf.tmpl")
  if not template then return nil, "sandbox files not found in " .. root .. " (set UGEN_SANDBOX_ROOT)" end
  local nginx = find_nginx()
  if not nginx then return nil, "nginx not found (install nginx and libnginx-mod-http-lua, or set UGEN_NGINX)" end

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

  local core_dir, core_err = luajit_core()
  if not core_dir then return nil, core_err end
  local luadir = lua_dir()
  local modules_dir = os.getenv("UGEN_NGINX_MODULES")
  if not modules_dir or modules_dir == "" then modules_dir = "/usr/lib/nginx/modules" end
  local load = {}
  for _, m in ipairs({ "ndk_http_module.so", "ngx_http_lua_module.so" }) do
    if read_file(modules_dir .. "/" .. m) then load[#load + 1] = 'load_module "' .. modules_dir .. "/" .. m .. '";' end
  end

  local attempts = (port == nil or port == 0) and 5 or 1
  local last_err
  for _ = 1, attempts do
    local p = (port == nil or port == 0) and free_port() or port
    local vars = {
      LOAD_MODULES = concat(load, "\n"), USER = uid() == "0" and "user root;" or "",
      DIR = dir, ROOT = root, PORT = tostring(p), LOG_LEVEL = "warn",
      LISTEN_OPTS = use_tls and " ssl http2" or "",
      TLS_SERVER = use_tls and format('ssl_certificate "%s";\n    ssl_certificate_key "%s";\n'
        .. '    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:ugen_sandbox_tls:1m;\n'
        .. '    ssl_session_timeout 1h;', tlsf.cert, tlsf.key) or "",
      TLS_HTTP = use_tls and format('lua_ssl_trusted_certificate "%s";\n  lua_ssl_verify_depth 2;\n'
        .. '  lua_ssl_protocols TLSv1.2 TLSv1.3;', tlsf.cainfo) or "",
      LUA_PATH = concat({ root .. "/lib/?.lua", luadir .. "/?.lua", luadir .. "/?/init.lua" }, ";"),
      LUA_CPATH = core_dir .. "/?.so",
    }
    local conf = template:gsub("%${([%u_]+)}", function(k) return vars[k] end)
    local ok, werr = write_file(dir .. "/nginx.conf", conf)
    if not ok then return nil, "cannot write " .. dir .. "/nginx.conf: " .. tostring(werr) end
    local config = format("return { seed = %q, speed = %s, dir = %q, port = %d, root = %q, owner_pid = %s, "
      .. "tls = %s }\n", seed, format("%.17g", speed), dir, p, root,
      opts.owner_pid and format("%d", opts.owner_pid) or "nil", tostring(use_tls))
    write_file(dir .. "/sandbox-config.lua", config)
    write_file(dir .. "/error.log", "")
    os.remove(dir .. "/start.err")

    -- The caller's LUA_PATH/LUA_CPATH may name another Lua's modules (a 5.4
    -- cjson): nginx's LuaJIT gets the paths above, then its own defaults.
    local cmd = format("unset LUA_PATH LUA_CPATH; %s -p %s -c %s -e %s 2>%s", q(nginx), q(dir .. "/"),
                       q(dir .. "/nginx.conf"), q(dir .. "/error.log"), q(dir .. "/start.err"))
    if run(cmd) then
      local deadline = monotime() + START_TIMEOUT
      local up, fatal
      repeat
        up, fatal = probe(p, tlsf and tlsf.cainfo)
        if up or fatal then break end
        local pid = read_pid(dir)
        if pid and not alive(pid) then break end
        sleep(0.05)
      until monotime() > deadline
      local pid = read_pid(dir)
      if up and pid then
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
      last_err = fatal or ("the sandbox did not come up within " .. START_TIMEOUT .. " s")
      if pid and alive(pid) then run("kill -TERM " .. pid .. " 2>/dev/null") end
    else
      last_err = "nginx failed to start"
    end
    local tail = log_tail(dir)
    last_err = last_err .. " (" .. dir .. "/error.log):\n" .. tail
    if not tail:find("Address already in use", 1, true) then break end
  end
  return nil, last_err
end

--- Stop the sandbox in dir -> true | nil, message
function _M.stop(opts)
  opts = check_opts("stop", opts)
  local dir = norm(abspath(opts.dir or _M.default_dir()))
  local pid = read_pid(dir)
  if not pid or not alive(pid) or not is_nginx(pid) then
    os.remove(dir .. "/sandbox-info.lua")
    return nil, "no sandbox running in " .. dir
  end
  -- Worker pids (children of the master), to be sure none outlives it.
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
  os.remove(dir .. "/sandbox-info.lua")
  os.remove(dir .. "/nginx.pid")
  return true
end

----------------------------------------------------------------------------
-- CLI: ugen sandbox start|stop|status
----------------------------------------------------------------------------

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

local USAGE = [[
usage: ugen sandbox start [--port N] [--dir DIR] [--speed X] [--seed S] [--tls]
       ugen sandbox stop [--dir DIR]
       ugen sandbox status [--dir DIR]

start   starts the local U-Gen sandbox (nginx, loopback only) and prints
        export UGEN_BASE_URL=... and export UGEN_API_KEY=... for
        eval "$(ugen sandbox start)". --port 0 (default) picks a free port;
        --speed scales the job clock (default 1: a job takes about 20 s);
        --seed makes the seeded accounts' keys (default "ugen-sandbox").
        --tls serves HTTPS + HTTP/2 with a private CA made in DIR/tls/
        and prints export UGEN_CAINFO=<its certificate> as well.
stop    stops it.   status  says whether it runs (exit 0) or not (exit 1).
DIR defaults to ]] .. "$TMPDIR/ugen-sandbox-<uid> (/tmp when TMPDIR is unset).\n"

local function parse(argv, first, allowed)
  local o = {}
  local i = first
  while i <= #argv do
    local a = argv[i]
    local name, val = a:match("^%-%-([%w-]+)=(.*)$")
    if name and allowed[name] == "boolean" then return nil, "--" .. name .. " takes no value" end
    if not name then
      name = a:match("^%-%-([%w-]+)$")
      if name and allowed[name] == "boolean" then
        val = true
      elseif name and name ~= "help" then
        i = i + 1
        val = argv[i]
        if val == nil then return nil, "--" .. name .. " needs a value" end
      end
    end
    if a == "-h" or name == "help" then return nil, "help" end
    if not name or not allowed[name] then return nil, "unknown argument '" .. a .. "'" end
    if allowed[name] == "number" then
      local n = tonumber(val)
      if not n then return nil, "--" .. name .. " expects a number, got '" .. val .. "'" end
      val = n
    end
    o[name] = val
    i = i + 1
  end
  return o
end

--- argv: the arguments after "sandbox" (argv[1] = start|stop|status).
-- Prints results; returns the process exit code (0 ok, 1 failure, 2 usage).
function _M.main(argv, out, errout)
  out, errout = out or io.stdout, errout or io.stderr
  local cmd = argv[1]
  local allowed = cmd == "start"
    and { port = "number", dir = "string", speed = "number", seed = "string", tls = "boolean" }
    or { dir = "string" }
  if cmd ~= "start" and cmd ~= "stop" and cmd ~= "status" then
    if cmd == nil or cmd == "help" or cmd == "--help" or cmd == "-h" then
      out:write(USAGE)
      return cmd == nil and 2 or 0
    end
    errout:write("ugen sandbox: unknown command '" .. tostring(cmd) .. "'\n", USAGE)
    return 2
  end
  local o, perr = parse(argv, 2, allowed)
  if not o then
    if perr == "help" then out:write(USAGE); return 0 end
    errout:write("ugen sandbox " .. cmd .. ": " .. perr .. "\n")
    return 2
  end
  if cmd == "start" then
    if o.port and (o.port < 0 or o.port > 65535 or o.port % 1 ~= 0) then
      errout:write("ugen sandbox start: --port must be an integer 0-65535\n"); return 2
    end
    if o.speed and (o.speed ~= o.speed or o.speed <= 0 or o.speed == math.huge) then
      errout:write("ugen sandbox start: --speed must be a positive number\n"); return 2
    end
    local info, err = _M.start{ port = o.port, dir = o.dir, speed = o.speed, seed = o.seed, tls = o.tls }
    if not info then
      errout:write("ugen sandbox start: " .. tostring(err) .. "\n")
      return 1
    end
    out:write(_M.exports(info))
    return 0
  elseif cmd == "stop" then
    local ok, err = _M.stop{ dir = o.dir }
    if not ok then errout:write("ugen sandbox stop: " .. tostring(err) .. "\n"); return 1 end
    errout:write("ugen sandbox: stopped\n")
    return 0
  else
    local info, err = _M.status{ dir = o.dir }
    if not info then out:write("not running: " .. tostring(err) .. "\n"); return 1 end
    out:write(format("running: pid %d, %s, speed %s, dir %s\n", info.pid, info.base_url,
                     tostring(info.speed), info.dir))
    for _, t in ipairs(info.tenants or {}) do
      out:write(format("  tenant %-10s credits %-7d concurrent %-3d daily %-5d  %s\n", t.slug, t.credits,
                       t.concurrent_limit, t.daily_limit, t.doc or ""))
    end
    return 0
  end
end

return _M
