-- ugen.transport.body_sink: where the ngx transport puts a response body.
--
--   body_sink.new(output, append, opts) -> sink
--     output nil: the body is kept in memory, at most opts.max bytes;
--     output = path (a 2xx with req.output): the body is written to that file
--       through the C core's output_* functions, as the curl engine writes it:
--       never through a symbolic link, hard link, FIFO or device at that name
--       (such an entry is replaced by a new regular file, never resumed). The
--       file is created, or cut to opts.keep bytes when append, on the first
--       write (or at finish for an empty body).
--     opts: { on_progress = fn(dltotal, dlnow, ultotal, ulnow), total = the
--       announced length, upload = request body bytes, low = low_speed_time
--       (kept as sink.low for the reader), max = cap of a memory body, keep }
--   sink.size                 bytes written so far
--   sink.max                  the memory cap (nil for a file)
--   sink.fits(n)              n more bytes stay under the cap
--   sink.progress()           calls on_progress -> true | nil, message, "ABORTED"
--   sink.write(data)          -> true | nil, message, code ("IO", "TOO_LARGE",
--                             "ABORTED": on_progress returned false or raised)
--   sink.finish()             -> true, body (memory) | true, nil (file) | nil, message
--   sink.abort()
--   body_sink.too_large_message(max) -> "response body larger than N bytes"

local pcall, require, tostring = pcall, require, tostring
local concat = table.concat

local _M = { _VERSION = "0.1.0" }

function _M.too_large_message(max)
  return "response body larger than " .. max .. " bytes"
end

-- the C core writes output files (no symbolic links followed); loaded on first use
local function core() return require "ugen.native" end

function _M.new(output, append, opts)
  local s = { size = 0, low = opts.low }
  local max = not output and opts.max or nil
  s.max = max
  function s.fits(n) return max == nil or s.size + n <= max end
  local on_progress = opts.on_progress
  local function progress()
    if not on_progress then return true end
    local ok, r = pcall(on_progress, opts.total or 0, s.size, opts.upload or 0, opts.upload or 0)
    if not ok then return nil, "aborted: the progress callback raised: " .. tostring(r), "ABORTED" end
    if r == false then return nil, "aborted by the progress callback", "ABORTED" end
    return true
  end
  s.progress = progress
  if not output then
    local buf = {}
    function s.write(data)
      if max and s.size + #data > max then return nil, _M.too_large_message(max), "TOO_LARGE" end
      buf[#buf + 1] = data
      s.size = s.size + #data
      return progress()
    end
    function s.finish() return true, concat(buf) end
    function s.abort() end
    return s
  end
  -- The file is (re)created or cut to `keep` bytes once, then appended to
  -- chunk by chunk; every step refuses anything but a regular file with one
  -- link at that name (see core.output_prepare / output_append).
  local ready = false
  local function prepare()
    ready = true
    return core().output_prepare(output, append and opts.keep or 0)
  end
  function s.write(data)
    if data == "" then return true end
    if not ready then
      local ok, perr = prepare()
      if not ok then return nil, perr, "IO" end
    end
    local ok, werr = core().output_append(output, data)
    if not ok then return nil, werr, "IO" end
    s.size = s.size + #data
    return progress()
  end
  function s.finish()
    if not ready then
      local ok, perr = prepare()
      if not ok then return nil, perr end
    end
    return true, nil
  end
  function s.abort() end
  return s
end

return _M
