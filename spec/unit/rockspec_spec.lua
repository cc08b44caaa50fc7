-- The rockspec is what users install: it must list every Lua module under
-- lua/ and every C source under csrc/ (the Makefile compiles csrc/*.c), so
-- `luarocks make` never installs less than the tree tests.
local function load_rockspec()
  local p = io.popen("ls *.rockspec")
  local name = p:read("*l"); p:close()
  assert(name, "no rockspec at the top level")
  local env = {}
  local chunk
  if setfenv then
    chunk = assert(loadfile(name)); setfenv(chunk, env)
  else
    chunk = assert(loadfile(name, "t", env))
  end
  chunk()
  return env, name
end

local function lines(cmd)
  local out, p = {}, io.popen(cmd)
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

describe("rockspec", function()
  local rs, name = load_rockspec()

  it("is named after its package and version", function()
    assert.equal(rs.package .. "-" .. rs.version .. ".rockspec", name)
    assert.equal("3.0", rs.rockspec_format)
    assert.equal("builtin", rs.build.type)
  end)

  it("lists every Lua module under lua/ with the right path", function()
    local seen = {}
    for _, file in ipairs(lines("find lua -name '*.lua' | sort")) do
      local mod = file:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
      assert.equal(file, rs.build.modules[mod], "module " .. mod .. " missing or wrong in " .. name)
      seen[mod] = true
    end
    for mod, v in pairs(rs.build.modules) do
      if type(v) == "string" then assert.is_true(seen[mod], mod .. " listed but no such file") end
    end
  end)

  it("compiles exactly csrc/*.c into ugen.core", function()
    local srcs = {}
    for _, s in ipairs(rs.build.modules["ugen.core"].sources) do srcs[#srcs + 1] = s end
    table.sort(srcs)
    assert.same(lines("ls csrc/*.c | sort"), srcs)
  end)

  it("installs the ugen command and depends on what the code requires", function()
    assert.equal("bin/ugen", rs.build.install.bin.ugen)
    local deps = table.concat(rs.dependencies, " ")
    assert.truthy(deps:find("lua-cjson", 1, true))
    assert.truthy(deps:find("luasocket", 1, true))
  end)
end)

-- The installed rock, not the tree: `luarocks make` into a temporary tree,
-- then `require "ugen"` from another directory with only that tree (and the
-- system's lua-cjson) on the paths. Debian's lua-cjson/luasocket come from
-- apt, which LuaRocks does not see, hence --deps-mode=none (README: Install).
describe("luarocks make", function()
  -- Under `make check` the sanitizer runtime is preloaded; luarocks' own
  -- helpers (sed, gcc, ...) must not inherit it.
  local function sh(cmd)
    local p = io.popen("unset LD_PRELOAD; " .. cmd .. " 2>&1; echo \"rc=$?\"")
    local out = p:read("*a"); p:close()
    return out, tonumber(out:match("rc=(%d+)%s*$"))
  end

  for _, case in ipairs({ { rocks = "5.4", lua = "lua5.4" }, { rocks = "5.1", lua = "luajit" } }) do
    it("installs a working module for Lua " .. case.rocks .. " (run with " .. case.lua .. ")", function()
      require("support.tools").need("luarocks")   -- scripts/deps.sh installs it: missing is a failure
      local tree = os.tmpname(); os.remove(tree)
      local out, rc = sh(("luarocks --tree %s --lua-version %s make --deps-mode=none"):format(tree, case.rocks))
      assert.equal(0, rc, out)
      local v = case.rocks
      local env = ("LUA_PATH='%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;' LUA_CPATH='%s/lib/lua/%s/?.so;;'")
        :format(tree, v, tree, v, tree, v)
      local probe = [[local u = require "ugen"
        local c = u.new{ api_key = "k", base_url = "http://127.0.0.1:1/api/v1", max_retries = 0 }
        local r, e = c.jobs:get("x")
        assert(r == nil and e.kind == "network", tostring(e))
        assert(u.webhook.sign("s", "1", "b"):match("^%x+$"))
        print("ok " .. u._VERSION)]]
      out, rc = sh(("cd / && %s %s -e %q"):format(env, case.lua, probe))
      os.execute("rm -rf '" .. tree .. "'")
      assert.equal(0, rc, out)
      assert.truthy(out:find("ok 0.1.0", 1, true), out)
    end)
  end
end)
