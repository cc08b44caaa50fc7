-- Shared by the examples: when run from a source checkout (lua examples/x.lua),
-- put the checkout's lua/ and build/<interpreter>/ first on the module paths,
-- so the examples work before `luarocks make`. An installed rock is used
-- otherwise. Returns the client options from the environment:
--   UGEN_BASE_URL  (e.g. the sandbox: eval "$(bin/ugen sandbox start)")
--   UGEN_API_KEY   (or UGEN_JWT)
local dir = (arg and arg[0] or ""):match("^(.*)/examples/[^/]+$")
if not dir and arg and arg[0] and arg[0]:match("^examples/") then dir = "." end
if dir then
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
