-- spec/support/docs.lua: the repository's markdown documents, for the specs that
-- check them (spec/unit/docs_spec.lua, spec/integration/docs_snippets_spec.lua) and
-- the host specs that run a snippet of docs/hosts.md as written.
--   docs.files()                 -> { "README.md", "docs/a.md", ... }
--   docs.snippet(file, section)  -> the first ```lua block under "## section"
local util = require "support.util"

local M = {}

function M.files()
  local files = { "README.md" }
  local p = assert(io.popen("ls docs/*.md 2>/dev/null"))
  for f in p:lines() do files[#files + 1] = f end
  p:close()
  return files
end

function M.snippet(file, section)
  local doc = assert(util.read_file(file), file)
  local at = assert(doc:find("\n## " .. section .. "\n", 1, true), "no section " .. section .. " in " .. file)
  return assert(doc:match("```lua\n(.-)```", at), "no lua block in " .. section .. " of " .. file)
end

return M
