-- ugen.transport: adapter selection.
--
-- An adapter is a function(req) -> res | nil, err. The pipeline hands it:
--   req = { method = "POST", url = "https://...", headers = { [Name] = "value", ... },
--           body = "<json>" | nil, mime = { parts } | nil, output = path | nil,
--           follow = true | nil (follow redirects: only credential-less downloads),
--           timeout = 60, connect_timeout = 5, cainfo = nil, capath = nil }
-- and expects
--   res = { status = 200, headers = <{name, value, ...} flat list or {[Name] = value} map>,
--           body = "..." }
--   err = { kind = "network" | "timeout" | "tls", message = "...", sent = <boolean> }
--         (a string is taken as a network error; `sent = false` says the request
--          never reached the server, which lets non-idempotent calls be retried)
--
--   transport.resolve(spec) -> adapter function, name
--     spec: nil | "curl" (default) | "ngx" (OpenResty cosockets) |
--           function(req) | table with a :request(req) method

local type, pcall, require, tostring, error = type, pcall, require, tostring, error

local _M = { _VERSION = "0.1.0" }

local NAMES = { curl = "ugen.transport.curl", ngx = "ugen.transport.ngx" }

function _M.resolve(spec, level)
  level = (level or 1) + 1
  if spec == nil then spec = "curl" end
  if type(spec) == "function" then return spec, "function" end
  if type(spec) == "table" then
    if type(spec.request) ~= "function" then
      error("ugen.new: option 'transport' table must have a request method", level)
    end
    return function(req) return spec:request(req) end, "table"
  end
  if type(spec) ~= "string" then
    error("ugen.new: option 'transport' must be \"curl\", \"ngx\", a function or a table (got " ..
          type(spec) .. ")", level)
  end
  local modname = NAMES[spec]
  if not modname then
    error("ugen.new: unknown transport '" .. spec .. "' (use \"curl\", \"ngx\" or a function)", level)
  end
  local ok, mod = pcall(require, modname)
  if not ok then
    error("ugen.new: transport '" .. spec .. "' is not available: " .. tostring(mod):match("^[^\n]*"), level)
  end
  return mod.request, spec
end

return _M
