-- ugen.transport.curl: the pipeline's request <-> the C core's libcurl engine.
--
-- A pure converter (the curl runtime, ugen.runtime.curl, performs): to_core
-- turns the pipeline's request (header map) into a core request (header
-- list); map_error turns a core error into a transport error. Core errors
-- keep their kind (network/timeout/tls; io, a local file that cannot be
-- opened, read or written, as kind "io", code IO_ERROR, never retried);
-- other core kinds become "network".
--
--   transport.curl.to_core(req) -> creq
--   transport.curl.map_error(err, creq) -> err (the transport contract of ugen.transport)

local type, pairs, tostring, sort, require, pcall, setmetatable = type, pairs, tostring, table.sort, require, pcall,
  setmetatable
local string_lower = string.lower

local _M = {
  _VERSION = "0.1.0",
  -- Cap on a response body held in memory (every body except a 2xx streamed
  -- to req.output): a body announced larger is refused before it is read, one
  -- without a length fails as soon as it passes the cap. kind "decode", code
  -- "TOO_LARGE". The ngx transport has the same field and default.
  MAX_BODY = 64 * 1024 * 1024,
}

-- the libcurl version string, or nil when the C core cannot be loaded
function _M.version()
  local ok, native = pcall(require, "ugen.native")
  return ok and type(native) == "table" and native.curl_version or nil
end

-- "Name: value" lines are memoized per name and value (the same few headers go
-- out on every request); bounded: dropped when LINE_CACHE_MAX lines are held.
-- Credential headers are never memoized: the cache would keep a client's key
-- or token alive after the client is gone.
local LINE_CACHE_MAX = 256
local line_cache, line_count = {}, 0
local UNCACHED = { authorization = true, ["x-api-key"] = true, cookie = true, ["proxy-authorization"] = true }
local uncached = setmetatable({}, { __index = function(t, name)
  local v = UNCACHED[string_lower(name)] == true
  t[name] = v
  return v
end })

local function header_line(name, value)
  if type(value) ~= "string" then value = tostring(value) end
  if uncached[name] then return name .. ": " .. value end
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

function _M.to_core(req)
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
  -- only the fields that are set: a GET's table stays small (a constructor
  -- sizes its hash part for every field it names, nil or not)
  local creq = {
    method = req.method,
    url = req.url,
    headers = list,
    timeout = req.timeout,
    connect_timeout = req.connect_timeout,
    -- (the core applies it to the bodies it keeps in memory; a 2xx written to
    -- req.output is not capped)
    max_body = _M.MAX_BODY,
  }
  if req.body ~= nil then creq.body = req.body end
  if req.mime ~= nil then creq.mime = req.mime end
  if req.output ~= nil then
    creq.output, creq.resume_from, creq.low_speed_time = req.output, req.resume_from, req.low_speed_time
  end
  if req.on_progress ~= nil then creq.on_progress = req.on_progress end
  if req.follow ~= nil then creq.follow = req.follow end
  -- the call's deadline (ugen.runtime.curl: a request queued behind max_concurrency gives up then)
  if req.deadline ~= nil then creq.deadline = req.deadline end
  if req.cainfo ~= nil then creq.cainfo = req.cainfo end
  if req.capath ~= nil then creq.capath = req.capath end
  -- req.timing (a logger, hook or `timings` is set): res.timing, libcurl's timings and
  -- whether the connection was reused (not asked: not measured, no table built)
  if req.timing then creq.timing = true end
  -- not idempotent: libcurl never sends it twice (and over plain HTTP it takes a new connection)
  if req.idempotent == false then creq.idempotent = false end
  return creq
end

function _M.map_error(err, creq)
  if type(err) ~= "table" then return { kind = "network", message = tostring(err) } end
  if err.kind == "too_large" then
    return { kind = "decode", code = "TOO_LARGE", retryable = false, sent = true,
             message = "response body larger than " .. tostring(creq and creq.max_body or _M.MAX_BODY) .. " bytes" }
  end
  if err.kind == "insecure_redirect" then
    return { kind = "tls", code = "INSECURE_REDIRECT", retryable = false, sent = true, message = err.message }
  end
  local kind = err.kind
  if kind == "io" then
    -- the output or mime file cannot be opened/read/written: a local problem, trying again will not help
    return { kind = "io", code = "IO_ERROR", message = err.message, curl_code = err.curl_code,
             sent = err.sent, retryable = false }
  end
  -- "timeout" from a request that waited for a slot (sent = false) keeps its kind
  if kind ~= "network" and kind ~= "timeout" and kind ~= "tls" then kind = "network" end
  return { kind = kind, message = err.message, curl_code = err.curl_code, sent = err.sent }
end

return _M
