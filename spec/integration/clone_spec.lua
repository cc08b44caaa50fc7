-- Using lua-ugen from a clone, as the README says (issue 16, item 3):
--   eval "$(make -s env)"        require "ugen" from any directory (LUA=luajit for LuaJIT)
--   lua5.4 examples/x.lua        the examples from any directory, against the sandbox
--   make rock                    a binary rock, built and installed without network
-- Every command runs in a child shell with no LUA_PATH/LUA_CPATH of its own:
-- what makes the clone's modules visible is the thing under test.
local S = require "support.sandbox"
local util = require "support.util"
local q = util.q

local REPO = (function()
  local p = io.popen("pwd")
  local d = p:read("*l")
  p:close()
  return d
end)()

local CLEAN = "unset LD_PRELOAD LUA_PATH LUA_CPATH LUA_PATH_5_4 LUA_CPATH_5_4 LUA_PATH_5_3 LUA_CPATH_5_3 "
  .. "LUA_PATH_5_2 LUA_CPATH_5_2 UGEN_BASE_URL UGEN_API_KEY UGEN_JWT UGEN_CAINFO; "

-- runs cmd in sh (stdout and stderr together) -> output, exit code
local function sh(cmd)
  local p = io.popen(CLEAN .. "{ " .. cmd .. "\n} 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return out:gsub("rc=%d+%s*$", ""), rc
end

describe("make -s env", function()
  for _, case in ipairs({ { lua = "lua5.4", make = "", sub = "5.4" },
                          { lua = "luajit", make = " LUA=luajit", sub = "luajit" },
                          { lua = "lua5.2", make = " LUA=lua5.2", sub = "5.2" } }) do   -- mpv's Lua
    it("prints only export lines; evaluated, " .. case.lua .. " requires the clone's ugen from /tmp", function()
      local out, rc = sh(("make -s -C %s env%s 2>/dev/null"):format(q(REPO), case.make))
      assert.equal(0, rc, out)
      for line in out:gmatch("[^\n]+") do assert.matches("^export [%w_]+=", line) end
      local probe = [[local u = require "ugen"
        local c = u.new{ api_key = "k", base_url = "http://127.0.0.1:1/api/v1", max_retries = 0 }
        assert(c.jobs and u.webhook.sign("s", "1", "b"):match("^%x+$"))
        print(package.searchpath("ugen", package.path))
        print(package.searchpath("ugen.core", package.cpath))]]
      local res
      res, rc = sh(('eval "$(make -s -C %s env%s)" && cd /tmp && %s -e %s && ugen version && echo "PATH=$PATH"')
                   :format(q(REPO), case.make, case.lua, q(probe)))
      assert.equal(0, rc, res)
      assert.truthy(res:find(REPO .. "/lua/ugen/init.lua\n", 1, true), res)
      assert.truthy(res:find(REPO .. "/build/" .. case.sub .. "/ugen/core.so\n", 1, true), res)
      assert.truthy(res:find("\nugen %d+%.%d+%.%d+\n"), res)            -- the clone's ugen runs from /tmp
      assert.truthy(res:find("\nPATH=" .. REPO:gsub("%p", "%%%0") .. "/bin:"), res)
    end)
  end

  it("keeps the 5.4 and the LuaJIT exports apart (both evaluated, each loads its own core)", function()
    local res, rc = sh(('eval "$(make -s -C %s env)" && eval "$(make -s -C %s env LUA=luajit)" && cd /tmp && '
      .. [[lua5.4 -e 'require "ugen"; print(package.searchpath("ugen.core", package.cpath))' && ]]
      .. [[luajit -e 'require "ugen"; print(package.searchpath("ugen.core", package.cpath))']])
      :format(q(REPO), q(REPO)))
    assert.equal(0, rc, res)
    assert.truthy(res:find(REPO .. "/build/5.4/ugen/core.so\n" .. REPO .. "/build/luajit/ugen/core.so\n", 1, true),
                  res)
  end)

  it("refuses an interpreter it has no core for", function()
    local out, rc = sh(("make -s -C %s env LUA=lua9"):format(q(REPO)))
    assert.are_not.equal(0, rc)
    assert.matches("LUA must be", out)
  end)
end)

describe("the examples", function()
  local env

  lazy_setup(function()
    local info = S.info()
    env = ("UGEN_BASE_URL=%s UGEN_API_KEY=%s "):format(q(info.base_url), q(info.api_key))
  end)

  for _, lua in ipairs({ "lua5.4", "luajit" }) do
    it("run with " .. lua .. " from /tmp and from examples/ itself", function()
      for _, how in ipairs({ { cwd = "/tmp", path = REPO .. "/examples/" },
                             { cwd = REPO .. "/examples", path = "" } }) do
        local run = ("cd %s && %s %s "):format(q(how.cwd), env, lua)
        local out, rc = sh(run .. q(how.path .. "create_job.lua"))
        assert.equal(0, rc, out)
        assert.matches("^created job [%x-]+ %(status queued", out)
        out, rc = sh(run .. q(how.path .. "estimate.lua"))
        assert.equal(0, rc, out)
        assert.matches("^estimated total: %d+ credits\n", out)
        assert.matches("\navailable: %d+ credits\n", out)
      end
    end)
  end
end)

describe("make rock", function()
  it("builds a binary rock that installs offline into a new tree and works from another directory", function()
    require("support.tools").need("luarocks")
    local out, rc = sh(("make -s -C %s rock 2>/dev/null"):format(q(REPO)))
    assert.equal(0, rc, out)
    local rock = out:match("(/%S+/build/rock/5%.4/lua%-ugen%-0%.1%.0%-1%.[%w_-]+%.rock)\n$")
    assert.truthy(rock, out)
    local tree = os.tmpname()
    os.remove(tree)
    finally(function() os.execute("rm -rf " .. q(tree)) end)
    -- --only-server at a directory with no manifest: no repository, no network
    out, rc = sh(("cd /tmp && luarocks --lua-version 5.4 --tree %s --only-server=%s install --deps-mode=none %s")
                 :format(q(tree), q(tree .. "/no-server"), q(rock)))
    assert.equal(0, rc, out)
    local probe = [[local u = require "ugen"; print(u._VERSION, package.searchpath("ugen.core", package.cpath))]]
    out, rc = sh(("cd / && LUA_PATH_5_4=%s LUA_CPATH_5_4=%s lua5.4 -e %s"):format(
      q(tree .. "/share/lua/5.4/?.lua;" .. tree .. "/share/lua/5.4/?/init.lua;;"),
      q(tree .. "/lib/lua/5.4/?.so;;"), q(probe)))
    assert.equal(0, rc, out)
    assert.truthy(out:find("0.1.0\t" .. tree .. "/lib/lua/5.4/ugen/core.so", 1, true), out)
    -- the sandbox's files and the C sources come with it (ugen sandbox start: spec/unit/rockspec_spec.lua)
    out, rc = sh(("ls %s/lib/luarocks/rocks-5.4/lua-ugen/0.1.0-1/sandbox/nginx.conf.tmpl "
                  .. "%s/lib/luarocks/rocks-5.4/lua-ugen/0.1.0-1/csrc/ugen_core.c %s/bin/ugen"):format(
                  q(tree), q(tree), q(tree)))
    assert.equal(0, rc, out)
  end)
end)
