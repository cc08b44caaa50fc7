-- ugen.resources: resource objects built from the endpoint table.
--
-- For every entry of ugen.endpoints a method is generated on
-- client.<resource>, with one calling convention:
--   resource:name(<path params as strings...>[, params][, opts])
-- `params` (a table of the endpoint's query/body/form fields) is there only
-- when the endpoint has such fields; `opts` is the per-call options table
-- ({timeout=, connect_timeout=, headers=, max_retries=, idempotency_key=}).
-- Envelope-paginated endpoints also get an iterator: `list` -> `each`, any
-- other name -> `each_<name without a final s>` (credits:each_transaction).
-- Multipart endpoints take files as `file = "path"` or
-- `file = {path = | data =, filename =, content_type =}`.
-- Modules ugen.resources.<resource> add hand-written methods on top.

local endpoints = require "ugen.endpoints"
local client_mod = require "ugen.client"
local errors = require "ugen.errors"

local type, pairs, ipairs, select, tostring, tonumber, error, setmetatable, pcall, require =
  type, pairs, ipairs, select, tostring, tonumber, error, setmetatable, pcall, require
local string_format, string_match, string_lower = string.format, string.match, string.lower
local io_open = io.open

local argerror, check_call_opts = client_mod.argerror, client_mod.check_call_opts

local _M = { _VERSION = "0.1.0" }

-- self check: catches client.jobs.get(id) (dot instead of colon)
local function client_of(self, ep)
  if type(self) ~= "table" or type(self._client) ~= "table" then
    error(string_format("ugen: call %s:%s(...) with a colon (client.%s:%s)",
      ep.resource, ep.name, ep.resource, ep.name), 3)
  end
  return self._client
end
_M.client_of = client_of

local function takes_params(ep)
  if ep.open_body then return true end
  for _, p in ipairs(ep.params) do
    if p["in"] ~= "path" then return true end
  end
  return false
end

local function params_required(ep)
  for _, p in ipairs(ep.params) do
    if p["in"] ~= "path" and p.required then return true end
  end
  return false
end

-- Parse the arguments of a generated method; raises at the method's caller
-- (level 3 from here: 1 = parse_args, 2 = the method, 3 = user code).
local function parse_args(ep, ...)
  local pv = {}
  for i, name in ipairs(ep.path_params) do
    local v = select(i, ...)
    if type(v) ~= "string" then argerror(i, ep.name, "string expected, got " .. type(v), 3) end
    pv[name] = v
  end
  local np = #ep.path_params
  local params, opts, opts_n
  if takes_params(ep) then
    params, opts = select(np + 1, ...)
    if params == nil and params_required(ep) then
      argerror(np + 1, ep.name, "table expected, got nil", 3)
    elseif params ~= nil and type(params) ~= "table" then
      argerror(np + 1, ep.name, "table expected, got " .. type(params), 3)
    end
    opts_n = np + 2
  else
    opts = select(np + 1, ...)
    opts_n = np + 1
  end
  check_call_opts(opts, opts_n, ep.name, 3)
  return pv, params, opts
end
_M.parse_args = parse_args

---------------------------------------------------------------------------
-- multipart

local function basename(path) return string_match(path, "([^/\\]+)$") or path end

local function ext_type(filename)
  local ext = string_match(filename or "", "%.([%w]+)$")
  if not ext then return nil end
  ext = string_lower(ext)
  if ext == "jpg" then ext = "jpeg" end
  return endpoints.image_types[ext] or endpoints.audio_types[ext]
end

local function file_size(path)
  local f = io_open(path, "rb")
  if not f then return nil end
  local size = f:seek("end")
  f:close()
  return size
end

-- Build the core's mime list from form params; nil, detail-list on a local
-- problem (file missing, too large), in the server's 422 shape.
local function build_mime(ep, form)
  local parts, details = {}, {}
  for _, p in ipairs(ep.params) do
    local v = form[p.name]
    if v ~= nil and p.type == "file" then
      local spec = type(v) == "string" and { path = v } or v
      local part = { name = p.name, filename = spec.filename, type = spec.content_type or spec.type }
      local size
      if type(spec.data) == "string" then
        part.data = spec.data
        size = #spec.data
        part.filename = part.filename or p.name
      elseif type(spec.path) == "string" then
        part.path = spec.path
        size = file_size(spec.path)
        part.filename = part.filename or basename(spec.path)
        if not size then
          details[#details + 1] = { type = "value_error", loc = { "body", p.name },
            msg = "Value error, file cannot be read: " .. spec.path, input = spec.path }
        end
      else
        details[#details + 1] = { type = "value_error", loc = { "body", p.name },
          msg = "Value error, Expected a file path or {path=|data=}", input = v }
      end
      part.type = part.type or ext_type(part.filename) or "application/octet-stream"
      if size and p.max_bytes and size > p.max_bytes then
        details[#details + 1] = { type = "value_error", loc = { "body", p.name },
          msg = string_format("Value error, file is %d bytes; the limit is %d", size, p.max_bytes),
          input = part.filename, ctx = { max_bytes = p.max_bytes } }
      end
      parts[#parts + 1] = part
    end
  end
  for k, v in pairs(form) do
    local p = ep.by_param[k]
    if not (p and p.type == "file") then
      if type(v) == "table" then
        details[#details + 1] = { type = "string_type", loc = { "body", k },
          msg = "Input should be a valid string", input = v }
      else
        parts[#parts + 1] = { name = k, data = tostring(v) }
      end
    end
  end
  if #details > 0 then return nil, details end
  return parts
end

---------------------------------------------------------------------------
-- generated methods

local function make_method(ep)
  return function(self, ...)
    local client = client_of(self, ep)
    local pv, params, opts = parse_args(ep, ...)
    local extra
    if ep.body == "multipart" then
      local form = {}
      for k, v in pairs(params or {}) do
        local p = ep.by_param[k]
        if not p or p["in"] == "form" then form[k] = v end
      end
      local mime, merr = build_mime(ep, form)
      if not mime then return nil, client_mod.validation_error(merr) end
      extra = { mime = mime }
    end
    local r, e = client:_call(ep, pv, params, opts, extra)
    return r, e
  end
end

local function each_name(ep)
  if ep.name == "list" then return "each" end
  return "each_" .. (string_match(ep.name, "^(.-)s$") or ep.name)
end
_M.each_name = each_name

-- Iterator over every item of every page of an envelope endpoint:
--   for item, err in resource:each{page_size = 100} do
--     if not item then <handle err>; break end
--   end
-- A failed page yields (false, err) once, then the loop ends. Paging stops at
-- total_pages, at an empty `items`, or at a short page when total_pages is absent.
local function make_each(ep)
  local fname = each_name(ep)
  return function(self, params, opts)
    local client = client_of(self, ep)
    if params ~= nil and type(params) ~= "table" then
      argerror(1, fname, "table expected, got " .. type(params), 2)
    end
    check_call_opts(opts, 2, fname, 2)
    local p = {}
    for k, v in pairs(params or {}) do p[k] = v end
    local page = tonumber(p.page) or 1
    local items, idx, done = nil, 0, false
    return function()
      while true do
        if items and idx < #items then
          idx = idx + 1
          return items[idx]
        end
        if done then return nil end
        p.page = page
        local res, err = client:_call(ep, {}, p, opts)
        if not res then
          done = true
          return false, err
        end
        items, idx = res.items, 0
        if type(items) ~= "table" or #items == 0 then
          done = true
          return nil
        end
        local tp = tonumber(res.total_pages)
        local size = tonumber(res.page_size) or tonumber(p.page_size) or 20
        if (tp and page >= tp) or (not tp and #items < size) then done = true end
        page = page + 1
      end
    end
  end
end

-- ugen.resources.<name> modules with hand-written methods (false: none), looked up once
local specials = {}
local function special_for(rname)
  local s = specials[rname]
  if s == nil then
    local ok, mod = pcall(require, "ugen.resources." .. rname)
    if ok then
      s = mod
    elseif tostring(mod):find("module 'ugen.resources." .. rname .. "' not found", 1, true) then
      s = false
    else
      error(mod, 0)
    end
    specials[rname] = s
  end
  return s
end

-- Build client.<name> for every resource of the endpoint table.
function _M.attach(client)
  for rname, eps in pairs(endpoints.by_resource) do
    local r = { _client = client, name = rname }
    for _, ep in pairs(eps) do
      r[ep.name] = make_method(ep)
      if ep.paging == "envelope" then r[each_name(ep)] = make_each(ep) end
    end
    local special = special_for(rname)
    if special then special.extend(r, eps) end
    client[rname] = setmetatable(r, { __name = "ugen.resource", __tostring = function()
      return "ugen.resource(" .. rname .. ")"
    end })
  end
end

_M.errors = errors
return _M
