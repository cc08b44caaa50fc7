-- ugen_sandbox_server.faults: the X-Sandbox-Fault request header.
--
--   X-Sandbox-Fault: <directive>[;<directive>...]     (";" or "," separated)
--
-- directives (see sandbox/README.md for the full table):
--   status=N          answer N (400-599) with the nested error body, without processing
--   retry_after=S     with status: Retry-After header and error.details.retry_after
--   html              with status: a text/html body (like a gateway), not JSON
--   reset             close the connection without any response, without processing
--   reset_after       process the request, then close without any response
--   delay=S           process the request, wait S seconds (0-60), then respond
--   truncate          process, then send half the body under the full Content-Length, close
--   badjson           process, then send an invalid JSON body (status and headers as normal)
--   count=N           only the next N requests carrying the same key get the fault;
--                     later ones are processed normally
--   key=K             the counter key (default: the whole header value)
--   webhook=duplicate process normally (POST /jobs); every webhook delivery of the new job
--                     is sent twice at once (two deliveries, two delivery ids)
--   webhook=reset     process normally (POST /jobs); the first attempt of each delivery
--                     of the new job is sent, then the connection is closed without
--                     reading the answer (recorded as failed: the retries follow)
--   chance=P          each request gets the fault with probability P (0-1), e.g.
--                     chance=0.2: about one request in five (with count=N, the
--                     requests spared by chance do not use up the count)

local _M = {}

local tonumber, floor = tonumber, math.floor

local FLAGS = { reset = true, reset_after = true, truncate = true, badjson = true, html = true }

-- remaining[key] = attempts that still get the fault (count=N); reset by /_sandbox/reset
local remaining = {}

function _M.clear() remaining = {} end

--- Parse a header value -> fault table | nil, message.
function _M.parse(value)
  if type(value) == "table" then value = value[#value] end -- repeated header: the last wins
  local f = { raw = value }
  local any = false
  for token in value:gmatch("[^;,]+") do
    local name, arg = token:match("^%s*([%w_]+)%s*=%s*(.-)%s*$")
    if not name then name = token:match("^%s*([%w_]+)%s*$") end
    if not name then return nil, "cannot parse fault directive '" .. token .. "'" end
    name = name:lower()
    if FLAGS[name] then
      if arg then return nil, "fault '" .. name .. "' takes no value" end
      f[name] = true
    elseif name == "status" then
      local n = tonumber(arg)
      if not n or n ~= floor(n) or n < 400 or n > 599 then
        return nil, "fault status must be an integer 400-599"
      end
      f.status = n
    elseif name == "retry_after" or name == "delay" then
      local n = tonumber(arg)
      if not n or n < 0 or n > 60 then return nil, "fault " .. name .. " must be a number of seconds 0-60" end
      f[name] = n
    elseif name == "count" then
      local n = tonumber(arg)
      if not n or n ~= floor(n) or n < 1 then return nil, "fault count must be a positive integer" end
      f.count = n
    elseif name == "chance" then
      local n = tonumber(arg)
      if not n or n ~= n or n < 0 or n > 1 then return nil, "fault chance must be a number 0-1" end
      f.chance = n
    elseif name == "webhook" then
      if arg ~= "duplicate" and arg ~= "reset" then return nil, "fault webhook must be duplicate or reset" end
      f.webhook = arg
    elseif name == "key" then
      if not arg or arg == "" then return nil, "fault key must not be empty" end
      f.key = arg
    else
      return nil, "unknown fault '" .. name .. "'"
    end
    any = true
  end
  if not any then return nil, "empty fault header" end
  if not (f.status or f.reset or f.reset_after or f.delay or f.truncate or f.badjson or f.webhook) then
    return nil, "no fault given (status, reset, reset_after, delay, truncate, badjson or webhook)"
  end
  if (f.retry_after or f.html) and not f.status then
    return nil, "retry_after and html need status=N"
  end
  return f
end

--- Does this attempt get the fault? Consumes one of `count` when given.
function _M.applies(f)
  if f.chance and math.random() >= f.chance then return false end
  if not f.count then return true end
  local key = f.key or f.raw
  local left = remaining[key]
  if left == nil then left = f.count end
  if left <= 0 then return false end
  remaining[key] = left - 1
  return true
end

--- An invalid JSON rendering of body (valid-looking start, broken end).
function _M.badjson(body)
  local cut = floor(#body / 2)
  if cut < 1 then cut = #body end
  return body:sub(1, cut) .. "<!-- sandbox: badjson --> {\"unterminated\": "
end

return _M
