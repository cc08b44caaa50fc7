-- ugen.transport: adapter selection.
--
-- An adapter is a function(req) -> res | nil, err. The pipeline hands it:
--   req = { method = "POST", url = "https://...", headers = { [Name] = "value", ... },
--           body = "<json>" | nil, mime = { parts } | nil, output = path | nil,
--           resume_from = N | nil (with output: keep the file's first N bytes, ask for
--             the rest with Range and append; an adapter that ignores it must write
--             the whole body from byte 0, as for a plain output),
--           on_progress = function(dltotal, dlnow, ultotal, ulnow) | nil (optional),
--           low_speed_time = seconds | nil (optional: abort a stalled transfer),
--           follow = true | nil (follow redirects: only credential-less downloads),
--           idempotent = boolean (false: the request may be sent only once; an adapter
--             must not re-send it on its own, e.g. the curl adapter asks for a fresh
--             connection so libcurl cannot retry it on a dead reused one),
--           timeout = 60, connect_timeout = 5, cainfo = nil, capath = nil }
-- and expects
--   res = { status = 200, headers = <{name, value, ...} flat list or {[Name] = value} map>,
--           body = "..." }
--   err = { kind = "network" | "timeout" | "tls", message = "...", sent = <boolean> }
--         (a string is taken as a network error; `sent = false` says the request
--          never reached the server, which lets non-idempotent calls be retried)
--
--   transport.resolve(spec) -> adapter function | nil, name
--     spec: nil | "curl" | "ngx" (OpenResty cosockets) |
--           function(req) | table with a :request(req) method
--     nil picks "ngx" inside nginx (lua-nginx-module: ngx.socket.tcp exists),
--     "curl" everywhere else. A built-in name gives no function: its runtime
--     performs (ugen.runtime.resolve). The ngx adapter checks the phase on every
--     call (a client made in init_by_lua* works later in request handlers/timers).

local type, error, rawget = type, error, rawget

local _M = { _VERSION = "0.1.0" }

-- Running inside nginx with the Lua module (cosockets available in some phases)?
local function in_nginx()
  local n = rawget(_G, "ngx")
  return type(n) == "table" and type(n.socket) == "table" and type(n.socket.tcp) == "function"
    and type(n.get_phase) == "function"
end
_M.in_nginx = in_nginx

function _M.resolve(spec, level)
  level = (level or 1) + 1
  if spec == nil then spec = in_nginx() and "ngx" or "curl" end
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
  if spec ~= "curl" and spec ~= "ngx" then
    error("ugen.new: unknown transport '" .. spec .. "' (use \"curl\", \"ngx\" or a function)", level)
  end
  return nil, spec
end

return _M
