-- ugen.resources: resource objects built from the endpoint table.
--
-- For every entry of ugen.endpoints a method is generated on
-- client.<resource>, with one calling convention:
--   resource:name(<path params as strings...>[, params][, opts])
-- `params` (a table of the endpoint's query/body/form fields) is there only
-- when the endpoint has such fields; `opts` is the per-call options table
-- ({timeout=, connect_timeout=, headers=, max_retries=, idempotency_key=,
-- extra = {field = value} (sent as given, not validated)}).
-- Envelope-paginated endpoints also get two iterators: over the items, `list`
-- -> `each`, any other name -> `each_<name without a final s>`
-- (credits:each_transaction); over whole pages, `list` -> `pages`, any other
-- name -> `<name without a final s>_pages` (credits:transaction_pages).
-- Multipart endpoints take files as `file = "path"` or
-- `file = {path = | data =, filename =, content_type =}` (data: the bytes as
-- a Lua string). Before anything is sent the file is checked against the
-- endpoint's table entry: readable, not empty, at most max_bytes, and its
-- content (magic bytes, ugen.media.sniff; never the name) one of `formats`;
-- a given content_type must name that same format. A failed check is
-- nil, err{kind = "validation", code = "EMPTY_FILE" | "FILE_TOO_LARGE" |
-- "UNSUPPORTED_FILE_TYPE" | "FILE_UNREADABLE" | "INVALID_FILE", fields = {...}}
-- and no request. Without content_type the part carries the format's
-- canonical type (image/png, audio/mpeg, ...); without filename, the path's
-- base name or "file.<ext>".
-- Modules ugen.resources.<resource> add hand-written methods on top.

local argerror = require("ugen.args").argerror
local endpoints = require "ugen.endpoints"
local call = require "ugen.call"
local media = require "ugen.media"
local validate = require "ugen.validate"

local type, pairs, ipairs, select, tostring, tonumber, error, setmetatable, pcall, require =
  type, pairs, ipairs, select, tostring, tonumber, error, setmetatable, pcall, require
local string_format, string_match, string_find = string.format, string.match, string.find
local table_concat = table.concat
local io_open = io.open

local check_call_opts, call_endpoint = call.check_call_opts, call.endpoint

local _M = { _VERSION = "0.1.0" }

local client_of = call.client_of

-- Per endpoint, computed once: whether the method takes a params table, and
-- whether that table is required (the endpoint tables never change).
local shapes = setmetatable({}, { __mode = "k" })

local function shape_of(ep)
  local sh = shapes[ep]
  if sh then return sh end
  sh = { takes = ep.open_body and true or false, required = false }
  for _, p in ipairs(ep.params) do
    if p["in"] ~= "path" then
      sh.takes = true
      if p.required then sh.required = true end
    end
  end
  shapes[ep] = sh
  return sh
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
  local sh = shape_of(ep)
  if sh.takes then
    params, opts = select(np + 1, ...)
    if params == nil and sh.required then
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

local FORMAT_ORDER = { "jpeg", "png", "webp", "gif", "svg", "mp3", "wav", "ogg", "aac", "m4a" }

local function allowed_list(formats)
  local names = {}
  for _, f in ipairs(FORMAT_ORDER) do
    if formats[f] then names[#names + 1] = media.name[f] end
  end
  for f in pairs(formats) do
    if not media.name[f] then names[#names + 1] = f end
  end
  if #names <= 1 then return names[1] or "" end
  return table_concat(names, ", ", 1, #names - 1) .. " or " .. names[#names]
end

-- First bytes and size of a file -> head, size | nil, message
local function read_head(path)
  local f, oerr = io_open(path, "rb")
  if not f then return nil, oerr end
  local head, rerr = f:read(media.SNIFF_BYTES)
  if head == nil and rerr then f:close(); return nil, rerr end
  local size, serr = f:seek("end")
  f:close()
  if not size then return nil, serr end
  return head or "", size
end

local FILE_KEYS = { path = true, data = true, filename = true, content_type = true, type = true }

-- Check one file value against its parameter spec (formats, max_bytes) and
-- turn it into a core mime part. The format comes from the content (media.sniff),
-- never from the file name. -> part | nil, detail
local function file_part(p, v)
  local function bad(code, msg, input, ctx)
    ctx = ctx or {}
    ctx.error = code
    return nil, { type = "value_error", loc = { "body", p.name }, msg = "Value error, " .. msg,
                  input = input, ctx = ctx }
  end
  local spec = type(v) == "string" and { path = v } or v
  if type(spec) ~= "table" then
    return bad("INVALID_FILE", "expected a file path or {path = | data = [, filename =, content_type =]}", v)
  end
  for k in pairs(spec) do
    if not FILE_KEYS[k] then return bad("INVALID_FILE", "unknown file option '" .. tostring(k) .. "'", spec) end
  end
  local declared = spec.content_type or spec.type
  if declared ~= nil and type(declared) ~= "string" then
    return bad("INVALID_FILE", "content_type must be a string", declared)
  end
  if spec.filename ~= nil and (type(spec.filename) ~= "string" or spec.filename == ""
                               or string_find(spec.filename, "[\r\n%z]")) then
    return bad("INVALID_FILE", "filename must be a non-empty string without line breaks", spec.filename)
  end
  local part = { name = p.name, filename = spec.filename }
  local head, size, input
  if spec.data ~= nil and spec.path ~= nil then
    return bad("INVALID_FILE", "give either path or data, not both", spec.path)
  elseif type(spec.data) == "string" then
    part.data, head, size = spec.data, spec.data, #spec.data
    input = spec.filename or "<data>"
  elseif type(spec.path) == "string" then
    local herr
    head, herr = read_head(spec.path)
    if not head then return bad("FILE_UNREADABLE", "file cannot be read: " .. tostring(herr), spec.path) end
    size = herr
    part.path = spec.path
    part.filename = part.filename or basename(spec.path)
    input = spec.path
  else
    return bad("INVALID_FILE", "expected a file path or {path = | data = [, filename =, content_type =]}", v)
  end
  if size == 0 then return bad("EMPTY_FILE", "the file is empty", input) end
  if p.max_bytes and size > p.max_bytes then
    return bad("FILE_TOO_LARGE", string_format("the file is %d bytes; the limit is %d bytes (%g MB)",
      size, p.max_bytes, p.max_bytes / (1024 * 1024)), input, { max_bytes = p.max_bytes, size_bytes = size })
  end
  local fmt = media.sniff(head)
  local formats = p.formats or {}
  if not fmt then
    return bad("UNSUPPORTED_FILE_TYPE", "unsupported file type: the content is not " .. allowed_list(formats)
      .. " (recognised by its first bytes)", input, { allowed = allowed_list(formats) })
  end
  if not formats[fmt] then
    return bad("UNSUPPORTED_FILE_TYPE", string_format("unsupported file type %s; allowed: %s",
      media.name[fmt], allowed_list(formats)), input, { allowed = allowed_list(formats), format = fmt })
  end
  if declared and string_match(declared:lower(), "^%s*application/octet%-stream%s*$") then
    declared = nil -- "unknown type": the content decides, as on the server
  end
  if declared then
    if media.format_of_type(declared) ~= fmt then
      return bad("UNSUPPORTED_FILE_TYPE", string_format("content_type '%s' does not match the content (%s)",
        declared, media.name[fmt]), input, { format = fmt })
    end
    part.type = declared
  else
    part.type = formats[fmt]
  end
  part.filename = part.filename or (p.name .. "." .. (fmt == "jpeg" and "jpg" or fmt))
  return part
end

-- Build the core's mime list from form params; nil, detail-list on a local
-- problem (file missing, empty, too large, wrong type), in the server's 422 shape.
local function build_mime(ep, form)
  local parts, details = {}, {}
  for _, p in ipairs(ep.params) do
    local v = form[p.name]
    if v ~= nil and p.type == "file" then
      local part, detail = file_part(p, v)
      if part then parts[#parts + 1] = part else details[#details + 1] = detail end
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
_M.build_mime = build_mime

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
      if not mime then
        -- report the other problems of the call (e.g. a missing title) too
        local all, details = {}, {}
        for k, v in pairs(params or {}) do all[k] = v end
        for k, v in pairs(pv) do all[k] = v end
        for _, d in ipairs(validate.check(ep, all, { unknown = "error" }) or {}) do
          if d.loc[2] ~= "file" then details[#details + 1] = d end
        end
        for _, d in ipairs(merr) do details[#details + 1] = d end
        local err = call.validation_error(details)
        local first = merr[1]
        if first.ctx and first.ctx.error then
          err.code = first.ctx.error
          if #details == 1 then
            err.message = "upload rejected before sending: " .. first.msg:gsub("^Value error, ", "")
          end
        end
        return nil, err
      end
      -- opts.extra: text parts, as given
      for k, v in pairs(opts and opts.extra or {}) do mime[#mime + 1] = { name = k, data = tostring(v) } end
      extra = { mime = mime }
    end
    local r, e = call_endpoint(client, ep, pv, params, opts, extra)
    return r, e
  end
end

local function each_name(ep)
  if ep.name == "list" then return "each" end
  return "each_" .. (string_match(ep.name, "^(.-)s$") or ep.name)
end
_M.each_name = each_name

local function pages_name(ep)
  if ep.name == "list" then return "pages" end
  return (string_match(ep.name, "^(.-)s$") or ep.name) .. "_pages"
end
_M.pages_name = pages_name

-- The arguments of an iterator (each / pages), checked at the caller
-- (level 3 from here) -> client, params copy, per-call opts, error mode
local function iterator_args(self, ep, fname, params, opts)
  local client = client_of(self, ep)
  if params ~= nil and type(params) ~= "table" then
    argerror(1, fname, "table expected, got " .. type(params), 3)
  end
  local mode = "raise"
  if type(opts) == "table" and opts.errors ~= nil then
    mode = opts.errors
    if mode ~= "raise" and mode ~= "yield" then
      argerror(2, fname, "opts.errors must be \"raise\" or \"yield\"", 3)
    end
    local o = {}
    for k, v in pairs(opts) do if k ~= "errors" then o[k] = v end end
    opts = o
  end
  check_call_opts(opts, 2, fname, 3)
  local p = {}
  for k, v in pairs(params or {}) do p[k] = v end
  return client, p, opts, mode
end

-- The one page walk behind each and pages: a function returning the next
-- page (the decoded envelope), nil at the end, or false, err for a failed
-- page (raised instead in mode "raise"; either way the walk then ends).
-- Paging stops at total_pages, at an empty `items` (never returned), or at a
-- short page when total_pages is absent.
local function page_walker(client, ep, p, opts, mode)
  local page = tonumber(p.page) or 1
  local done = false
  return function()
    if done then return nil end
    p.page = page
    local res, err = call_endpoint(client, ep, {}, p, opts)
    if not res then
      done = true
      if mode == "raise" then error(err, 0) end
      return false, err
    end
    local items = res.items
    if type(items) ~= "table" or #items == 0 then
      done = true
      return nil
    end
    local tp = tonumber(res.total_pages)
    local size = tonumber(res.page_size) or tonumber(p.page_size) or 20
    if (tp and page >= tp) or (not tp and #items < size) then done = true end
    page = page + 1
    return res
  end
end

-- Iterator over every item of every page of an envelope endpoint:
--   for item in resource:each{page_size = 100} do ... end
-- A failed page raises its structured error (the ugen error table: pcall
-- callers read err.kind, err.status) from the loop. With
-- opts.errors = "yield" it is yielded instead, as (false, err) once, then the
-- loop ends:
--   for item, err in resource:each({page_size = 100}, {errors = "yield"}) do
--     if not item then <handle err>; break end
--   end
-- The other opts are per-call options of every page.
local function make_each(ep)
  local fname = each_name(ep)
  return function(self, params, opts)
    local client, p, o, mode = iterator_args(self, ep, fname, params, opts)
    local next_page = page_walker(client, ep, p, o, mode)
    local items, idx = nil, 0
    return function()
      while true do
        if items and idx < #items then
          idx = idx + 1
          return items[idx]
        end
        local res, err = next_page()
        if not res then return res, err end
        items, idx = res.items, 0
      end
    end
  end
end

-- Iterator over the pages themselves, same arguments and error behaviour as each:
--   for page in resource:pages{page_size = 50} do
--     -- page.items, page.total, page.page, page.page_size, page.total_pages
--   end
local function make_pages(ep)
  local fname = pages_name(ep)
  return function(self, params, opts)
    local client, p, o, mode = iterator_args(self, ep, fname, params, opts)
    return page_walker(client, ep, p, o, mode)
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
      if ep.paging == "envelope" then
        r[each_name(ep)] = make_each(ep)
        r[pages_name(ep)] = make_pages(ep)
      end
    end
    local special = special_for(rname)
    if special then special.extend(r, eps) end
    client[rname] = setmetatable(r, { __name = "ugen.resource", __tostring = function()
      return "ugen.resource(" .. rname .. ")"
    end })
  end
end

return _M
