-- ugen_sandbox_server.multipart: a strict multipart/form-data parser (RFC 7578) for
-- whole in-memory bodies, and content sniffing for the upload formats.
--
--   multipart.boundary(content_type) -> boundary | nil
--   multipart.parse(body, boundary) -> { [name] = part } | nil, message
--     part = { name =, filename = (nil for plain fields), content_type =, data = }
--   multipart.sniff(data) -> format key ("png", "jpeg", "gif", "webp", "svg",
--     "mp3", "wav", "ogg", "aac", "m4a") | nil   (= ugen.media.sniff)

local media = require "ugen.media"

local _M = {}

local find, sub, lower = string.find, string.sub, string.lower

function _M.boundary(content_type)
  if type(content_type) ~= "string" then return nil end
  if not lower(content_type):match("^%s*multipart/form%-data%s*;") then return nil end
  local b = content_type:match('[Bb][Oo][Uu][Nn][Dd][Aa][Rr][Yy]%s*=%s*"([^"]+)"')
    or content_type:match("[Bb][Oo][Uu][Nn][Dd][Aa][Rr][Yy]%s*=%s*([^%s;]+)")
  if not b or #b > 200 then return nil end
  return b
end

local function parse_headers(block)
  local h = {}
  for line in (block .. "\r\n"):gmatch("(.-)\r\n") do
    local name, value = line:match("^([%w%-]+)%s*:%s*(.-)%s*$")
    if name then h[lower(name)] = value end
  end
  return h
end

local function disposition_param(value, key)
  return value:match(";%s*" .. key .. '%s*=%s*"([^"]*)"') or value:match(";%s*" .. key .. "%s*=%s*([^;%s]+)")
end

function _M.parse(body, boundary)
  local delim = "--" .. boundary
  local pos = find(body, delim, 1, true)
  if not pos then return nil, "multipart body has no boundary line" end
  local parts = {}
  pos = pos + #delim
  while true do
    if sub(body, pos, pos + 1) == "--" then break end -- closing delimiter
    if sub(body, pos, pos + 1) ~= "\r\n" then return nil, "malformed multipart delimiter line" end
    pos = pos + 2
    local hend = find(body, "\r\n\r\n", pos, true)
    if not hend then return nil, "multipart part without header end" end
    local headers = parse_headers(sub(body, pos, hend - 1))
    local dstart = hend + 4
    local nextd = find(body, "\r\n" .. delim, dstart, true)
    if not nextd then return nil, "multipart body is not terminated" end
    local cd = headers["content-disposition"]
    if not cd or not lower(cd):match("^%s*form%-data") then
      return nil, "multipart part without form-data Content-Disposition"
    end
    local name = disposition_param(cd, "name")
    if not name then return nil, "multipart part without a name" end
    if parts[name] == nil then -- the first part of a name wins
      parts[name] = {
        name = name,
        filename = disposition_param(cd, "filename"),
        content_type = headers["content-type"],
        data = sub(body, dstart, nextd - 1),
      }
    end
    pos = nextd + 2 + #delim
  end
  return parts
end

-- Content sniffing and Content-Type aliases are shared with the SDK's
-- checks before sending (lua/ugen/media.lua), so both accept the same files.
_M.sniff = media.sniff
_M.mime_alias = media.alias

_M.extension = { png = "png", jpeg = "jpg", gif = "gif", webp = "webp", svg = "svg",
                 mp3 = "mp3", wav = "wav", ogg = "ogg", aac = "aac", m4a = "m4a" }

return _M
