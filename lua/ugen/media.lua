-- ugen.media: upload file formats, shared by the SDK (checks before sending)
-- and the sandbox (server-side 400/413), so the two accept the same files.
--
--   media.sniff(head) -> format | nil
--       head: the first bytes of the file (media.SNIFF_BYTES are enough).
--       format: "png" | "jpeg" | "gif" | "webp" | "svg" | "mp3" | "wav" |
--               "ogg" | "aac" | "m4a", recognised by magic numbers:
--         png   89 50 4E 47 0D 0A 1A 0A
--         jpeg  FF D8 FF
--         gif   "GIF87a" | "GIF89a"
--         webp  "RIFF" <4 bytes> "WEBP"
--         wav   "RIFF" <4 bytes> "WAVE"
--         ogg   "OggS"
--         m4a   <4 bytes> "ftyp" (ISO base media: M4A, MP4 audio)
--         aac   "ADIF", or an ADTS frame header (12 sync bits, layer 00)
--         mp3   an MPEG audio frame header (11 sync bits, layer 1-3), or an
--               ID3v2 tag (the frame after the tag decides mp3 vs aac when it
--               lies within `head`)
--         svg   text (optional UTF-8 BOM and blanks) starting with "<?xml",
--               "<!--", "<!DOCTYPE svg" or "<svg", with "<svg" within `head`
--   media.mime[format]     canonical Content-Type ("image/png", "audio/mpeg", ...)
--   media.alias[type]      a declared Content-Type (lowercase, no parameters)
--                          -> format, including common aliases (image/jpg, audio/x-wav, ...)
--   media.format_of_type(content_type) -> format | nil  (parameters and case ignored)
--   media.name[format]     display name ("PNG", "MP3", ...)
--   media.SNIFF_BYTES      4096

local endpoints = require "ugen.endpoints"

local sub, byte, find, lower, match = string.sub, string.byte, string.find, string.lower, string.match
local floor = math.floor
local type, pairs = type, pairs

local _M = { _VERSION = "0.1.0", SNIFF_BYTES = 4096 }

_M.mime = {}
for k, v in pairs(endpoints.image_types) do _M.mime[k] = v end
for k, v in pairs(endpoints.audio_types) do _M.mime[k] = v end

_M.alias = {
  ["image/png"] = "png", ["image/x-png"] = "png",
  ["image/jpeg"] = "jpeg", ["image/jpg"] = "jpeg", ["image/pjpeg"] = "jpeg",
  ["image/gif"] = "gif", ["image/webp"] = "webp", ["image/svg+xml"] = "svg",
  ["audio/mpeg"] = "mp3", ["audio/mp3"] = "mp3", ["audio/mpeg3"] = "mp3", ["audio/x-mpeg-3"] = "mp3",
  ["audio/wav"] = "wav", ["audio/x-wav"] = "wav", ["audio/wave"] = "wav", ["audio/vnd.wave"] = "wav",
  ["audio/ogg"] = "ogg", ["application/ogg"] = "ogg", ["audio/vorbis"] = "ogg", ["audio/opus"] = "ogg",
  ["audio/aac"] = "aac", ["audio/x-aac"] = "aac", ["audio/aacp"] = "aac",
  ["audio/mp4"] = "m4a", ["audio/x-m4a"] = "m4a", ["audio/m4a"] = "m4a",
}
for k, v in pairs(_M.mime) do _M.alias[v] = k end

_M.name = { png = "PNG", jpeg = "JPEG", gif = "GIF", webp = "WebP", svg = "SVG",
            mp3 = "MP3", wav = "WAV", ogg = "OGG", aac = "AAC", m4a = "M4A" }

function _M.format_of_type(ct)
  if type(ct) ~= "string" then return nil end
  local t = match(lower(ct), "^%s*([^;%s]+)")
  return t and _M.alias[t] or nil
end

-- MPEG audio frame header at position i: "mp3", "aac" (ADTS) or nil.
local function frame_at(s, i)
  local c1, c2 = byte(s, i, i + 1)
  if c1 ~= 0xFF or not c2 or c2 < 0xE0 then return nil end
  local layer = floor(c2 / 2) % 4            -- bits 2-1
  if c2 >= 0xF0 and layer == 0 then return "aac" end   -- ADTS: 12 sync bits, layer 00
  if layer == 0 then return nil end          -- reserved layer
  if floor(c2 / 8) % 4 == 1 then return nil end        -- reserved MPEG version
  return "mp3"
end

local function id3_end(s)
  -- ID3v2: "ID3" ver rev flags size(4 x 7 bits); a footer adds 10 bytes
  local b6, b7, b8, b9 = byte(s, 7, 10)
  if not b9 or b6 > 127 or b7 > 127 or b8 > 127 or b9 > 127 then return nil end
  local size = ((b6 * 128 + b7) * 128 + b8) * 128 + b9
  local flags = byte(s, 6)
  local footer = flags and floor(flags / 16) % 2 == 1 and 10 or 0
  return 10 + size + footer + 1
end

function _M.sniff(data)
  if type(data) ~= "string" then return nil end
  local b = sub(data, 1, 16)
  if sub(b, 1, 8) == "\137PNG\r\n\26\n" then return "png" end
  if sub(b, 1, 3) == "\255\216\255" then return "jpeg" end
  if sub(b, 1, 6) == "GIF87a" or sub(b, 1, 6) == "GIF89a" then return "gif" end
  if sub(b, 1, 4) == "RIFF" then
    local kind = sub(b, 9, 12)
    if kind == "WEBP" then return "webp" end
    if kind == "WAVE" then return "wav" end
    return nil
  end
  if sub(b, 1, 4) == "OggS" then return "ogg" end
  if sub(b, 5, 8) == "ftyp" then return "m4a" end
  if sub(b, 1, 4) == "ADIF" then return "aac" end
  if sub(b, 1, 3) == "ID3" then
    local i = id3_end(data)
    local after = i and frame_at(data, i)
    return after or "mp3"
  end
  local f = frame_at(b, 1)
  if f then return f end
  local head = lower(sub(data, 1, _M.SNIFF_BYTES))
  local s = 1
  if sub(head, 1, 3) == "\239\187\191" then s = 4 end
  s = find(head, "[^%s]", s) or s
  local start = sub(head, s, s + 13)
  if (sub(start, 1, 5) == "<?xml" or sub(start, 1, 4) == "<!--" or sub(start, 1, 13) == "<!doctype svg"
      or sub(start, 1, 4) == "<svg") and find(head, "<svg", s, true) then
    return "svg"
  end
  return nil
end

return _M
