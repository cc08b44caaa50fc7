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
-- then, from another directory with only that tree (and the system's
-- lua-cjson) on the paths: `require "ugen"`, and the installed `ugen` command
-- starting the sandbox, running one job to completion and stopping it. On a
-- 5.4 tree the sandbox's nginx (LuaJIT) needs a LuaJIT build of ugen.core: the
-- sandbox builds it once from the rock's csrc/ into $XDG_CACHE_HOME (a fresh
-- one here); on a 5.1 tree it uses the installed core. LUA_CPATH names the
-- interpreter's own cjson (5.4's for the 5.4 tree), which nginx must not load.
-- Debian's lua-cjson/luasocket come from apt, which LuaRocks does not see,
-- hence --deps-mode=none (README: Install).
describe("luarocks make", function()
  -- Under `make check` the sanitizer runtime is preloaded; luarocks' own
  -- helpers (sed, gcc, ...) must not inherit it.
  local function sh(cmd)
    local p = io.popen("unset LD_PRELOAD; " .. cmd .. " 2>&1; echo \"rc=$?\"")
    local out = p:read("*a"); p:close()
    return out, tonumber(out:match("rc=(%d+)%s*$"))
  end

  -- 5.2: mpv's Lua (issue 14 item 5)
  for _, case in ipairs({ { rocks = "5.4", lua = "lua5.4" }, { rocks = "5.1", lua = "luajit" },
                         { rocks = "5.2", lua = "lua5.2" } }) do
    describe("for Lua " .. case.rocks, function()
      local tree, env

      lazy_setup(function()
        require("support.tools").need("luarocks")   -- scripts/deps.sh installs it: missing is a failure
        tree = os.tmpname(); os.remove(tree)
        local out, rc = sh(("luarocks --tree %s --lua-version %s make --deps-mode=none"):format(tree, case.rocks))
        assert.equal(0, rc, out)
        local v = case.rocks
        -- like `eval "$(luarocks path)"`: the interpreter's own C modules (its cjson) are named
        local cjson = sh(case.lua .. [[ -e 'io.write(package.searchpath("cjson", package.cpath))']])
        local cdir = assert(cjson:match("^(/%S+)/cjson%.so"), cjson)
        env = ("unset UGEN_SANDBOX_ROOT UGEN_SANDBOX_CORE UGEN_BASE_URL UGEN_API_KEY UGEN_JWT UGEN_CAINFO; "
          .. "export LUA_PATH='%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;' "
          .. "LUA_CPATH='%s/lib/lua/%s/?.so;%s/?.so;;' XDG_CACHE_HOME='%s/cache'; cd / && ")
          :format(tree, v, tree, v, tree, v, cdir, tree)
      end)

      lazy_teardown(function()
        if tree then os.execute("rm -rf '" .. tree .. "'") end
      end)

      it("installs a working module (run with " .. case.lua .. ")", function()
        local probe = [[local u = require "ugen"
          local c = u.new{ api_key = "k", base_url = "http://127.0.0.1:1/api/v1", max_retries = 0 }
          local r, e = c.jobs:get("x")
          assert(r == nil and e.kind == "network", tostring(e))
          assert(u.webhook.sign("s", "1", "b"):match("^%x+$"))
          print("ok " .. u._VERSION)]]
        local out, rc = sh(("%s %s -e %q"):format(env, case.lua, probe))
        assert.equal(0, rc, out)
        assert.truthy(out:find("ok 0.1.0", 1, true), out)
      end)

      it("installs a ugen command that runs the sandbox and a job to completion", function()
        require("support.tools").need("nginx")
        local ugen, dir = tree .. "/bin/ugen", tree .. "/sandbox"
        local out, rc = sh(("%s %s sandbox start --dir %s --speed 50"):format(env, ugen, dir))
        local ok, err = pcall(function()
          assert.equal(0, rc, out)
          local base = out:match("export UGEN_BASE_URL=(%S+)")
          local key = out:match("export UGEN_API_KEY=(%S+)")
          assert.truthy(base and key, out)
          local creds = ("UGEN_BASE_URL=%s UGEN_API_KEY=%s "):format(base, key)
          out, rc = sh(("%s %s %s jobs create --product-name P --image-url https://example.com/a.jpg "
                        .. "--segments 1 --json"):format(env, creds, ugen))
          assert.equal(0, rc, out)
          local id = out:match('"job_id":"([%x-]+)"')
          assert.truthy(id, out)
          out, rc = sh(("%s %s %s jobs wait %s --interval 0.1 --timeout 60 </dev/null")
                       :format(env, creds, ugen, id))
          assert.equal(0, rc, out)
          assert.truthy(out:find("/static/videos/" .. id .. ".mp4", 1, true), out)
          assert.truthy(out:find("completed", 1, true), out)
        end)
        local sout, src = sh(("%s %s sandbox stop --dir %s"):format(env, ugen, dir))
        assert(ok, err)
        assert.equal(0, src, sout)
        assert.truthy(sout:find("stopped", 1, true), sout)
      end)
    end)
  end
end)
