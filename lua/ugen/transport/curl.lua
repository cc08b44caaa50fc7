-- ugen.transport.curl: the default adapter, over the C core's libcurl engine.
--
-- Converts the pipeline's request (header map) into a core request (header
-- list), awaits it through ugen.sched (blocking now; yielding inside the
-- scheduler later) and passes the core's answer through. Core errors keep
-- their kind (network/timeout/tls); other core kinds become "network".

local sched = require "ugen.sched"

local type, pairs, ipairs, tostring, sort = type, pairs, ipairs, tostring, table.sort

local _M = {
  _VERSION = "0.1.0",
  MAX_BODY = 64 * 1024 * 1024,   -- cap on an in-memory (JSON) response body; downloads stream to a file
}

function _M.version()
  return sched.core().curl_version
end

function _M.request(req)
  local names = {}
  for name in pairs(req.headers or {}) do names[#names + 1] = name end
  sort(names)
  local list = {}
  for i, name in ipairs(names) do list[i] = name .. ": " .. tostring(req.headers[name]) end
  -- An empty Expect stops libcurl's "Expect: 100-continue" round trip on big bodies.
  if req.body or req.mime then list[#list + 1] = "Expect:" end
  local creq = {
    method = req.method,
    url = req.url,
    headers = list,
    body = req.body,
    mime = req.mime,
    output = req.output,
    follow = req.follow,
    timeout = req.timeout,
    connect_timeout = req.connect_timeout,
    cainfo = req.cainfo,
    capath = req.capath,
  }
  if not req.output then creq.max_body = _M.MAX_BODY end
  local res, err = sched.perform(creq)
  if not res then
    if type(err) ~= "table" then err = { kind = "network", message = tostring(err) } end
    if err.kind == "too_large" then
      return nil, { kind = "decode", code = "TOO_LARGE", retryable = false, sent = true,
                    message = "response body larger than " .. _M.MAX_BODY .. " bytes" }
    end
    local kind = err.kind
    if kind ~= "network" and kind ~= "timeout" and kind ~= "tls" then kind = "network" end
    return nil, { kind = kind, message = err.message, curl_code = err.curl_code, sent = err.sent }
  end
  return res
end

return _M
