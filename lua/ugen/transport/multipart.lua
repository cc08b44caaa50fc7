-- ugen.transport.multipart: a multipart/form-data request body (RFC 7578)
-- for the ngx transport, laid out as curl's mime API lays it out.
--
--   multipart.build(parts) -> pieces, length, content_type | nil, message
--     parts: list of { name =, data = string | path = file, filename =,
--       type | content_type = }; a file part without a filename is named after
--       the file, a part with a filename defaults to application/octet-stream.
--     pieces: list of strings and { path =, size = } (file contents, streamed
--       from disk when sent); length: the body's total bytes.
-- Parameter values in Content-Disposition are escaped as curl does (CR, LF
-- and '"' as %0D, %0A, %22); line breaks are dropped from a part's type.

local type, ipairs, tostring, pcall, require = type, ipairs, tostring, pcall, require
local string_format, string_match, string_gsub = string.format, string.match, string.gsub
local concat, math_floor, math_random, io_open, os_time = table.concat, math.floor, math.random, io.open, os.time

local _M = { _VERSION = "0.1.0" }

-- curl-style escaping of a Content-Disposition parameter value
local function disp_escape(s)
  return (string_gsub(tostring(s), '[\r\n"]', { ["\r"] = "%0D", ["\n"] = "%0A", ['"'] = "%22" }))
end

local function basename(p) return string_match(p, "([^/\\]+)$") or p end

local function random_boundary()
  local ok, crypto = pcall(require, "ugen.crypto")
  if ok then
    local rok, b = pcall(crypto.random_bytes, 12)
    if rok and type(b) == "string" then return "------------------------ugen" .. crypto.hex(b) end
  end
  return string_format("------------------------ugen%08x%08x", os_time() % 0x7fffffff,
    math_floor(math_random() * 0x7fffffff))
end

function _M.build(parts)
  if type(parts) ~= "table" then return nil, "req.mime must be a list of parts" end
  local boundary = random_boundary()
  local pieces, total = {}, 0
  local function add(s) pieces[#pieces + 1] = s; total = total + #s end
  for i, p in ipairs(parts) do
    if type(p) ~= "table" or type(p.name) ~= "string" then
      return nil, "mime part #" .. i .. " has no name"
    end
    local h = { "--", boundary, "\r\nContent-Disposition: form-data; name=\"", disp_escape(p.name), "\"" }
    local filename = p.filename
    if filename == nil and p.path then filename = basename(p.path) end
    if filename then h[#h + 1] = "; filename=\"" .. disp_escape(filename) .. "\"" end
    h[#h + 1] = "\r\n"
    local ctype = p.type or p.content_type
    if ctype == nil and filename then ctype = "application/octet-stream" end
    if ctype then h[#h + 1] = "Content-Type: " .. string_gsub(tostring(ctype), "[\r\n]", "") .. "\r\n" end
    h[#h + 1] = "\r\n"
    add(concat(h))
    if p.path ~= nil then
      if type(p.path) ~= "string" then return nil, "mime part '" .. p.name .. "': path must be a string" end
      local f, ferr = io_open(p.path, "rb")
      if not f then return nil, "cannot open mime file: " .. tostring(ferr) end
      local size = f:seek("end")
      f:close()
      if not size then return nil, "cannot size mime file " .. p.path end
      pieces[#pieces + 1] = { path = p.path, size = size }
      total = total + size
    elseif type(p.data) == "string" then
      add(p.data)
    else
      return nil, "mime part '" .. p.name .. "' needs data (string) or path"
    end
    add("\r\n")
  end
  add("--" .. boundary .. "--\r\n")
  return pieces, total, "multipart/form-data; boundary=" .. boundary
end

return _M
