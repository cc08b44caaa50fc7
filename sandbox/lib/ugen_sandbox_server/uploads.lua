-- ugen_sandbox_server.uploads: multipart uploads (avatar, brand logo, product image,
-- custom music): parsing, the endpoint's formats and size limits (the format
-- is sniffed by the SDK's own lua/ugen/media.lua rules), storage under DIR/files/.

local validate = require "ugen.validate"
local util = require "ugen_sandbox_server.util"
local multipart = require "ugen_sandbox_server.multipart"
local state = require "ugen_sandbox_server.state"
local clock = require "ugen_sandbox_server.clock"
local http = require "ugen_sandbox_server.http"

local ngx = ngx
local type, pairs, ipairs = type, pairs, ipairs
local concat, sort = table.concat, table.sort
local array = util.array
local E = http.error_response

local _M = {}

local UPLOAD_MAX = 21 * 1024 * 1024      -- multipart bodies (nginx client_max_body_size)

--- Parse and validate the multipart request of endpoint ep -> parts | nil, resp.
function _M.parse(ep)
  local ct = ngx.var.http_content_type
  local boundary = multipart.boundary(ct)
  if not boundary then
    return nil, E(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be multipart/form-data with a boundary")
  end
  local data, resp = http.read_body(UPLOAD_MAX)
  if not data then return nil, resp end
  local parts, err = multipart.parse(data, boundary)
  if not parts then return nil, E(400, "INVALID_MULTIPART", "Malformed multipart body: " .. err) end
  local params = {}
  for _, p in ipairs(ep.params) do
    local part = parts[p.name]
    if part then
      if p.type == "file" then params[p.name] = part else params[p.name] = part.data end
    end
  end
  local details = validate.check(ep, params, { body = {} })
  if details then
    for _, d in ipairs(details) do
      if type(d.input) == "table" and d.input.data then d.input = d.input.filename or "<file>" end
    end
    return nil, http.unprocessable(details)
  end
  return parts
end

--- Check the file part against the endpoint's formats and size; store it under
-- DIR/files/<tenant>/<kind>/ -> record { id, url, filename, content_type,
-- size_bytes, created_at } | nil, resp.
function _M.store(T, ep, part, kind)
  local spec = ep.by_param.file
  if not part.filename then
    return nil, E(400, "INVALID_FILE", "The file field must be a file upload (with a filename)")
  end
  local allowed = {}
  for k in pairs(spec.formats) do allowed[#allowed + 1] = k end
  sort(allowed)
  if #part.data == 0 then return nil, E(400, "EMPTY_FILE", "The uploaded file is empty") end
  local declared = part.content_type and part.content_type:lower():match("^%s*([^;%s]+)")
  local declared_fmt = declared and multipart.mime_alias[declared]
  local sniffed = multipart.sniff(part.data)
  local fmt = sniffed
  if declared and declared ~= "application/octet-stream" and declared_fmt ~= sniffed then fmt = nil end
  if not fmt or not spec.formats[fmt] then
    return nil, E(400, "UNSUPPORTED_FILE_TYPE",
      ("Unsupported file type%s; allowed: %s"):format(declared and (" '" .. declared .. "'") or "",
        concat(allowed, ", ")), { allowed = array(allowed), content_type = util.orNull(declared) })
  end
  if #part.data > spec.max_bytes then
    return nil, E(413, "FILE_TOO_LARGE", ("File too large: %d bytes (limit %d)"):format(#part.data, spec.max_bytes),
                  { max_bytes = spec.max_bytes, size_bytes = #part.data })
  end
  local id = util.uuid4()
  local rel = ("%s/%s/%s.%s"):format(T.tenant.id, kind, id, multipart.extension[fmt])
  local dir = state.cfg.dir .. "/files/" .. T.tenant.id .. "/" .. kind
  os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
  local f, ferr = io.open(state.cfg.dir .. "/files/" .. rel, "wb")
  if not f then
    ngx.log(ngx.ERR, "sandbox: cannot store upload: ", ferr)
    return nil, E(500, "INTERNAL_ERROR", "The sandbox could not store the file")
  end
  f:write(part.data)
  f:close()
  T.uploads = T.uploads + 1
  return { id = id, url = state.origin .. "/files/" .. rel, filename = part.filename,
           content_type = spec.formats[fmt], size_bytes = #part.data, created_at = clock.iso_now() }
end

return _M
