-- The user documentation (README.md and docs/*.md) holds together: every
-- relative link resolves to a file or directory of the repository (and a
-- #fragment to a heading of the linked page), every docs page is reachable
-- from the README, nothing points at files that are not in the repository,
-- and the README stays a first-hour page.

local util = require "support.util"

local function read(path) return assert(util.read_file(path), path) end

local doc_files = require("support.docs").files

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close(); return true end
  return util.run("test -d " .. util.q(path))
end

-- The text outside fenced code blocks and inline code spans.
local function prose(text)
  local out, fenced = {}, false
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if line:match("^%s*```") then
      fenced = not fenced
    elseif not fenced then
      out[#out + 1] = (line:gsub("``.-``", ""):gsub("`[^`]*`", ""))
    end
  end
  return table.concat(out, "\n")
end

-- GitHub's anchor of a heading: lower case, punctuation dropped (but - and _),
-- spaces to hyphens; a repeated anchor gets -1, -2, ...
local function slug(heading)
  local s = heading:lower():gsub("[%p]", function(c) return (c == "-" or c == "_") and c or "" end)
  return (s:gsub(" ", "-"))
end

local anchors_cache = {}
local function anchors(path)
  if anchors_cache[path] then return anchors_cache[path] end
  local set, seen, fenced = {}, {}, false
  for line in (read(path) .. "\n"):gmatch("(.-)\n") do
    if line:match("^%s*```") then fenced = not fenced end
    local h = not fenced and line:match("^#+%s+(.-)%s*$")
    if h then
      local s = slug(h)
      if seen[s] then
        seen[s] = seen[s] + 1
        s = s .. "-" .. seen[s]
      else
        seen[s] = 0
      end
      set[s] = true
    end
  end
  anchors_cache[path] = set
  return set
end

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

local function normalize(path)
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." and #parts > 0 and parts[#parts] ~= ".." then parts[#parts] = nil
    elseif seg ~= "." then parts[#parts + 1] = seg end
  end
  return table.concat(parts, "/")
end

-- every [text](target) of the file's prose -> list of {target =, line =}
local function links(path)
  local out = {}
  local n = 0
  for line in (prose(read(path)) .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    for target in line:gmatch("%]%(([^)%s]+)%)") do out[#out + 1] = { target = target, line = n } end
  end
  return out
end

describe("docs: README.md and docs/*.md", function()
  it("every relative link resolves (file, directory, #heading)", function()
    local bad = {}
    for _, file in ipairs(doc_files()) do
      for _, l in ipairs(links(file)) do
        local t = l.target
        if not t:match("^%a[%w+.-]*:") then -- not http:, https:, mailto:
          local path, frag = t:match("^([^#]*)#?(.*)$")
          local target = path == "" and file or normalize(dirname(file) .. "/" .. path)
          if not exists(target) then
            bad[#bad + 1] = ("%s: link to %s: no such file"):format(file, t)
          elseif frag ~= "" then
            if not target:match("%.md$") then
              bad[#bad + 1] = ("%s: link to %s: a #fragment on a file that is not markdown"):format(file, t)
            elseif not anchors(target)[frag] then
              bad[#bad + 1] = ("%s: link to %s: no heading with that anchor in %s"):format(file, t, target)
            end
          end
        end
      end
    end
    assert.same({}, bad)
  end)

  it("every docs page is linked from the README", function()
    local readme = read("README.md")
    local missing = {}
    for _, file in ipairs(doc_files()) do
      if file ~= "README.md" and not readme:find("](" .. file .. ")", 1, true) then
        missing[#missing + 1] = file
      end
    end
    assert.same({}, missing)
  end)

  it("no reference to documents outside the repository, no issue-tracker wording", function()
    local bad = {}
    for _, file in ipairs(doc_files()) do
      local text = read(file)
      for _, needle in ipairs({ "UGEN-API.md", "this issue", "issue #" }) do
        if text:find(needle, 1, true) then bad[#bad + 1] = file .. ": " .. needle end
      end
    end
    assert.same({}, bad)
  end)

  it("the README is a first-hour page: quick start, install, the five workflows, errors, next steps", function()
    local readme = read("README.md")
    local lines = select(2, readme:gsub("\n", "\n"))
    assert.is_true(lines <= 300, "README.md has " .. lines .. " lines")
    assert.truthy(readme:find("make demo ", 1, true))
    assert.truthy(readme:find("make test ", 1, true))
    assert.truthy(readme:find('eval "$(make -s env)"', 1, true))
    for _, h in ipairs({ "## Quick start", "## Install", "## Usage: the five workflows", "## Errors",
                         "## Where to go next" }) do
      assert.truthy(readme:find("\n" .. h .. "\n", 1, true), h)
    end
    for i = 1, 5 do assert.truthy(readme:find("\n### " .. i .. ". ", 1, true), "workflow " .. i) end
  end)

  it("the slug rule matches GitHub's on the headings used here", function()
    assert.equal("the-credit-guard-max_credits", slug("The credit guard: `max_credits`"))
    assert.equal("usage-the-five-workflows", slug("Usage: the five workflows"))
    assert.equal("downloads-clientjobsdownloadjob_or_id-path-opts",
      slug("Downloads: `client.jobs:download(job_or_id, path[, opts])`"))
  end)
end)
