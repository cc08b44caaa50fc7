-- The SDK's layering (docs/ARCHITECTURE.md) kept true: the ugen.* require graph, read from every
-- lua/ugen/**/*.lua file (require "x", require("x"), pcall(require, "x"), lazy ones inside
-- functions included, requires inside comments ignored; require("prefix." .. name) stands for every
-- module under that prefix), has no cycle and no upward edge; no source file is over 700 lines.

local LIMIT = 700

-- The layers, lowest first (a module may require its own layer or lower ones, never a higher one).
-- Keep in step with docs/ARCHITECTURE.md. A name ending in ".*" covers every module under it.
local LAYERS = {
  { "L0", { "ugen.native" } },
  { "L1", { "ugen.json", "ugen.errors", "ugen.url", "ugen.headers", "ugen.args", "ugen.clock", "ugen.crypto",
            "ugen.retry", "ugen.endpoints", "ugen.validate", "ugen.media", "ugen.webhook", "ugen.observe" } },
  { "L2", { "ugen.transport", "ugen.transport.*", "ugen.runtime", "ugen.runtime.*", "ugen.cluster.*" } },
  { "L3", { "ugen.pipeline" } },
  { "L4", { "ugen.call" } },
  { "L5", { "ugen.resources", "ugen.resources.*" } },
  { "L6", { "ugen.client", "ugen" } },
  -- side / top: host integrations and tools over the whole SDK; nothing in the SDK requires them
  { "top", { "ugen.ngx", "ugen.cli", "ugen.cli.*", "ugen.sandbox", "ugen.sandbox.*", "ugen.batch", "ugen.batch.*" } },
}

-- The C core is private: only its facade may load it.
local CORE, CORE_FACADE = "ugen.core", "ugen.native"

-- Requires allowed against the table, each with its reason. (None today.)
local EXCEPTIONS = {}

-- Files allowed over LIMIT lines, each with its reason. (None today.)
local SIZE_EXCEPTIONS = {}

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function list(cmd)
  local out = {}
  local p = assert(io.popen(cmd))
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  table.sort(out)
  return out
end

-- Lua source with comments blanked out (strings kept): a small scanner for
-- "--" line comments, "--[==[ ]==]" long comments, long strings and quoted strings.
local function strip_comments(src)
  local out, i, n = {}, 1, #src
  while i <= n do
    local c = src:sub(i, i)
    if c == "-" and src:sub(i + 1, i + 1) == "-" then
      local eq = src:match("^%[(=*)%[", i + 2)
      local j
      if eq then
        local _, e = src:find("]" .. eq .. "]", i + 4 + #eq, true)
        j = e or n
      else
        j = (src:find("\n", i + 2, true) or (n + 1)) - 1
      end
      out[#out + 1] = (src:sub(i, j):gsub("[^\n]", " "))
      i = j + 1
    elseif c == "[" and src:match("^%[=*%[", i) then
      local eq = src:match("^%[(=*)%[", i)
      local _, e = src:find("]" .. eq .. "]", i + 2 + #eq, true)
      e = e or n
      out[#out + 1] = src:sub(i, e)
      i = e + 1
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n do
        local d = src:sub(j, j)
        if d == "\\" then j = j + 2
        elseif d == c or d == "\n" then break
        else j = j + 1 end
      end
      out[#out + 1] = src:sub(i, j)
      i = j + 1
    else
      local j = src:find("[-%[\"']", i + 1) or (n + 1)
      out[#out + 1] = src:sub(i, j - 1)
      i = j
    end
  end
  return table.concat(out)
end

-- Every require in `code` (comments stripped) -> list of {name =, prefix = true|nil, line =}, and a
-- list of requires whose argument is not a string literal (not followed: reported).
local function requires_of(code)
  local found, unknown = {}, {}
  local function line_of(pos)
    local _, nl = code:sub(1, pos):gsub("\n", "")
    return nl + 1
  end
  local pos = 1
  while true do
    local s, e = code:find("%f[%w_]require%f[^%w_]", pos)
    if not s then break end
    pos = e + 1
    local rest = code:sub(e + 1, e + 200)
    -- require "x" | require("x" | require('x' | require ( "x"
    local q, name, after = rest:match("^%s*%(?%s*([\"'])([%w_.]+)%1()")
    if not q then
      -- pcall(require, "x") | pcall(require, "x" .. y)
      local before = code:sub(math.max(1, s - 20), s - 1)
      if before:match("pcall%s*%(%s*$") then
        name, after = select(2, rest:match("^%s*,%s*([\"'])([%w_.]+)%1()"))
      end
    end
    if name then
      local prefix = rest:sub(after):match("^%s*%.%.") ~= nil
      found[#found + 1] = { name = name, prefix = prefix or nil, line = line_of(s) }
    elseif not rest:match("^%s*[=,)]") and not code:sub(math.max(1, s - 6), s - 1):match("local%s+$") then
      -- a call with a computed name (local require = require, "require" as a value: fine)
      if rest:match("^%s*%(") or rest:match("^%s*[\"'%[]") then
        unknown[#unknown + 1] = line_of(s)
      end
    end
  end
  return found, unknown
end

local function module_of(path)
  return (path:gsub("^lua/", ""):gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", "."))
end

local function layer_of(mod)
  for i, l in ipairs(LAYERS) do
    for _, pat in ipairs(l[2]) do
      if pat == mod or (pat:sub(-2) == ".*" and mod:sub(1, #pat - 1) == pat:sub(1, -2)) then
        return i, l[1]
      end
    end
  end
  return nil
end

-- The graph: module -> { {to =, line =, lazy_prefix =} }, and problems found while reading
local function build_graph(root)
  root = root or "."
  local files = list("cd " .. root .. " && find lua/ugen -name '*.lua'")
  local graph, modules, problems = {}, {}, {}
  for _, f in ipairs(files) do modules[module_of(f)] = f end
  for _, f in ipairs(files) do
    local from = module_of(f)
    local found, unknown = requires_of(strip_comments(read(root .. "/" .. f)))
    local edges = {}
    for _, r in ipairs(found) do
      if r.prefix then
        for m in pairs(modules) do
          if m:sub(1, #r.name) == r.name and m ~= from then
            edges[#edges + 1] = { to = m, line = r.line, via = r.name .. "*" }
          end
        end
      elseif r.name == "ugen" or r.name:match("^ugen%.") then
        if r.name ~= from then edges[#edges + 1] = { to = r.name, line = r.line } end
      end
    end
    for _, line in ipairs(unknown) do
      problems[#problems + 1] = string.format("%s:%d: require with a computed module name (not followed)", f, line)
    end
    table.sort(edges, function(a, b) return a.to < b.to end)
    graph[from] = edges
  end
  return graph, modules, problems
end

local function cycles_of(graph)
  local state, stack, cycles, seen = {}, {}, {}, {}
  local names = {}
  for m in pairs(graph) do names[#names + 1] = m end
  table.sort(names)
  local function visit(m)
    state[m] = "open"
    stack[#stack + 1] = m
    for _, e in ipairs(graph[m] or {}) do
      if graph[e.to] then
        if state[e.to] == "open" then
          local cyc, on = {}, false
          for _, s in ipairs(stack) do
            if s == e.to then on = true end
            if on then cyc[#cyc + 1] = s end
          end
          cyc[#cyc + 1] = e.to
          local key = table.concat(cyc, " -> ")
          if not seen[key] then seen[key] = true; cycles[#cycles + 1] = key end
        elseif state[e.to] == nil then
          visit(e.to)
        end
      end
    end
    stack[#stack] = nil
    state[m] = "done"
  end
  for _, m in ipairs(names) do if state[m] == nil then visit(m) end end
  return cycles
end

local function violations_of(graph, modules)
  local out = {}
  local names = {}
  for m in pairs(graph) do names[#names + 1] = m end
  table.sort(names)
  for _, from in ipairs(names) do
    local lf, lname = layer_of(from)
    if not lf then
      out[#out + 1] = from .. " (" .. modules[from] .. ") has no layer: add it to LAYERS here and to "
        .. "docs/ARCHITECTURE.md"
    end
    for _, e in ipairs(graph[from]) do
      local where = modules[from] .. ":" .. e.line
      if e.to == CORE then
        if from ~= CORE_FACADE then
          out[#out + 1] = where .. ": " .. from .. " requires " .. CORE .. " (only " .. CORE_FACADE .. " may)"
        end
      elseif not modules[e.to] then
        out[#out + 1] = where .. ": " .. from .. " requires " .. e.to .. ", which is not a module under lua/"
      elseif lf then
        local lt, tname = layer_of(e.to)
        if lt and lt > lf and not EXCEPTIONS[from .. " -> " .. e.to] then
          out[#out + 1] = string.format("%s: upward require: %s (%s) requires %s (%s)", where, from, lname, e.to,
            tname)
        end
      end
    end
  end
  return out
end

local function long_files(root)
  root = root or "."
  local out = {}
  local files = list("cd " .. root .. " && find lua csrc sandbox -type f \\( -name '*.lua' -o -name '*.c' "
    .. "-o -name '*.h' \\)")
  for _, f in ipairs(files) do
    local _, n = read(root .. "/" .. f):gsub("\n", "")
    if n > LIMIT and not SIZE_EXCEPTIONS[f] then out[#out + 1] = f .. ": " .. n .. " lines" end
  end
  return out
end

describe("layers", function()
  it("the scanner reads requires, lazy and pcall'd ones, not those in comments or strings", function()
    local code = strip_comments(table.concat({
      'local a = require "ugen.a"',
      'local b = require("ugen.b")',
      "local function f() return require ( 'ugen.c' ).x end",
      'local ok, d = pcall(require, "ugen.d")',
      'local e = require("ugen.e." .. name)',
      '-- require "ugen.no1"',
      '--[[ require("ugen.no2") ]] local s = "-- not a comment"',
      '--[==[',
      'require "ugen.no3"',
      ']==]',
      'local t = [[ -- require "kept.in.string" ]]',
    }, "\n"))
    local found = requires_of(code)
    local names = {}
    for _, r in ipairs(found) do names[#names + 1] = r.name .. (r.prefix and "*" or "") .. "@" .. r.line end
    assert.same({ "ugen.a@1", "ugen.b@2", "ugen.c@3", "ugen.d@4", "ugen.e.*@5", "kept.in.string@11" }, names)
    assert.truthy(code:find('local s = "-- not a comment"', 1, true))
  end)

  it("every module under lua/ugen has a layer, and no module requires a higher layer", function()
    local graph, modules, problems = build_graph()
    assert.truthy(graph["ugen.client"] and graph["ugen.pipeline"] and graph["ugen.call"])
    local bad = violations_of(graph, modules)
    for _, p in ipairs(problems) do bad[#bad + 1] = p end
    assert.same({}, bad)
  end)

  it("the ugen.* require graph has no cycle (lazy requires included)", function()
    local graph = build_graph()
    assert.same({}, cycles_of(graph))
  end)

  it("the pipeline knows no endpoints and nothing above it", function()
    local graph = build_graph()
    for _, e in ipairs(graph["ugen.pipeline"]) do
      assert.is_not.equal("ugen.endpoints", e.to)
      assert.is_not.equal("ugen.validate", e.to)
    end
  end)

  it("no file in lua/, csrc/ or sandbox/ is over " .. LIMIT .. " lines", function()
    assert.same({}, long_files())
    for f, reason in pairs(SIZE_EXCEPTIONS) do
      assert.truthy(io.open(f, "rb"), f .. " is listed as an exception but does not exist")
      assert.is_string(reason)
    end
  end)
end)
