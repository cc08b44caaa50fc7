-- The shape of the command line's modules (lua/ugen/cli/*.lua): files of one
-- concern, none over 500 lines; the entry (ugen.cli) is required by none of
-- its submodules, a command module (ugen.cli.cmd_*) by no other submodule but
-- the entry, and the requires among ugen.cli.* (lazy ones included) form no
-- cycle.

local function lines(cmd)
  local out, p = {}, io.popen(cmd)
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

local function module_of(file)
  return (file:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", "."))
end

-- every module name a file requires with a literal string, comments left out
local function requires_of(text)
  local found = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local code = line:gsub("%-%-.*$", "")
    for name in code:gmatch("require%s*%(?%s*[\"']([%w_.]+)[\"']") do found[#found + 1] = name end
  end
  return found
end

describe("lua/ugen/cli", function()
  local files = lines("ls lua/ugen/cli/*.lua | sort")
  local graph, count = {}, {}
  for _, file in ipairs(files) do
    local f = assert(io.open(file, "rb"))
    local text = f:read("*a")
    f:close()
    local mod = module_of(file)
    local _, n = text:gsub("\n", "")
    count[mod] = n
    graph[mod] = {}
    for _, r in ipairs(requires_of(text)) do
      if r == "ugen.cli" or r:sub(1, 9) == "ugen.cli." then graph[mod][#graph[mod] + 1] = r end
    end
  end

  it("holds the entry and its submodules", function()
    assert.truthy(graph["ugen.cli"], "no lua/ugen/cli/init.lua")
    assert.truthy(#files >= 10, #files .. " files")
  end)

  it("has no file over 500 lines", function()
    for mod, n in pairs(count) do
      assert.truthy(n <= 500, mod .. " has " .. n .. " lines")
    end
  end)

  it("requires the entry from no submodule, and a command module only from the entry", function()
    for mod, deps in pairs(graph) do
      for _, r in ipairs(deps) do
        assert.is_not.equal("ugen.cli", r, mod .. " requires ugen.cli")
        if r:match("^ugen%.cli%.cmd_") then
          assert.equal("ugen.cli", mod, mod .. " requires " .. r)
        end
        assert.truthy(graph[r], mod .. " requires " .. r .. ", which is not in lua/ugen/cli")
      end
    end
  end)

  it("has no require cycle", function()
    local state = {}
    local function visit(mod, path)
      if state[mod] == "done" then return end
      assert.is_not.equal("open", state[mod], "require cycle: " .. table.concat(path, " -> "))
      state[mod] = "open"
      for _, r in ipairs(graph[mod] or {}) do
        path[#path + 1] = r
        visit(r, path)
        path[#path] = nil
      end
      state[mod] = "done"
    end
    for mod in pairs(graph) do visit(mod, { mod }) end
  end)
end)
