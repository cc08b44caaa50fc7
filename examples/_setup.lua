-- Shared by the examples: when this file sits in a source checkout
-- (CHECKOUT/examples/_setup.lua), put the checkout's lua/ and
-- build/<interpreter>/ first on the module paths, so the examples work before
-- `luarocks make` and from any directory (`lua5.4 create_job.lua` in
-- examples/, or `lua5.4 /path/to/examples/create_job.lua` from anywhere).
-- An installed rock is used otherwise. Returns the client options from the
-- environment:
--   UGEN_BASE_URL  (e.g. the sandbox: eval "$(bin/ugen sandbox start)")
--   UGEN_API_KEY   (or UGEN_JWT)
local here = debug.getinfo(1, "S").source
here = here:sub(1, 1) == "@" and here:sub(2) or "./_setup.lua"
local dir = (here:match("^(.*)/[^/]*$") or ".") .. "/.."
if dir:sub(1, 1) ~= "/" then -- absolute, so a later chdir (os.execute "cd") cannot lose it
  local p = io.popen("pwd")
  local cwd = p and p:read("*l")
  if p then p:close() end
  if cwd then dir = cwd .. "/" .. dir end
end
do
  local f = io.open(dir .. "/lua/ugen/init.lua", "r")
  if f then
    f:close()
    local sub = (type(jit) == "table" and "luajit") or _VERSION:match("%d+%.%d+")
    package.path = dir .. "/lua/?.lua;" .. dir .. "/lua/?/init.lua;" .. package.path
    package.cpath = dir .. "/build/" .. sub .. "/?.so;" .. package.cpath
  end
end

local M = {}

function M.client_options()
  local key, jwt = os.getenv("UGEN_API_KEY"), os.getenv("UGEN_JWT")
  if (not key or key == "") and (not jwt or jwt == "") then
    io.stderr:write("set UGEN_API_KEY (and UGEN_BASE_URL for the sandbox: eval \"$(bin/ugen sandbox start)\")\n")
    os.exit(2)
  end
  return { api_key = key ~= "" and key or nil, jwt = jwt ~= "" and jwt or nil }
end

-- Print an SDK error and exit non-zero.
function M.fail(what, err)
  io.stderr:write(what, " failed: ", tostring(err), "\n")
  os.exit(1)
end

return M
