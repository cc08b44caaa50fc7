-- ugen_sandbox_server.static_fault: X-Sandbox-Fault on the generated media files
-- (access_by_lua of the /static/videos/ location in nginx.conf.tmpl).
--
-- Without the header, or once a `count=N` fault is used up, nginx serves the
-- file itself (static file: Range requests answer 206 with Content-Range).
-- With the header the same directives as on the API apply where they make
-- sense for a file:
--   truncate      answer the requested range (or the whole file) with its full
--                 Content-Length, send only the first half of it, close the
--                 connection: a download that breaks mid-way
--   reset         close the connection without a response
--   status=N      the nested JSON error N (retry_after=S adds Retry-After)
--   delay=S       wait S seconds first (alone: then serve normally)
--   count=N/key=K as on the API (shared counters, cleared by /_sandbox/reset?all=true)
-- reset_after, badjson and html are rejected (400 INVALID_SANDBOX_FAULT).

local faults = require "ugen_sandbox_server.faults"
local util = require "ugen_sandbox_server.util"

local ngx = ngx
local type, pairs, tostring, tonumber, floor, min = type, pairs, tostring, tonumber, math.floor, math.min

local _M = {}

local CODES = { [429] = "RATE_LIMIT_EXCEEDED", [500] = "INTERNAL_ERROR", [502] = "BAD_GATEWAY",
                [503] = "SERVICE_UNAVAILABLE", [504] = "GATEWAY_TIMEOUT" }

local function json_error(status, code, message, details, headers)
  local e = { code = code, message = message, details = details }
  local body = util.json.encode({ error = e })
  ngx.status = status
  for k, v in pairs(headers or {}) do ngx.header[k] = v end
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = #body
  ngx.print(body)
  return ngx.exit(ngx.HTTP_OK)
end

-- Range header -> first, last (0-based, inclusive) | nil (no/ignored range) | false (unsatisfiable)
local function parse_range(h, size)
  if type(h) ~= "string" then return nil end
  local a, b = h:match("^%s*bytes%s*=%s*(%d*)%s*%-%s*(%d*)%s*$")
  if not a or (a == "" and b == "") then return nil end  -- multiple or malformed ranges: whole file
  local first, last
  if a == "" then                                          -- suffix: the last N bytes
    local n = tonumber(b)
    if n == 0 then return false end
    first, last = size - min(n, size), size - 1
  else
    first = tonumber(a)
    last = b == "" and size - 1 or min(tonumber(b), size - 1)
  end
  if first >= size or last < first then return false end
  return first, last
end

local function truncated(path)
  local f = io.open(path, "rb")
  if not f then return json_error(404, "NOT_FOUND", "Not found") end
  local data = f:read("*a")
  f:close()
  local size = #data
  local first, last = parse_range(ngx.var.http_range, size)
  if first == false then
    ngx.header["Content-Range"] = "bytes */" .. size
    return json_error(416, "RANGE_NOT_SATISFIABLE", "Requested range not satisfiable")
  end
  local slice
  if first then
    ngx.status = 206
    ngx.header["Content-Range"] = ("bytes %d-%d/%d"):format(first, last, size)
    slice = data:sub(first + 1, last + 1)
  else
    ngx.status = 200
    slice = data
  end
  ngx.header["Content-Type"] = "video/mp4"
  ngx.header["Accept-Ranges"] = "bytes"
  ngx.header["Content-Length"] = #slice
  ngx.print(slice:sub(1, floor(#slice / 2)))
  ngx.flush(true)
  return ngx.exit(ngx.ERROR)
end

-- file: the file the location serves, relative to its document root
function _M.handle(file)
  local fh = ngx.req.get_headers()["x-sandbox-fault"]
  if not fh then return end
  local f, ferr = faults.parse(fh)
  if f and (f.reset_after or f.badjson or f.html) then
    f, ferr = nil, "reset_after, badjson and html do not apply to media files"
  end
  if not f then return json_error(400, "INVALID_SANDBOX_FAULT", "X-Sandbox-Fault: " .. ferr) end
  if not faults.applies(f) then return end
  if f.reset then return ngx.exit(444) end
  if f.delay and f.delay > 0 then ngx.sleep(f.delay) end
  if f.status then
    local headers, details
    if f.retry_after then
      headers = { ["Retry-After"] = tostring(f.retry_after) }
      details = { retry_after = f.retry_after }
    end
    return json_error(f.status, CODES[f.status] or "SANDBOX_FAULT",
                      "Injected fault (X-Sandbox-Fault): HTTP " .. f.status, details, headers)
  end
  if f.truncate then return truncated(ngx.var.document_root .. "/" .. file) end
end

return _M
