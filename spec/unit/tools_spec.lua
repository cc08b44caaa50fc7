-- The commands the specs run are installed by scripts/deps.sh, and no spec
-- decides for itself to skip when one is missing (spec/support/tools.lua).
local tools = require "support.tools"
local util = require "support.util"

describe("spec tools (spec/support/tools.lua, scripts/deps.sh)", function()
  it("every command the specs run is installed", function()
    for name, pkg in pairs(tools.PACKAGES) do
      assert.truthy(tools.have(name), name .. " (Debian package " .. pkg .. ") is missing: run scripts/deps.sh")
    end
    assert.is_nil(tools.have("ugen-no-such-command"))
    assert.has_error(function() tools.need("ugen-no-such-command") end,
      "ugen-no-such-command is not installed (Debian package ?): run scripts/deps.sh (make deps)")
  end)

  it("scripts/deps.sh installs the package of each of them", function()
    local pkgs = {}
    local text = assert(util.read_file("scripts/deps.sh"))
    for word in assert(text:match('\nPKGS="([^"]*)"')):gmatch("%S+") do pkgs[word] = true end
    for name, pkg in pairs(tools.PACKAGES) do
      assert.is_true(pkgs[pkg] == true, "scripts/deps.sh does not install " .. pkg .. " (for " .. name .. ")")
    end
  end)

  it("the TLS block of spec/core/http_spec.lua fails without openssl (it used to vanish)", function()
    local interp = tools.need((type(jit) == "table") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+")))
    local dir = os.tmpname()
    os.remove(dir)
    assert(util.run("mkdir -p " .. util.q(dir .. "/empty-path")))
    finally(function() util.run("rm -rf " .. util.q(dir)) end)
    -- PATH holds no command at all: openssl cannot be found
    util.run(("%s -u LD_PRELOAD -u UGEN_BUILD_DIR PATH=%s UGEN_SUITE_LABEL=tls UGEN_SUMMARY_FILE=%s %s %s"
      .. " -o spec/support/summary.lua --filter 'TLS verification' spec/core/http_spec.lua >%s 2>&1")
      :format(tools.need("env"),
      util.q(dir .. "/empty-path"), util.q(dir .. "/sum"), interp, tools.need("busted"), util.q(dir .. "/out")))
    local out = util.read_file(dir .. "/out") or ""
    assert.equal("tls 0 1 0\n", util.read_file(dir .. "/sum"), out)
    assert.truthy(out:find("openssl is not installed (Debian package openssl)", 1, true), out)
  end)

  it("no spec tests for a command itself (a skip in disguise): only support/tools.lua runs `command -v`", function()
    local offenders = {}
    for f in util.capture("find spec -name '*.lua'"):gmatch("[^\n]+") do
      if f ~= "spec/support/tools.lua" and f ~= "spec/unit/tools_spec.lua"
         and (util.read_file(f) or ""):find("command -v", 1, true) then
        offenders[#offenders + 1] = f
      end
    end
    assert.same({}, offenders)
  end)
end)
