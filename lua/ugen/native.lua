-- ugen.native: the C core (ugen.core, private) behind one Lua facade, as luasocket's `socket`
-- stands over `socket.core`. No other module of the SDK requires ugen.core.
--
-- Requiring this module loads the core once. When it cannot be loaded, the error says why, with
-- the loader's whole message (every line) and what to do:
--   * the core was built for another Lua (the loader reports `undefined symbol: lua_tonumber`,
--     `lua_rawgetp`, `lua_newuserdatauv`, ...): which file, which Lua it looks built for, the
--     builds this checkout has, and the fix (`make build`, package.cpath, reinstalling the rock
--     for this interpreter);
--   * no core on package.cpath: not built or not installed (`make build` in a clone, the rock);
--   * a library the core links (libcurl, OpenSSL's libcrypto) missing or older than the build;
--   * anything else: shown as the loader gave it.
--
-- What the SDK uses, re-exported (the C functions themselves, no wrappers):
--   native.engine{max_host_connections=, max_total_connections=}  a libcurl multi engine
--   native.hmac_sha256(key, msg) -> hex; native.hmac_key(key) -> keyed context | nil, err
--   native.consteq(a, b) -> boolean (time independent of content)
--   native.random_bytes(n) -> bytes | nil, err; native.hex(s) -> lowercase hex
--   native.now() monotonic seconds; native.time() wall-clock epoch seconds; native.sleep(s) (blocks)
--   native.json_clean(v, null, keep_null) the JSON null/integer rule (csrc/ugen_json.c)
--   native.cas(t, key, expected, new) -> boolean: an atomic compare-and-set of t[key] (raw)
--   native.output_size(path), output_prepare(path, keep), output_append(fd, data): output files
--   native.core_version (the core's _VERSION), curl_version, curl_ssl_version, openssl_version

local type, tostring, pcall, require, error, rawget, ipairs = type, tostring, pcall, require, error, rawget, ipairs
local string_match, string_gsub, string_find, string_format = string.match, string.gsub, string.find, string.format
local table_concat = table.concat
local io_open = io.open

-- The running interpreter: its name and its directory under build/ (the Makefile's names).
local function this_lua()
  if type(rawget(_G, "jit")) == "table" then return "LuaJIT", "luajit", "5.1" end
  local v = string_match(_VERSION, "%d+%.%d+") or _VERSION
  return "Lua " .. v, v, v
end

local BUILDS = { "5.1", "5.2", "5.3", "5.4", "luajit" }
local BUILD_NAME = { ["5.1"] = "Lua 5.1", ["5.2"] = "Lua 5.2", ["5.3"] = "Lua 5.3", ["5.4"] = "Lua 5.4",
                     luajit = "LuaJIT" }

-- Lua C API symbols that one ABI has and another lacks: the one a core fails to find tells
-- which Lua it was built for.
local SYMBOL_ABI = {}
for _, s in ipairs { "lua_tonumber", "lua_tointeger", "lua_objlen", "lua_setfenv", "lua_getfenv",
                     "luaL_register", "luaL_openlib", "lua_equal", "lua_lessthan", "lua_call", "lua_pcall",
                     "lua_yield", "lua_open" } do
  SYMBOL_ABI[s] = "Lua 5.1 or LuaJIT"
end
for _, s in ipairs { "lua_rawgetp", "lua_rawsetp", "lua_callk", "lua_pcallk", "lua_yieldk", "lua_rawlen",
                     "luaL_len", "lua_arith", "lua_compare", "luaL_checkversion_", "lua_tonumberx" } do
  SYMBOL_ABI[s] = "Lua 5.2, 5.3 or 5.4"
end
for _, s in ipairs { "lua_rotate", "lua_isinteger", "lua_geti", "lua_seti", "lua_stringtonumber" } do
  SYMBOL_ABI[s] = "Lua 5.3 or 5.4"
end
for _, s in ipairs { "lua_newuserdatauv", "lua_setiuservalue", "lua_getiuservalue", "lua_toclose",
                     "lua_closeslot", "lua_resetthread", "luaL_addgsub", "lua_setcstacklimit", "lua_warning" } do
  SYMBOL_ABI[s] = "Lua 5.4"
end
for _, s in ipairs { "lua_setuservalue", "lua_getuservalue" } do
  SYMBOL_ABI[s] = "Lua 5.2 or 5.3" -- functions in 5.2 and 5.3, macros over the *iuservalue ones in 5.4
end

local function exists(path)
  local f = io_open(path, "rb")
  if f then f:close() return true end
  return false
end

-- The checkout whose build/ holds cores: from the failing file's path (.../build/<lua>/ugen/core.so)
-- or from where this file lives (<root>/lua/ugen/native.lua). nil when neither is a checkout.
local function checkout_root(file)
  local root = file and string_match(file, "^(.-)/?build/[^/]+/ugen/core%.so$")
  if root then return root == "" and "." or root end
  local dbg = rawget(_G, "debug")
  local info = type(dbg) == "table" and type(dbg.getinfo) == "function" and dbg.getinfo(1, "S")
  root = string_match(type(info) == "table" and info.source or "", "^@(.-)/?lua/ugen/native%.lua$")
  if root and exists((root == "" and "." or root) .. "/Makefile") then return root == "" and "." or root end
  return nil
end

local function builds_in(root)
  local have = {}
  for _, d in ipairs(BUILDS) do
    if exists(root .. "/build/" .. d .. "/ugen/core.so") then have[#have + 1] = d end
  end
  return have
end

local function cpath_var(abi)
  if abi == "5.1" then return "LUA_CPATH" end
  return "LUA_CPATH_" .. string_gsub(abi, "%.", "_")
end

-- Advice for a core in the wrong place (wrong_lua) or none: the checkout's build for this
-- interpreter, or `make build`, and the rock for this interpreter.
local function fix_lines(root, lua_name, dir, abi, wrong_lua)
  local out = {}
  if root then
    local mine = root .. "/build/" .. dir .. "/ugen/core.so"
    if exists(mine) then
      out[#out + 1] = string_format("  - this checkout has the core for %s (%s)%s: put '%s/build/%s/?.so' "
        .. "%son package.cpath (or on %s)", lua_name, mine, wrong_lua and "" or " but it is not on package.cpath",
        root, dir, wrong_lua and "before the other build " or "", cpath_var(abi))
    else
      local have = builds_in(root)
      out[#out + 1] = string_format("  - this checkout (%s) has builds for: %s; none for %s: run `make build` "
        .. "there (it builds build/<lua>/ugen/core.so for 5.1, 5.2, 5.3, 5.4 and LuaJIT), then put "
        .. "'%s/build/%s/?.so' on package.cpath", root, #have > 0 and table_concat(have, ", ") or "no Lua",
        lua_name, root, dir)
    end
  else
    out[#out + 1] = "  - in a clone of lua-ugen: run `make build` (build/<lua>/ugen/core.so for 5.1, 5.2, 5.3, "
      .. "5.4 and LuaJIT) and put build/" .. dir .. "/?.so on package.cpath (bin/ugen and examples/_setup.lua do that)"
  end
  out[#out + 1] = string_format("  - installed as a rock: install it for this interpreter: "
    .. "`luarocks --lua-version %s install lua-ugen` (or `luarocks --lua-version %s make` in a clone)", abi, abi)
  return table_concat(out, "\n")
end

local function indent(msg)
  return "    " .. string_gsub(string_gsub(tostring(msg), "\n%s*", "\n    "), "\t", "")
end

-- The error message for a failed require("ugen.core"): the cause, the fix, then the loader's
-- message in full.
local function load_error(msg)
  msg = tostring(msg)
  local lua_name, dir, abi = this_lua()
  local file = string_match(msg, "from file '([^']+)'")
  local head, fix
  local sym = string_match(msg, "undefined symbol: ([%w_]+)")
  if sym and (string_find(sym, "^luaL?_") or string_find(sym, "^luaopen_")) then
    local built = file and (string_match(file, "build/([^/]+)/ugen/core%.so$")
                            or string_match(file, "/lua/(5%.%d)/ugen/core%.so$"))
    local guess = built and BUILD_NAME[built] or SYMBOL_ABI[sym]
    head = string_format("ugen: the C core (ugen.core%s) was built for another Lua version%s, not for this "
      .. "interpreter (%s): it needs the Lua C API function %s, which %s does not have.",
      file and (" at " .. file) or "", guess and (" (" .. guess .. ")") or "", lua_name, sym, lua_name)
    fix = fix_lines(checkout_root(file), lua_name, dir, abi, true)
  elseif string_find(msg, "module 'ugen.core' not found", 1, true) then
    head = string_format("ugen: the C core (ugen.core) is not on package.cpath: not built or not installed "
      .. "for this interpreter (%s).", lua_name)
    fix = fix_lines(checkout_root(nil), lua_name, dir, abi, false)
  elseif sym then
    head = string_format("ugen: the C core (ugen.core%s) was built against a libcurl or OpenSSL newer than "
      .. "the one this process loaded (undefined symbol %s).", file and (" at " .. file) or "", sym)
    fix = "  - rebuild it on this machine: `make build` in a clone, or reinstall the rock (`luarocks make`)"
  else
    local lib = string_match(msg, "([^%s:/]+%.so[%.%d]*): cannot open shared object file")
    if lib and lib ~= "core.so" then
      head = string_format("ugen: the C core (ugen.core%s) needs %s, which cannot be found.",
        file and (" at " .. file) or "", lib)
      fix = "  - install libcurl and OpenSSL's libcrypto (Debian: apt-get install libcurl4 libssl3), "
        .. "or rebuild the core on this machine (`make build`, `luarocks make`)"
    else
      head = "ugen: the C core (ugen.core) cannot be loaded."
      fix = "  - rebuild it for this interpreter (" .. lua_name .. "): `make build` in a clone, or reinstall "
        .. "the rock (`luarocks --lua-version " .. abi .. " make`)"
    end
  end
  return head .. "\nTo fix:\n" .. fix .. "\nThe loader said:\n" .. indent(msg)
end

local ok, core = pcall(require, "ugen.core")
if not ok then error(load_error(core), 0) end

-- OpenSSL seeds its random generator at its first use: 2-25 ms measured (loaded 2-vCPU VM). Done
-- here, when the SDK is loaded, so that it never lands in a frame of a host's loop (a game's or
-- mpv's: the first jobs:create makes an idempotency key inside client:step). A failure here is
-- reported by the call that needs the bytes.
core.random_bytes(1)

local _M = {
  _VERSION = "0.1.0",
  core_version = core._VERSION,
  curl_version = core.curl_version,
  curl_ssl_version = core.curl_ssl_version,
  openssl_version = core.openssl_version,

  engine = core.engine,

  hmac_sha256 = core.hmac_sha256,
  hmac_key = core.hmac_key,
  consteq = core.consteq,
  random_bytes = core.random_bytes,
  hex = core.hex,

  now = core.now,
  time = core.time,
  sleep = core.sleep,

  json_clean = core.json_clean,
  url_encode = core.url_encode,
  cas = core.cas,

  output_size = core.output_size,
  output_prepare = core.output_prepare,
  output_append = core.output_append,
}

return _M
