-- ugen.resources.download: client.jobs:download (hand-written: streaming,
-- resume, progress).
--
--   client.jobs:download(job_or_id, path[, opts]) -> info, meta | nil, err
--
-- job_or_id: a job table (uses its final_video_url) or a job id (fetched
-- with jobs:get first). The video is streamed by the transport straight to
-- `path .. ".part"` (with the default curl transport: libcurl writes it, the
-- body never becomes a Lua string), which is renamed to `path` only when the
-- whole file is there. So `path` is either absent/untouched or complete.
-- Nothing is written anywhere but `path .. ".part"` and, by the rename,
-- `path`: the .part is never written through a symbolic link, hard link or
-- other non-regular file planted there (such an entry is replaced, not
-- resumed), and rename() replaces a link at `path` instead of following it.
--
-- Complete means: the transfer ended cleanly (the transports fail a body
-- shorter than its Content-Length, a chunked body without its last chunk and
-- a connection reset) and the file's size is what the server announced:
--   200  its Content-Length (without one, the body ended at a clean close);
--   206  Content-Range "bytes <offset>-<last>/<total>": the file ends at
--        <last>, and at <total> when that is not "*".
-- Anything else is a broken transfer (retried, resuming).
--
-- Resume: when `path .. ".part"` already holds bytes (a transfer that broke
-- earlier in this call or in an earlier call), only the rest is requested
-- (`Range: bytes=<size>-`, libcurl appends). A server answer that cannot be
-- resumed (416, or a 200 where a 206 was asked for) starts over from byte 0,
-- once per call.
--
-- Failures: a broken transfer (network, timeout, stall, 5xx, 429) is retried
-- up to opts.max_retries (default: the client's) with backoff, each retry
-- resuming from the bytes already written; if it still fails the .part is
-- kept (err.part = its path, err.part_bytes = its size) so the next call
-- resumes. Any other failure (404, auth, a local file error, ...) removes the
-- .part. Either way nothing is written at `path`.
--
-- Local file problems are kind "io", never retried: the directory of `path`
-- missing (code NO_DIRECTORY; no directory is ever created) or `path` a
-- directory (IS_DIRECTORY), both found before anything is sent; a .part or
-- `path` that cannot be opened, written or renamed (IO_ERROR). A job without
-- final_video_url (not finished, failed) is kind "validation", code
-- NO_VIDEO, with err.job.
--
-- opts (all optional):
--   on_progress      function(done_bytes, total_bytes): called whenever either
--                    changes; done counts the bytes already in the .part, total
--                    is the whole file (nil while unknown). After a successful
--                    download the last call is (size, size). An error raised by it
--                    aborts the download and is re-raised (the .part is kept).
--   timeout          seconds one transfer attempt may take (default
--                    max(3600, client timeout))
--   connect_timeout  as for every call
--   headers          extra request headers (also on the jobs:get of an id); like
--                    the client's headers and credentials, sent only when the
--                    video is on the API's own origin
--   max_retries      retries of a broken transfer (default: the client's)
-- A transfer that receives nothing for the client's `timeout` seconds (under
-- 1 byte/s) is aborted as a timeout, then retried/resumed.
--
-- info = { path = path, size = <file bytes>, status = 200 | 206,
--          resumed_from = <bytes kept from before, or nil> }

local errors = require "ugen.errors"
local retry = require "ugen.retry"
local argerror = require("ugen.args").argerror
local call = require "ugen.call"
local pipeline = require "ugen.pipeline"
local url_mod = require "ugen.url"

local type, pairs, tostring, tonumber, error, pcall = type, pairs, tostring, tonumber, error, pcall
local string_match, math_max, math_floor = string.match, math.max, math.floor
local os_remove, os_rename, io_open = os.remove, os.rename, io.open

local check_call_opts = call.check_call_opts

local _M = { _VERSION = "0.1.0", MIN_TIMEOUT = 3600 }

local DOWNLOAD_OPTS = { on_progress = true, timeout = true, connect_timeout = true, headers = true,
                        max_retries = true }

-- Size of the .part when it may be resumed: a regular file with one link
-- (lstat: a symbolic link there is not followed); nil for anything else.
local function part_size(path)
  return require("ugen.native").output_size(path)
end

-- "bytes 100-199/1000" -> 100, 1000, 199 (total nil for "*"); nil when malformed
local function content_range(v)
  if type(v) ~= "string" then return nil end
  local first, last, total = string_match(v, "^%s*[Bb][Yy][Tt][Ee][Ss]%s+(%d+)%-(%d+)/([%d*]+)%s*$")
  first, last = tonumber(first), tonumber(last)
  if not first or last < first then return nil end
  return first, tonumber(total), last
end
_M.content_range = content_range

-- Local problems with `path` found before anything is sent: its directory
-- is missing or not a directory, or `path` is a directory -> err (kind "io")
-- | nil. (download never creates directories: a typo in the path must not
-- leave a stray directory tree behind.) "dir/." opens when dir is a
-- directory; errno 2 is ENOENT, 20 ENOTDIR.
local function path_problem(path)
  local f = io_open(path .. "/.", "rb")
  if f then
    f:close()
    return errors.new{ kind = "io", code = "IS_DIRECTORY", retryable = false, attempts = 0,
      message = "cannot write the download to " .. path .. ": it is a directory" }
  end
  local dir = string_match(path, "^(.*)/[^/]*$")
  if dir == nil or dir == "" then return nil end
  local d, _, errno = io_open(dir .. "/.", "rb")
  if d then d:close() end
  if errno ~= 2 and errno ~= 20 then return nil end
  return errors.new{ kind = "io", code = "NO_DIRECTORY", retryable = false, attempts = 0,
    message = "cannot write the download to " .. path .. ": the directory " .. dir
      .. (errno == 2 and " does not exist (download does not create directories: create it first)"
                      or " is not a directory") }
end

local function broken(message, code)
  return errors.new{ kind = "network", code = code or "INCOMPLETE_DOWNLOAD", retryable = true, message = message }
end

function _M.extend(r, eps)
  local client = r._client

  function r.download(self, job, path, opts)
    call.client_of(self, eps.get)
    if type(job) ~= "string" and type(job) ~= "table" then
      argerror(1, "download", "job table or job id string expected, got " .. type(job), 2)
    end
    if type(path) ~= "string" or path == "" then
      argerror(2, "download", "file path string expected, got " .. type(path), 2)
    end
    if path:find("\0", 1, true) then argerror(2, "download", "file path contains a NUL byte", 2) end
    if opts ~= nil and type(opts) ~= "table" then
      argerror(3, "download", "table expected, got " .. type(opts), 2)
    end
    opts = opts or {}
    local call_opts = {}
    for k, v in pairs(opts) do
      if not DOWNLOAD_OPTS[k] then argerror(3, "download", "unknown option '" .. tostring(k) .. "'", 2) end
      if k ~= "on_progress" then call_opts[k] = v end
    end
    local on_progress = opts.on_progress
    if on_progress ~= nil and type(on_progress) ~= "function" then
      argerror(3, "download", "opts.on_progress must be a function", 2)
    end
    check_call_opts(call_opts, 3, "download", 2)

    local perr = path_problem(path)
    if perr then return nil, perr end

    if type(job) == "string" then
      local j, err = self:get(job, { headers = opts.headers, max_retries = opts.max_retries,
                                     connect_timeout = opts.connect_timeout })
      if not j then return nil, err end
      job = j
    end
    local url = job.final_video_url
    if type(url) ~= "string" or url == "" then
      -- the job given cannot be downloaded (yet): the caller's input, like a
      -- missing field; err.job says where the job is
      local status = job.status
      local why = (status == "failed" or status == "cancelled" or status == "canceled") and "it has no final video"
        or status == "completed" and "its final_video_url is missing"
        or "its final video is not ready: wait for it (jobs:wait) first"
      return nil, errors.new{ kind = "validation", code = "NO_VIDEO", retryable = false, job = job,
        message = "cannot download job " .. tostring(job.job_id) .. ": " .. why,
        fields = { { type = "missing", loc = { "job", "final_video_url" }, msg = "Field required" } } }
    end
    if url:sub(1, 1) == "/" then
      local origin = url_mod.origin(client.base_url)
      if not origin then
        return nil, errors.new{ kind = "api", code = "BAD_URL", retryable = false,
          message = "cannot resolve final_video_url against the client's base_url" }
      end
      url = origin .. url
    end

    -- Video, not JSON; no content coding, so byte offsets are file offsets.
    -- (the SDK's own headers, sent to any host; opts.headers go, like the
    -- client's headers and credentials, only to the API's own origin)
    local sdk_headers = { Accept = "*/*", ["Accept-Encoding"] = "identity" }
    local attempt_opts = {
      headers = opts.headers, max_retries = 0, connect_timeout = opts.connect_timeout,
      timeout = opts.timeout or math_max(_M.MIN_TIMEOUT, client.timeout),
    }
    local max_retries = opts.max_retries or client.max_retries
    local part = path .. ".part"

    local shown_done, shown_total
    local function report(done, total)
      if done ~= shown_done or total ~= shown_total then
        shown_done, shown_total = done, total
        on_progress(done, total)
      end
    end

    local attempt, restarted, resumed_from = 0, false, nil
    while true do
      local offset = part_size(part) or 0
      if resumed_from == nil and offset > 0 then resumed_from = offset end
      local raised   -- {value} raised by on_progress
      local progress
      if on_progress then
        progress = function(dltotal, dlnow)
          local ok, e = pcall(report, offset + math_floor(dlnow),
                              dltotal > 0 and offset + math_floor(dltotal) or nil)
          if not ok then raised = { e }; return false end
          return true
        end
      end
      local res, meta = pipeline.send(client, {
        method = "GET", url = url, output = part, resume_from = offset > 0 and offset or nil, headers = sdk_headers,
        on_progress = progress, low_speed_time = client.timeout, opts = attempt_opts,
        idempotent = true, follow = true,
      })
      if raised then error(raised[1], 0) end

      local err, restart
      if res then
        local size = part_size(part)
        local hdrs = meta.headers
        local expected, total
        if size == nil then
          err = errors.new{ kind = "io", code = "IO_ERROR", retryable = false,
            message = "the download's .part is missing or no longer a regular file" }
        elseif res.status == 206 then
          local first, last
          first, total, last = content_range(hdrs["content-range"])
          if first ~= offset then
            restart = true
            err = broken("the server resumed at byte " .. tostring(first) .. " instead of " .. offset, "BAD_RANGE")
          end
          expected = last and last + 1
        elseif res.status == 200 then
          local ce = hdrs["content-encoding"]
          if ce == nil or ce:lower() == "identity" then expected = tonumber(hdrs["content-length"]) end
        end
        if not err and expected and size ~= expected then
          err = broken(("download incomplete: %d of %d bytes"):format(size, expected))
          if size > expected then restart = true end
        end
        if not err and total and size ~= total then
          -- a complete range that is not the whole file: go on from here
          err = broken(("download incomplete: %d of %d bytes"):format(size, total))
          if size > total then restart = true end
        end
        if not err then
          local ok, rerr = os_rename(part, path)
          if not ok then
            os_remove(part)
            return nil, errors.new{ kind = "io", code = "IO_ERROR", retryable = false,
              message = "cannot move the download into place: " .. tostring(rerr) }
          end
          if on_progress then report(size, size) end
          return { path = path, size = size, status = res.status, resumed_from = resumed_from }, meta
        end
      else
        err = meta
        -- the server cannot continue from here (416; or a 200 to a Range request:
        -- libcurl's CURLE_RANGE_ERROR, 33): start over from byte 0
        restart = offset > 0 and (err.status == 416 or err.curl_code == 33)
      end

      if restart then os_remove(part); resumed_from = nil end
      if restart and not restarted then
        restarted = true                     -- one free start-over per call
      else
        attempt = attempt + 1
        local wait
        if err.retryable and attempt <= max_retries then
          wait = retry.delay(attempt, err.retry_after, client.rng)   -- never under the backoff
          if wait > retry.MAX_RETRY_AFTER then wait = nil end
        end
        if not wait then
          err.attempts = attempt
          local left = part_size(part) or 0
          if err.retryable and not restart and left > 0 then
            err.part, err.part_bytes = part, left    -- kept: the next call resumes
          else
            os_remove(part)
          end
          return nil, err
        end
        client.runtime.sleep(wait)
      end
    end
  end
end

return _M
