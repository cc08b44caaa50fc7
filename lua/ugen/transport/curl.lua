-- ugen.transport.curl: the default adapter, over the C core's libcurl engine.
--
-- Converts the pipeline's request (header map) into a core request (header
-- list), awaits it through ugen.sched (blocking now; yielding inside the
-- scheduler later) and passes the core's answer through. Core errors keep
-- their kind (network/timeout/tls); other core kinds become "network".

local sched = require "ugen.sched"

local type, pairs, tostring, sort = type, pairs, tostring, table.sort

local _M = {
  _VERSION = "0.1.0",
  -- Cap on a response body held in memory (every body except a 2xx streamed
  -- to req.output): a body announced larger is refused before it is read, one
  -- without a length fails as soon as it passes the cap. kind "decode", code
  -- "TOO_LARGE". The ngx transport has the same field and default.
  MAX_BODY = 64 * 1024 * 1024,
}

function _M.version()
  return sched.core().curl_version
end

-- "Name: value" lines are memoized per name and value (the same few headers go
-- out on every request); bounded: dropped when LINE_CACHE_MAX lines are held.
local LINE_CACHE_MAX = 256
local line_cache, line_count = {}, 0

local function header_line(name, value)
  if type(value) ~= "string" then value = tostring(value) end
  local byname = line_cache[name]
  local line = byname and byname[value]
  if line then return line end
  line = name .. ": " .. value
  if line_count >= LINE_CACHE_MAX then line_cache, line_count = {}, 0; byname = nil end
  if not byname then byname = {}; line_cache[name] = byname end
  byname[value] = line
  line_count = line_count + 1
  return line
end

function _M.request(req)
  local hdrs = req.headers or {}
  local names = {}
  for name in pairs(hdrs) do names[#names + 1] = name end
  sort(names)
  local list = {}
  for i = 1, #names do
    local name = names[i]
    list[i] = header_line(name, hdrs[name])
  end
  -- An empty Expect stops libcurl's "Expect: 100-continue" round trip on big bodies.
  if req.body or req.mime then list[#list + 1] = "Expect:" end
  local creq = {
    method = req.method,
    url = req.url,
    headers = list,
    body = req.body,
    mime = req.mime,
    output = req.output,
    resume_from = req.resume_from,
    on_progress = req.on_progress,
    low_speed_time = req.low_speed_time,
    follow = req.follow,
    timeout = req.timeout,
    connect_timeout = req.connect_timeout,
    deadline = req.deadline,    -- the call's deadline (ugen.scheduler: a queued request gives up then)
    cainfo = req.cainfo,
    capath = req.capath,
  }
  -- not idempotent: libcurl never sends it twice (and over plain HTTP it takes a new connection)
  if req.idempotent == false then creq.idempotent = false end
  -- (the core applies it to the bodies it keeps in memory; a 2xx written to
  -- req.output is not capped)
  creq.max_body = _M.MAX_BODY
  local res, err = sched.perform(creq)
  if not res then
    if type(err) ~= "table" then err = { kind = "network", message = tostring(err) } end
    if err.kind == "too_large" then
      return nil, { kind = "decode", code = "TOO_LARGE", retryable = false, sent = true,
                    message = "response body larger than " .. creq.max_body .. " bytes" }
    end
    if err.kind == "insecure_redirect" then
      return nil, { kind = "tls", code = "INSECURE_REDIRECT", retryable = false, sent = true,
                    message = err.message }
    end
    local kind = err.kind
    -- "io": the output or mime file cannot be opened/read/written; trying again will not help
    local retryable
    if kind == "io" then retryable = false end
    if kind ~= "network" and kind ~= "timeout" and kind ~= "tls" then kind = "network" end
    return nil, { kind = kind, message = err.message, curl_code = err.curl_code, sent = err.sent,
                  retryable = retryable }
  end
  return res
end

return _M
