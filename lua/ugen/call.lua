-- ugen.call: endpoint calls above the pipeline.
--
--   call.endpoint(client, ep, path_values, params, opts[, extra]) -> result, meta | nil, err
--       extra: { mime =, output =, url =, frames = n (helper frames between the
--       resource method and this call, for the level of argument errors) }
--       a generated resource method's call: validation (ugen.validate), path filling
--       (each value URL-encoded as one segment; dot segments refused), query/body/form
--       placement, then ugen.pipeline.send. Argument errors count the resource method's
--       frame: call it from the method, not as a tail call.
--   call.request(client, method, path, params, opts) -> result, meta | nil, err
--       client:request, the raw escape hatch: {name} path parameters from params, the rest
--       as query (GET, DELETE, ...) or JSON body (POST, PUT, PATCH).
--   call.check_call_opts(opts, n, fname, level)   per-call opts ({timeout, connect_timeout,
--       headers, idempotency_key, max_retries, extra, on_request, on_response, on_retry,
--       timings}); raises "bad argument #n to 'fname'"
--       at `level` (as args.argerror counts it)
--   call.check_headers(h, what, level)            header names are tokens, values strings
--       without line breaks; raises "<what>: ..." at `level`
--   call.validation_error(fields) -> err{kind = "validation", fields = fields}
--   call.client_of(resource, ep) -> client   (resource methods: `self` checked, raises at level 3)

local json = require "ugen.json"
local errors = require "ugen.errors"
local validate = require "ugen.validate"
local crypto = require "ugen.crypto"
local endpoints = require "ugen.endpoints"
local url_mod = require "ugen.url"
local argerror = require("ugen.args").argerror
local pipeline = require "ugen.pipeline"
local observe = require "ugen.observe"

local type, pairs, ipairs, tostring, error, setmetatable =
  type, pairs, ipairs, tostring, error, setmetatable
local string_format, string_match, string_find, string_sub, string_upper =
  string.format, string.match, string.find, string.sub, string.upper
local math_floor = math.floor

local send = pipeline.send

local _M = { _VERSION = "0.1.0" }

local function typename(v) return type(v) end

-- A resource method's self -> its client (raises at the method's caller); the self check
-- catches client.jobs.get(id) (a dot instead of a colon)
local function client_of(self, ep)
  if type(self) ~= "table" or type(self._client) ~= "table" then
    error(string_format("ugen: call %s:%s(...) with a colon (client.%s:%s)",
      ep.resource, ep.name, ep.resource, ep.name), 3)
  end
  return self._client
end
_M.client_of = client_of

local function has_crlf(s) return string_find(s, "[\r\n%z]") ~= nil end

local function check_headers_table(h, what, level)
  for k, v in pairs(h) do
    if type(k) ~= "string" or not string_match(k, "^[!#$%%&'*+%-.^_`|~%w]+$") then
      error(string_format("%s: header name %s is not a valid token", what, tostring(k)), level + 1)
    end
    if type(v) ~= "string" and type(v) ~= "number" then
      error(string_format("%s: header '%s' must be a string (got %s)", what, k, type(v)), level + 1)
    end
    if has_crlf(tostring(v)) then
      error(string_format("%s: header '%s' contains a line break", what, k), level + 1)
    end
  end
end

local CALL_OPTS = {
  timeout = true, connect_timeout = true, headers = true, idempotency_key = true, max_retries = true,
  extra = true, -- fields the SDK does not know yet: sent as given (body or query), not validated
  -- observability (ugen.observe): hooks for this call (after the client's), meta.timing
  on_request = true, on_response = true, on_retry = true, timings = true,
}

-- Validate per-call opts (argument #n of fname); raises at the caller's caller.
local function check_call_opts(opts, n, fname, level)
  level = level + 1
  if opts == nil then return end
  if type(opts) ~= "table" then argerror(n, fname, "table expected, got " .. typename(opts), level) end
  local observed = false
  for k, v in pairs(opts) do
    if not CALL_OPTS[k] then
      argerror(n, fname, "unknown option '" .. tostring(k) .. "'", level)
    end
    if observe.CALL_KEYS[k] then observed = true end
    if (k == "timeout" or k == "connect_timeout") and (type(v) ~= "number" or v ~= v or v <= 0) then
      argerror(n, fname, "opts." .. k .. " must be a positive number", level)
    elseif k == "max_retries" and (type(v) ~= "number" or v < 0 or v ~= math_floor(v)) then
      argerror(n, fname, "opts.max_retries must be an integer >= 0", level)
    elseif k == "idempotency_key" and (type(v) ~= "string" or v == "" or has_crlf(v)) then
      argerror(n, fname, "opts.idempotency_key must be a non-empty string", level)
    elseif k == "headers" then
      if type(v) ~= "table" then argerror(n, fname, "opts.headers must be a table", level) end
      check_headers_table(v, "bad argument #" .. n .. " to '" .. fname .. "'", level)
    elseif k == "extra" then
      if type(v) ~= "table" then argerror(n, fname, "opts.extra must be a table of fields", level) end
      for f in pairs(v) do
        if type(f) ~= "string" or f == "" then
          argerror(n, fname, "opts.extra: field names must be non-empty strings", level)
        end
      end
    end
  end
  if observed then observe.check_call(opts, n, fname, level) end
end
_M.check_call_opts = check_call_opts
_M.check_headers = check_headers_table

---------------------------------------------------------------------------
-- raw requests: client:request(method, path, params, opts)

-- The error of a call refused before sending (client-side validation).
local function validation_error(fields)
  local n = #fields
  return errors.new{
    kind = "validation", fields = fields, retryable = false,
    message = n == 1 and "request validation failed (client-side)"
      or string_format("request validation failed (client-side, %d problems)", n),
  }
end
_M.validation_error = validation_error

local BODY_METHODS = { POST = true, PUT = true, PATCH = true }

-- A path parameter that a server (or libcurl) would resolve as a dot segment
-- and so route to another endpoint: "." or "..", alone or between slashes
-- ("../x", "a/./b"; "/" is sent as %2F, which nginx and others decode before
-- resolving dot segments; "\\" for servers that treat it as "/"). Refused.
local dot_segment = url_mod.dot_segment

local DOT_MSG = "must not be '.' or '..' or hold such a segment between slashes (it would change the endpoint called)"

-- The validation problem for a dot-segment path parameter.
local function dot_problem(name, v)
  return { type = "value_error", loc = { "path", name }, msg = "Path parameter " .. DOT_MSG, input = v }
end

local encode_segment = url_mod.encode_segment

-- A path template ("/jobs/{job_id}/segments/{index}") as its pieces:
-- { literal, name, literal, name, ..., literal }, made once per template.
local templates = setmetatable({}, { __index = function(t, path)
  local pieces, pos = {}, 1
  while true do
    local a, b, name = string_find(path, "{([%w_]+)}", pos)
    if not a then break end
    pieces[#pieces + 1] = string_sub(path, pos, a - 1)
    pieces[#pieces + 1] = name
    pos = b + 1
  end
  pieces[#pieces + 1] = string_sub(path, pos)
  t[path] = pieces
  return pieces
end })

-- Substitute {name} path parameters (URL-encoded) from params; returns the
-- path and the set of used names, or nil, name of the missing one.
local function fill_path(path, params)
  local pieces = templates[path]
  local out, used = pieces[1], {}
  for i = 2, #pieces, 2 do
    local name = pieces[i]
    local v = params and params[name]
    if type(v) == "number" then v = url_mod.scalar_string(v) end
    if type(v) ~= "string" or v == "" then return nil, name end
    used[name] = true
    out = out .. encode_segment(v) .. pieces[i + 1]
  end
  return out, used
end

local function endpoint_for(method, path)
  for _, ep in ipairs(endpoints.list) do
    if ep.method == method and ep.path == path then return ep end
  end
  return nil
end

function _M.request(self, method, path, params, opts)
  if not pipeline.is_client(self) then
    error("ugen: call client:request(...) with a colon", 2)
  end
  if type(method) ~= "string" or not string_match(method, "^%a+$") then
    argerror(1, "request", "HTTP method string expected, got " .. typename(method), 2)
  end
  if type(path) ~= "string" or string_sub(path, 1, 1) ~= "/" then
    argerror(2, "request", "path starting with '/' expected, got " .. typename(path), 2)
  end
  if params ~= nil and type(params) ~= "table" then
    argerror(3, "request", "table expected, got " .. typename(params), 2)
  end
  check_call_opts(opts, 4, "request", 2)
  method = string_upper(method)
  local filled, used = fill_path(path, params)
  if not filled then
    argerror(3, "request", "params." .. used .. " is required by the path", 2)
  end
  local bad
  for name in pairs(used) do
    if dot_segment(params[name]) then bad = bad or {}; bad[#bad + 1] = dot_problem(name, params[name]) end
  end
  if bad then return nil, validation_error(bad) end
  local rest = {}
  for k, v in pairs(params or {}) do
    if not used[k] then rest[k] = v end
    if errors.is_secret_key(k) then errors.add_secrets(self, v) end
  end
  for k, v in pairs(opts and opts.extra or {}) do
    rest[k] = v
    if errors.is_secret_key(k) then errors.add_secrets(self, v) end
  end
  local spec = { method = method, path = filled, opts = opts, fname = "request", argn = 3, level = 3 }
  if BODY_METHODS[method] then spec.body = rest else spec.query = rest end
  local ep = endpoint_for(method, path)
  local key_field = ep and ep.idempotency
  if BODY_METHODS[method] and ((opts and opts.idempotency_key) or key_field) then
    key_field = key_field or "idempotency_key"
    local body = spec.body or {}
    if body[key_field] == nil then body[key_field] = (opts and opts.idempotency_key) or crypto.uuid4() end
    spec.body = body
    spec.idempotent = true
  end
  local result, meta = send(self, spec)     -- not a tail call: error levels count this frame
  return result, meta
end

---------------------------------------------------------------------------
-- resource calls: call.endpoint(client, ep, path_values, params, opts[, extra])

local function is_secret_name(name)
  return type(name) == "string" and string_find(name, "secret$") ~= nil
end

-- ep: an endpoints entry; pv: {name = value} path values (already type
-- checked); params: user table or nil (never modified); opts: checked
-- per-call opts. extra: {mime = ..., idempotency_key = ...} from special methods.
-- Endpoints whose parameters are all plain required string path parameters
-- (get/delete by id): called without a params table, validation reduces to
-- "each path value is a non-empty string" (the values were type checked by
-- the generated method). Computed once per endpoint.
local SIMPLE_PARAM_KEYS = { name = true, ["in"] = true, type = true, required = true, doc = true }
local simple_eps = setmetatable({}, { __mode = "k" })
local function is_simple(ep)
  local simple = simple_eps[ep]
  if simple ~= nil then return simple end
  simple = ep.body == nil and not ep.open_body and type(ep.params) == "table" and type(ep.path_params) == "table"
    and #ep.params == #ep.path_params
  if simple then
    for _, p in ipairs(ep.params) do
      if p["in"] ~= "path" or p.type ~= "string" or not p.required or is_secret_name(p.name) then simple = false end
      for k in pairs(p) do
        if not SIMPLE_PARAM_KEYS[k] then simple = false end
      end
    end
  end
  simple_eps[ep] = simple
  return simple
end

function _M.endpoint(self, ep, pv, params, opts, extra)
  if params == nil and extra == nil and pv ~= nil and not (opts and (opts.idempotency_key or opts.extra))
     and is_simple(ep) then
    local ok = true
    for _, name in ipairs(ep.path_params) do
      local v = pv[name]
      if type(v) ~= "string" or v == "" or (string_find(v, ".", 1, true) and dot_segment(v)) then
        ok = false; break
      end
    end
    if ok then
      local spec = { method = ep.method, path = fill_path(ep.path, pv), opts = opts, fname = ep.name,
                     argn = #ep.path_params + 1, level = 4 }
      local result, meta = send(self, spec)     -- not a tail call: error levels count this frame
      return result, meta
    end
  end
  if opts and opts.idempotency_key and not ep.idempotency then
    -- 1 = call.endpoint, 2 = the resource method, 3 = its caller
    argerror(#ep.path_params + (params ~= nil and 2 or 1), ep.name,
      "opts.idempotency_key: the API takes an idempotency key only on jobs:create", 3)
  end
  local all = {}
  for k, v in pairs(params or {}) do all[k] = v end
  for k, v in pairs(pv or {}) do all[k] = v end
  local details = validate.check(ep, all, { null = json.null, is_array = json.is_array, unknown = "error" })
  details = details or {}
  for _, name in ipairs(ep.path_params) do
    if all[name] == "" then
      details[#details + 1] = { type = "string_too_short", loc = { "path", name },
        msg = "String should have at least 1 character", input = "", ctx = { min_length = 1 } }
    elseif dot_segment(all[name]) then
      details[#details + 1] = dot_problem(name, all[name])
    end
  end
  -- secret parameters (webhook_secret, ...) stay secrets for the client's life,
  -- whatever their type (a number given by mistake too)
  local extra_secrets = {}
  for k, v in pairs(all) do
    if errors.is_secret_key(k) then
      errors.add_secrets(self, v)
      extra_secrets[#extra_secrets + 1] = v
    end
  end
  if #details > 0 then
    return nil, pipeline.redact(self, validation_error(details), extra_secrets)
  end

  local path = fill_path(ep.path, pv)
  local query, body, form = {}, nil, nil
  if ep.body == "json" then body = {} end
  for k, v in pairs(all) do
    local p = ep.by_param[k]
    local where = p and p["in"] or (ep.body == "json" and "body") or (ep.body == "multipart" and "form")
      or "query"
    if where == "query" then query[k] = v
    elseif where == "body" then body = body or {}; body[k] = v
    elseif where == "form" then form = form or {}; form[k] = v
    end
  end
  -- opts.extra: as given, unvalidated (multipart: already in the mime parts)
  for k, v in pairs(opts and opts.extra or {}) do
    if errors.is_secret_key(k) then
      errors.add_secrets(self, v)
      extra_secrets[#extra_secrets + 1] = v
    end
    if ep.body == "json" then body[k] = v
    elseif ep.body == nil then query[k] = v
    end
  end
  local spec = {
    method = ep.method, path = path, query = query, body = body, opts = opts,
    secrets = extra_secrets, fname = ep.name, argn = #ep.path_params + 1,
    -- 1 send, 2 here, 3 the resource method (plus extra.frames helpers between), then its caller
    level = 4 + (extra and extra.frames or 0),
  }
  if extra and extra.mime then spec.mime = extra.mime; spec.body = nil end
  if extra and extra.output then spec.output = extra.output end
  if extra and extra.url then spec.url = extra.url end
  if ep.idempotency and body and body[ep.idempotency] ~= nil then spec.idempotent = true end
  local result, meta = send(self, spec)     -- not a tail call: error levels count this frame
  return result, meta
end

return _M
