-- ugen_sandbox_server.routes: the /api/v1 routes, driven by ugen.endpoints (the
-- SDK's endpoint table), so the SDK and the sandbox cannot drift.
--
-- dispatch() matches the path (literal routes before parameterised ones; 404,
-- 405 + Allow), then authenticates (routing is checked before auth), reads
-- the body (JSON or multipart), validates every parameter with ugen.validate
-- (422) and calls the endpoint's handler (ugen_sandbox_server.handlers.*) with the
-- tenant data, the clean parameters and a context { ep, query, body, parts }.

local endpoints = require "ugen.endpoints"
local validate = require "ugen.validate"
local util = require "ugen_sandbox_server.util"
local state = require "ugen_sandbox_server.state"
local http = require "ugen_sandbox_server.http"
local auth = require "ugen_sandbox_server.auth"
local uploads = require "ugen_sandbox_server.uploads"

local ngx = ngx
local pairs, ipairs = pairs, ipairs
local concat, sort = table.concat, table.sort
local null = util.null
local E, unprocessable = http.error_response, http.unprocessable

local _M = {}

-- name ("resource.name") -> handler
local H = {}
for _, group in ipairs({ "models", "jobs", "credits", "account", "music", "templates" }) do
  for name, fn in pairs(require("ugen_sandbox_server.handlers." .. group)) do
    assert(H[name] == nil, "two handlers for " .. name)
    H[name] = fn
  end
end
_M.handlers = H

local ROUTES = {}
do
  local by_path = {}
  local function add_route(path, method, ep, name)
    local r = by_path[path]
    if not r then
      local names = {}
      local pat = "^" .. path:gsub("[%-%.]", "%%%0"):gsub("{([%w_]+)}", function(n)
        names[#names + 1] = n
        return "([^/]+)"
      end) .. "$"
      r = { path = path, pattern = pat, names = names, methods = {} }
      by_path[path] = r
      ROUTES[#ROUTES + 1] = r
    end
    r.methods[method] = { ep = ep, name = name }
  end
  for _, ep in ipairs(endpoints.list) do
    add_route(ep.path, ep.method, ep, ep.resource .. "." .. ep.name)
  end
  -- Sandbox choice for the undocumented playground task-status endpoint.
  add_route("/playground/tasks/{task_id}", "GET", {
    method = "GET", path = "/playground/tasks/{task_id}", success = 200,
    params = { { name = "task_id", ["in"] = "path", type = "string", required = true } },
    by_param = {},
  }, "playground.task")
  -- Literal routes before parameterised ones.
  sort(ROUTES, function(a, b)
    if #a.names ~= #b.names then return #a.names < #b.names end
    return a.path < b.path
  end)
end

local function match_route(path)
  for _, r in ipairs(ROUTES) do
    local caps = { path:match(r.pattern) }
    if caps[1] or path:match(r.pattern) then
      local params = {}
      for i, n in ipairs(r.names) do params[n] = ngx.unescape_uri(caps[i]) end
      return r, params
    end
  end
  return nil
end

local function allow_header(r)
  local m = {}
  for k in pairs(r.methods) do m[#m + 1] = k end
  if r.methods.GET then m[#m + 1] = "HEAD" end
  sort(m)
  return concat(m, ", ")
end

--- Route, authenticate, parse and validate one /api/v1 request; path is
-- relative to /api/v1 -> response.
function _M.dispatch(method, path)
  local r, path_params = match_route(path)
  if not r then
    return E(404, "NOT_FOUND", "No route for " .. method .. " " .. state.API .. path)
  end
  local entry = r.methods[method]
  if not entry then
    return E(405, "METHOD_NOT_ALLOWED", "Method " .. method .. " not allowed on " .. state.API .. path, nil,
             { Allow = allow_header(r) })
  end
  local T, aresp = auth.authenticate()
  if not T then return aresp end

  local ep = entry.ep
  local ctx = { ep = ep, query = http.query_args(), body = {} }
  local params = {}
  for k, v in pairs(ctx.query) do params[k] = v end
  if ep.body == "json" then
    local b, resp = http.json_body()
    if not b then return resp end
    ctx.body = b
    for k, v in pairs(b) do params[k] = v end
  elseif ep.body == "multipart" then
    local parts, resp = uploads.parse(ep)
    if not parts then return resp end
    ctx.parts = parts
    return H[entry.name](T, params, ctx)
  end
  for k, v in pairs(path_params) do params[k] = v end
  local details, clean = validate.check(ep, params, { null = null, body = ctx.body })
  if details then return unprocessable(details) end
  -- Treat JSON nulls as absent from here on.
  for k, v in pairs(clean) do if v == null then clean[k] = nil end end
  return H[entry.name](T, clean, ctx)
end

-- Every route has its handler (checked when the module loads).
for _, r in ipairs(ROUTES) do
  for _, entry in pairs(r.methods) do assert(H[entry.name], "no handler for " .. entry.name) end
end

return _M
