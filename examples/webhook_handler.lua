-- Workflow 4 of the U-Gen API docs: receive and verify webhook events.
--
--   UGEN_WEBHOOK_SECRET=... lua examples/webhook_handler.lua [--port N] [--max N] [--timeout S]
--       serve POSTs on 127.0.0.1:N; verify X-UGen-Signature / X-UGen-Timestamp with
--       ugen.webhook.verify; answer 200 for a verified event, 401 otherwise.
--   lua examples/webhook_handler.lua --demo
--       against the sandbox: make a secret, point the account's webhook at this
--       receiver, create a job, handle its job.completed event, restore (delete)
--       the webhook config. (The real service requires an HTTPS webhook URL;
--       the sandbox accepts http:// on loopback.)
-- A tiny blocking server on luasocket, one request at a time: enough to show
-- the verification; in production, call ugen.webhook.verify from your web
-- framework's handler with the raw body and the request headers.
local setup = dofile((arg[0]:match("^(.*)/[^/]+$") or ".") .. "/_setup.lua")
local ugen = require "ugen"
local socket = require "socket"

local opts = { port = 0, max = math.huge, timeout = 600 }
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--demo" then opts.demo = true
  elseif a == "--port" or a == "--max" or a == "--timeout" then
    opts[a:sub(3)] = tonumber(arg[i + 1]) or error("number expected after " .. a); i = i + 1
  else
    io.stderr:write("unknown argument " .. a .. "\n"); os.exit(2)
  end
  i = i + 1
end

local secret = os.getenv("UGEN_WEBHOOK_SECRET")
local client
if opts.demo then
  client = ugen.new(setup.client_options())
  secret = ugen.webhook.new_secret()
  opts.max = 1
  opts.timeout = math.min(opts.timeout, 120)
elseif not secret or secret == "" then
  io.stderr:write("set UGEN_WEBHOOK_SECRET (examples/webhook_config.lua prints one), or use --demo\n")
  os.exit(2)
end

local server = assert(socket.bind("127.0.0.1", opts.port))
local _, port = server:getsockname()
local url = ("http://127.0.0.1:%d/webhooks/ugen"):format(port)
print("listening on " .. url)

-- Read one HTTP request: method, path, headers (lowercase names), raw body.
local function read_request(c)
  c:settimeout(10)
  local line = c:receive("*l")
  if not line then return nil end
  local method, path = line:match("^(%S+)%s+(%S+)")
  local headers = {}
  while true do
    local h = c:receive("*l")
    if not h or h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.-)%s*$")
    if k then
      k = k:lower()
      if headers[k] then   -- repeated header: keep every value (verify accepts lists)
        if type(headers[k]) ~= "table" then headers[k] = { headers[k] } end
        table.insert(headers[k], v)
      else
        headers[k] = v
      end
    end
  end
  local n = tonumber(headers["content-length"] or "0") or 0
  if n > 1024 * 1024 then return nil end
  local body = n > 0 and c:receive(n) or ""
  return { method = method, path = path, headers = headers, body = body }
end

local function respond(c, status, text)
  c:send(("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s")
    :format(status, status == 200 and "OK" or "Unauthorized", #text, text))
end

local job_id
if opts.demo then
  assert(client.webhooks:set{ webhook_url = url, webhook_secret = secret })
  local job, err = client.jobs:create{ product_name = "Premium Wireless Headphones",
    product_image_url = "https://example.com/headphones.jpg", segment_count = 3, video_model = "veo3_fast",
    music_enabled = true }
  if not job then client.webhooks:delete(); setup.fail("create", err) end
  job_id = job.job_id
  print("created job " .. job_id .. "; waiting for its webhook ...")
end

local handled, deadline = 0, socket.gettime() + opts.timeout
server:settimeout(0.5)
while handled < opts.max and socket.gettime() < deadline do
  local c = server:accept()
  if c then
    local req = read_request(c)
    if req and req.method == "POST" then
      local event, err = ugen.webhook.verify(secret, req.headers, req.body)
      if event then
        respond(c, 200, "ok")
        handled = handled + 1
        print(("verified %s for job %s: status=%s video=%s"):format(event.event, tostring(event.job_id),
          tostring(event.status), tostring(event.final_video_url or event.error_message)))
      else
        respond(c, 401, "invalid signature")
        print("rejected a delivery: " .. tostring(err))
      end
    elseif req then
      respond(c, 401, "POST only")
    end
    c:close()
  end
end
server:close()
if opts.demo then client.webhooks:delete() end
if opts.demo and handled == 0 then
  io.stderr:write("no verified webhook arrived for job " .. tostring(job_id) .. "\n")
  os.exit(1)
end
