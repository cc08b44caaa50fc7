-- spec/support/summary.lua (the output handler scripts/test.sh runs busted
-- with) and scripts/test.sh itself: a test that does not run fails the run
-- unless spec/allowed_pending.lua lists it with a reason. Each case runs a real
-- busted (the interpreter running this spec) on a small spec file written here.
local util = require "support.util"
local q, read, write = util.q, util.read_file, util.write_file

local INTERP = (type(jit) == "table") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
local BUSTED = require("support.tools").need("busted")

local dir
local function path(name) return dir .. "/" .. name end

-- the three ways a test ends up not running, and one that passes
local SKIPS = [[
describe("outer", function()
  it("passes", function() assert.is_true(true) end)
  pending("a pending block")
  it("calls pending", function() pending("not today") end)
  it("has no function")
end)
]]
local NAMES = { "outer a pending block", "outer calls pending", "outer has no function" }

-- busted with the summary handler on `spec_file`; the allowed list from
-- `list_file` (nil: the project's). Returns exit status, output, summary line.
local function busted(spec_file, list_file)
  local sum = path("summary")
  os.remove(sum)
  local cmd = ("env -u LD_PRELOAD -u UGEN_BUILD_DIR -u UGEN_ALLOWED_PENDING UGEN_SUITE_LABEL=probe"
    .. " UGEN_SUMMARY_FILE=%s %s %s %s -o spec/support/summary.lua %s >%s 2>&1; echo $? >%s")
    :format(q(sum), list_file and ("UGEN_ALLOWED_PENDING=" .. q(list_file)) or "", INTERP, q(BUSTED),
      q(spec_file), q(path("out")), q(path("rc")))
  os.execute(cmd)
  return tonumber(read(path("rc"))), read(path("out")) or "", read(sum)
end

local function list(entries)
  local lines = { "return {" }
  for name, reason in pairs(entries) do lines[#lines + 1] = ("  [%q] = %q,"):format(name, reason) end
  lines[#lines + 1] = "}"
  local f = path("list.lua")
  write(f, table.concat(lines, "\n"))
  return f
end

describe("the summary handler (spec/support/summary.lua)", function()
  lazy_setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)))
    write(path("skips_spec.lua"), SKIPS)
    write(path("clean_spec.lua"), 'describe("clean", function() it("passes", function() end) end)\n')
  end)
  lazy_teardown(function()
    if dir then os.execute("rm -rf " .. q(dir)) end
  end)

  it("fails the run for unlisted pendings: pending(), pending() in a test, it() without a function", function()
    local rc, out, sum = busted(path("skips_spec.lua"), list{})
    assert.is_true(rc ~= 0, out)
    assert.equal("probe 1 3 0\n", sum, out)
    assert.truthy(out:find("probe: 1 passed, 3 failed, 0 pending", 1, true), out)
    for _, name in ipairs(NAMES) do
      assert.truthy(out:find("(a test that does not run must be listed there with a reason): " .. name, 1, true),
        name .. "\n" .. out)
    end
    assert.truthy(out:find("pending reason: .*not today"), out)
  end)

  it("passes with listed pendings, counts them as pending and prints each reason", function()
    local entries = {}
    for i, name in ipairs(NAMES) do entries[name] = "reason " .. i end
    local f = list(entries)
    local rc, out, sum = busted(path("skips_spec.lua"), f)
    assert.equal(0, rc, out)
    assert.equal("probe 1 0 3\n", sum, out)
    for i, name in ipairs(NAMES) do
      assert.truthy(out:find("probe: skipped (listed in " .. f .. "): " .. name .. " -- reason " .. i, 1, true), out)
    end
    -- one listed, two not: the two fail
    rc, out, sum = busted(path("skips_spec.lua"), list{ [NAMES[2]] = "only this one" })
    assert.is_true(rc ~= 0, out)
    assert.equal("probe 1 2 1\n", sum, out)
  end)

  it("refuses a list entry without a reason (the run fails before any test)", function()
    local rc, out, sum = busted(path("clean_spec.lua"), list{ ["clean passes"] = " " })
    assert.is_true(rc ~= 0, out)
    assert.is_nil(sum, out)
    assert.truthy(out:find("needs a reason", 1, true), out)
  end)

  it("uses spec/allowed_pending.lua by default, and a clean run passes", function()
    local rc, out, sum = busted(path("clean_spec.lua"))
    assert.equal(0, rc, out)
    assert.equal("probe 1 0 0\n", sum, out)
    rc, out, sum = busted(path("skips_spec.lua"))
    assert.is_true(rc ~= 0, out)
    assert.equal("probe 1 3 0\n", sum, out)
    -- every entry of the project's list has a reason and ends with the name of
    -- a pending(...) or it(...) of a spec file (no stale entries)
    local declared = {}
    for f in util.capture("find spec -name '*_spec.lua'"):gmatch("[^\n]+") do
      for fn, name in (read(f) or ""):gmatch("([%w_]+)%(\"([^\"]+)\"") do
        if fn == "it" or fn == "pending" then declared[#declared + 1] = name end
      end
    end
    local allowed = dofile("spec/allowed_pending.lua")
    for name, reason in pairs(allowed) do
      assert.is_string(reason)
      assert.truthy(reason:find("%S"), name)
      local found = false
      for _, d in ipairs(declared) do
        if #d < #name and name:sub(-#d - 1) == " " .. d then found = true end
      end
      assert.is_true(found, "no spec declares " .. name)
    end
  end)

  it("a block whose tool is missing fails the run (support.tools.need in its setup)", function()
    write(path("tool_spec.lua"), [[
describe("needs a tool", function()
  lazy_setup(function() require("support.tools").need("ugen-no-such-command") end)
  it("uses it", function() end)
end)
]])
    local rc, out, sum = busted(path("tool_spec.lua"))
    assert.is_true(rc ~= 0, out)
    assert.equal("probe 0 1 0\n", sum, out)
    assert.truthy(out:find("ugen-no-such-command is not installed (Debian package ?): run scripts/deps.sh", 1, true),
      out)
  end)

  it("scripts/test.sh exits non-zero on an unlisted pending, and ignores UGEN_ALLOWED_PENDING", function()
    local function test_sh(spec_file, env)
      os.execute(("env -u LD_PRELOAD -u UGEN_BUILD_DIR %s UGEN_SPECS=%s sh scripts/test.sh >%s 2>&1; echo $? >%s")
        :format(env or "", q(spec_file), q(path("out")), q(path("rc"))))
      local out = read(path("out")) or ""
      return tonumber(read(path("rc"))), out, out:match("([^\n]*)\n?$")
    end
    -- lua5.4 and luajit each run the file: 1 passed + 3 failed each
    local rc, out, last = test_sh(path("skips_spec.lua"))
    assert.is_true(rc ~= 0, out)
    assert.equal("2 passed, 6 failed", last, out)
    local entries = {}
    for _, name in ipairs(NAMES) do entries[name] = "from the environment" end
    rc, out, last = test_sh(path("skips_spec.lua"), "UGEN_ALLOWED_PENDING=" .. q(list(entries)))
    assert.is_true(rc ~= 0, out)
    assert.equal("2 passed, 6 failed", last, out)
    rc, out, last = test_sh(path("clean_spec.lua"))
    assert.equal(0, rc, out)
    assert.equal("2 passed, 0 failed", last, out)
  end)
end)
