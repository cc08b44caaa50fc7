-- spec/support/util.lua: the small shell and file helpers the spec support
-- modules and specs share.
local M = {}

-- Quote a string for /bin/sh (single quotes).
function M.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Whole file as a string, or nil when it cannot be opened.
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Write (replace) a file; raises when it cannot be opened.
function M.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- os.execute -> boolean success on every Lua version.
function M.run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

-- A command's whole stdout.
function M.capture(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("*a")
  p:close()
  return s
end

return M
