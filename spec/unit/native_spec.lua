-- ugen.native: the one module that loads the C core. When the core cannot be loaded, the error
-- shows the loader's whole message (not only its first line) and the advice that fits the cause
-- (issue 16 item 5). Each case runs in a child interpreter (lua5.4, luajit) from an empty
-- directory, with this tree's lua/ on LUA_PATH and a chosen package.cpath.
local util = require "support.util"
local native = require "ugen.native"

local q, capture, run = util.q, util.capture, util.run
local ROOT = (capture("pwd"):gsub("%s+$", ""))

local tmp
setup(function()
  tmp = os.tmpname(); os.remove(tmp)
  assert(run("mkdir -p " .. q(tmp .. "/empty")))
end)
teardown(function() if tmp then run("rm -rf " .. q(tmp)) end end)

-- Runs `code` in `interp` from an empty directory: LUA_PATH = <lua_root>/lua, package.cpath =
-- `cpath` followed by the interpreter's system directories (lua-cjson). Returns its output.
local function child(interp, cpath, code, lua_root)
  lua_root = lua_root or ROOT
  local prelude = "package.cpath = " .. string.format("%q", cpath)
    .. " .. package.cpath:gsub('%./%?%.so;?', '') "
  return capture("cd " .. q(tmp .. "/empty") .. " && env -u LUA_CPATH -u LUA_CPATH_5_4 -u LUA_PATH_5_4 "
    .. "-u LUA_CPATH_5_2 -u LUA_PATH_5_2 LUA_PATH="
    .. q(lua_root .. "/lua/?.lua;" .. lua_root .. "/lua/?/init.lua;;") .. " " .. interp .. " -e "
    .. q(prelude .. code) .. " 2>&1")
end

local LOAD = "local ok, e = pcall(require, 'ugen.native') io.write(ok and 'LOADED' or tostring(e))"

describe("ugen.native", function()
  it("re-exports the core's functions and version fields", function()
    for _, k in ipairs { "engine", "hmac_sha256", "hmac_key", "consteq", "random_bytes", "hex", "now", "time",
                         "sleep", "json_clean", "output_size", "output_prepare", "output_append" } do
      assert.is_function(native[k], k)
    end
    for _, k in ipairs { "core_version", "curl_version", "curl_ssl_version", "openssl_version" } do
      assert.is_string(native[k], k)
    end
    assert.equal("8f4e", native.hex("\143\78"))
    assert.equal(native.hmac_sha256("k", "m"), native.hmac_key("k"):hex("m"))
  end)

  it("loads the core built for the child's own Lua", function()
    assert.equal("LOADED", child("lua5.4", ROOT .. "/build/5.4/?.so;", LOAD))
    assert.equal("LOADED", child("luajit", ROOT .. "/build/luajit/?.so;", LOAD))
  end)

  it("a core built for Lua 5.1 under lua5.4: names the missing symbol, says it is built for another Lua and "
     .. "points at the checkout's 5.4 build", function()
    local core51 = ROOT .. "/build/5.1/ugen/core.so"
    local out = child("lua5.4", ROOT .. "/build/5.1/?.so;", LOAD)
    assert.matches("built for another Lua version (Lua 5.1)", out, 1, true)
    assert.matches("not for this interpreter (Lua 5.4)", out, 1, true)
    assert.matches("undefined symbol: lua_tonumber", out, 1, true)
    -- the loader's second line (the cause), not only its first
    assert.matches(core51 .. ": undefined symbol: lua_tonumber", out, 1, true)
    assert.matches("error loading module 'ugen.core' from file '" .. core51 .. "'", out, 1, true)
    assert.matches("put '" .. ROOT .. "/build/5.4/?.so' before the other build on package.cpath", out, 1, true)
    assert.matches("luarocks --lua-version 5.4", out, 1, true)
  end)

  it("a core built for Lua 5.4 under LuaJIT: the same, with the symbol LuaJIT lacks", function()
    local out = child("luajit", ROOT .. "/build/5.4/?.so;", LOAD)
    assert.matches("built for another Lua version (Lua 5.4)", out, 1, true)
    assert.matches("not for this interpreter (LuaJIT)", out, 1, true)
    assert.matches(ROOT .. "/build/5.4/ugen/core.so: undefined symbol: lua_", out, 1, true)
    assert.matches("put '" .. ROOT .. "/build/luajit/?.so' before the other build", out, 1, true)
    assert.matches("luarocks --lua-version 5.1", out, 1, true)
  end)

  it("Lua 5.2 (mpv's Lua): the checkout's 5.2 core loads; the 5.3 core there names lua_rotate and points at "
     .. "the 5.2 build (issue 14 item 5)", function()
    assert.equal("LOADED", child("lua5.2", ROOT .. "/build/5.2/?.so;", LOAD))
    local out = child("lua5.2", ROOT .. "/build/5.3/?.so;", LOAD)
    assert.matches("built for another Lua version (Lua 5.3)", out, 1, true)
    assert.matches("not for this interpreter (Lua 5.2)", out, 1, true)
    assert.matches(ROOT .. "/build/5.3/ugen/core.so: undefined symbol: lua_rotate", out, 1, true)
    assert.matches("put '" .. ROOT .. "/build/5.2/?.so' before the other build on package.cpath (or on "
      .. "LUA_CPATH_5_2)", out, 1, true)
    assert.matches("luarocks --lua-version 5.2", out, 1, true)
  end)

  it("`require 'ugen'` gives that message too, when it is made (not at the first request)", function()
    local code = "local ok, e = pcall(require, 'ugen') io.write(ok and 'LOADED' or tostring(e))"
    for _, c in ipairs { { "lua5.4", "5.1", "lua_tonumber" }, { "luajit", "5.4", "lua_" } } do
      local out = child(c[1], ROOT .. "/build/" .. c[2] .. "/?.so;", code)
      assert.matches("built for another Lua version", out, 1, true)
      assert.matches("/build/" .. c[2] .. "/ugen/core.so: undefined symbol: " .. c[3], out, 1, true)
    end
  end)

  it("no core on package.cpath: not built or not installed; names this checkout's build for the interpreter",
     function()
    for _, c in ipairs { { "lua5.4", "5.4", "LUA_CPATH_5_4" }, { "luajit", "luajit", "LUA_CPATH" } } do
      local out = child(c[1], "", LOAD)
      assert.matches("is not on package.cpath: not built or not installed", out, 1, true)
      assert.matches("this checkout has the core for", out, 1, true)
      assert.matches("put '" .. ROOT .. "/build/" .. c[2] .. "/?.so' on package.cpath (or on " .. c[3] .. ")",
        out, 1, true)
      -- every line of the loader's message: the files it looked at
      assert.matches("module 'ugen.core' not found", out, 1, true)
      assert.matches("no file '[^']*ugen/core%.so'", out)
    end
  end)

  it("no core and a checkout with no build: says to run `make build` there", function()
    -- a checkout without build/: lua/ (a link to this tree's) and a Makefile
    local co = tmp .. "/checkout"
    assert(run("mkdir -p " .. q(co) .. " && ln -s " .. q(ROOT .. "/lua") .. " " .. q(co .. "/lua")
      .. " && : > " .. q(co .. "/Makefile")))
    local out = child("lua5.4", "", LOAD, co)
    assert.matches("not built or not installed for this interpreter (Lua 5.4)", out, 1, true)
    assert.matches("this checkout (" .. co .. ") has builds for: no Lua; none for Lua 5.4: run `make build` there",
      out, 1, true)
    assert.matches("luarocks --lua-version 5.4 install lua-ugen", out, 1, true)
  end)
end)
