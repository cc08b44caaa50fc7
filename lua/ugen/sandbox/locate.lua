-- ugen.sandbox.locate: where the sandbox manager finds what it runs: the
-- sandbox server's files (sandbox/: nginx.conf.tmpl and the server package
-- lib/ugen_sandbox_server/), the nginx binary, the sandbox's default state directory
-- and a LuaJIT build of the C core for nginx's Lua module (building it once
-- into the cache when neither a checkout nor a LuaRocks 5.1 tree has one).
-- Internal part of ugen.sandbox (which documents the environment variables).

local sys = require "ugen.sandbox.sys"

local M = {}

--- The rock's version: names its LuaRocks directory and the core's cache entry.
M.VERSION = "0.1.0"

local ipairs = ipairs
local format = string.format
local q, run, read_file, capture, exists = sys.q, sys.run, sys.read_file, sys.capture, sys.exists
local abspath, dirname, norm = sys.abspath, sys.dirname, sys.norm

--- The directory holding the ugen modules' tree: lua/ugen/sandbox/locate.lua -> lua/
function M.lua_dir()
  local src = debug.getinfo(1, "S").source
  src = src:sub(1, 1) == "@" and src:sub(2) or "./lua/ugen/sandbox/locate.lua"
  return dirname(dirname(dirname(abspath(src))))
end

-- Installed by LuaRocks, this file is TREE/share/lua/V/ugen/sandbox/locate.lua
-- and the rock's copied directories (sandbox/, csrc/) are in
-- TREE/lib/luarocks/rocks-V/lua-ugen/<version>/ -> that directory | nil
local function rock_dir()
  local tree, v = M.lua_dir():match("^(.*)/share/lua/(%d+%.%d+)$")
  if not tree then return nil end
  local base = tree .. "/lib/luarocks/rocks-" .. v .. "/lua-ugen"
  local own = base .. "/" .. M.VERSION .. "-"
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
  local repo = norm(M.lua_dir() .. "/..")
  if exists(repo .. "/sandbox/nginx.conf.tmpl") then return repo end
  return rock_dir() or repo
end

--- The sandbox server's directory (sandbox/): UGEN_SANDBOX_ROOT, this checkout's, else the rock's
function M.root()
  local env = os.getenv("UGEN_SANDBOX_ROOT")
  if env and env ~= "" then return norm(abspath(env)) end
  return source_dir() .. "/sandbox"
end

--- The default state directory: $TMPDIR/ugen-sandbox-<uid> (/tmp when TMPDIR is unset)
function M.default_dir()
  local tmp = os.getenv("TMPDIR")
  if not tmp or tmp == "" then tmp = "/tmp" end
  return tmp .. "/ugen-sandbox-" .. sys.uid()
end

-- Where to cache a LuaJIT build of the C core: $XDG_CACHE_HOME, ~/.cache, else the sandbox dir.
local function cache_dir()
  local c = os.getenv("XDG_CACHE_HOME")
  if c and c ~= "" then return c end
  local home = os.getenv("HOME")
  if home and home ~= "" then return home .. "/.cache" end
  return M.default_dir()
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

--- The C core for the sandbox's nginx, whose lua module is LuaJIT whatever
-- interpreter runs the manager -> a directory D holding D/ugen/core.so built
-- for LuaJIT (or Lua 5.1: the same ABI) | nil, message. In order:
-- UGEN_SANDBOX_CORE; a checkout's build/luajit/; the installed core when this
-- is a LuaRocks 5.1 tree; else a build from the rock's (or checkout's) csrc/,
-- made once into $XDG_CACHE_HOME/lua-ugen/ (default ~/.cache/lua-ugen/).
function M.luajit_core()
  local env = os.getenv("UGEN_SANDBOX_CORE")
  if env and env ~= "" then
    env = norm(abspath(env))
    if exists(env .. "/ugen/core.so") then return env end
    return nil, "UGEN_SANDBOX_CORE=" .. env .. " holds no ugen/core.so"
  end
  local luadir = M.lua_dir()
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
  local out = format("%s/lua-ugen/core-%s-%s/luajit", cache_dir(), M.VERSION, sum)
  if exists(out .. "/ugen/core.so") then return out end
  local ok, err = build_core(src, out)
  if not ok then return nil, err end
  return out
end

--- The nginx binary: UGEN_NGINX, nginx on PATH, else a usual place -> path | nil
function M.nginx()
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

return M
