-- Small files of every upload format (valid magic bytes; enough for the
-- SDK's and the sandbox's content sniffing, ugen.media), for the specs.
--
--   local samples = require "support.media_samples"
--   samples.png, samples.jpeg, ... samples.m4a     the bytes
--   samples.of(format, size)                       that format padded to `size` bytes
--   samples.FORMATS                                every format key, in a fixed order

local M = {}

M.FORMATS = { "png", "jpeg", "gif", "webp", "svg", "mp3", "wav", "ogg", "aac", "m4a" }

-- 1x1 PNG
M.png = "\137PNG\r\n\26\n\0\0\0\rIHDR\0\0\0\1\0\0\0\1\8\6\0\0\0\31\21\196\137\0\0\0\rIDATx\156c\248\15"
  .. "\4\0\9\251\3\253\227U\242\156\0\0\0\0IEND\174B`\130"
M.jpeg = "\255\216\255\224\0\16JFIF\0\1\1\0\0\1\0\1\0\0" .. ("\0"):rep(64) .. "\255\217"
M.gif = "GIF89a\1\0\1\0\128\0\0\0\0\0\255\255\255!\249\4\1\0\0\0\0,\0\0\0\0\1\0\1\0\0\2\2D\1\0;"
M.webp = "RIFF\36\0\0\0WEBPVP8L\24\0\0\0/\0\0\0\16\7\16\17\17\136\136\254\7\0"
M.svg = '<?xml version="1.0" encoding="UTF-8"?>\n'
  .. '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>\n'
M.mp3 = "ID3\3\0\0\0\0\0\0" .. "\255\251\144\100" .. ("\0"):rep(200)
M.wav = "RIFF\36\0\0\0WAVEfmt \16\0\0\0\1\0\1\0\68\172\0\0\136\88\1\0\2\0\16\0data\0\0\0\0"
M.ogg = "OggS\0\2\0\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\0\0\0\0\1\30\1vorbis" .. ("\0"):rep(32)
M.aac = "\255\241\80\128\2\31\252" .. ("\0"):rep(64)
M.m4a = "\0\0\0\32ftypM4A \0\0\2\0M4A mp42isom\0\0\0\8free" .. ("\0"):rep(32)

function M.of(format, size)
  local s = M[format]
  assert(s, "no sample for format " .. tostring(format))
  if format == "svg" then
    assert(size >= #s)
    return s .. ("<!-- pad -->"):rep(math.ceil((size - #s) / 12)):sub(1, size - #s)
  end
  return s .. ("\0"):rep(size - #s)
end

return M
