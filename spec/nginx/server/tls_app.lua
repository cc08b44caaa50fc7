-- luacheck: globals ngx
-- The nginx side of spec/nginx/tls_spec.lua: the SDK inside nginx (the ngx
-- transport) calling a TLS sandbox and small TLS servers of the same nginx.
--   POST /run { op = "calls", base_url =, api_key =, path =, n =, cainfo =, configure = {...} }
--     -> { results = { { ok =, status =, err = {kind, code, attempts, retryable, sent, message} }, ... } }
--   POST /run { op = "wait", base_url =, origin =, api_key =, ids =, opts =, marker =, clock = {...} }
--     -> { completed =, first_err =, wall =, cpu = }   (a warm-up call first; the clock
--     starts, POST origin/_sandbox/clock clock, once every job had its first answer)
--   POST /run { op = "kill", base_url = <this server>, configure = { pool_size = 2 } }
--     -> { ok =, err =, elapsed = }   (a request after two holders of the pool were killed)
--   GET /slow?s=S -> {} after S s
--   GET /handshakes -> { name = count }   (ssl_certificate_by_lua counts of the TLS servers)
local ugen = require "ugen"
local json = require "ugen.json"

local _M = {}

local function reply(status, t)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.print(json.encode(t))
end

local function now() ngx.update_time(); return ngx.now() end

local function err_table(err)
  if err == nil then return nil end
  return { kind = err.kind, code = err.code, attempts = err.attempts, retryable = err.retryable,
           sent = err.sent, message = err.message, status = err.status }
end

function _M.count_handshake(name)
  ngx.shared.tls_spec:incr("hs:" .. name, 1, 0)
end

function _M.handshakes()
  local d = ngx.shared.tls_spec
  local out = {}
  for _, k in ipairs(d:get_keys(0)) do out[k:sub(4)] = d:get(k) end
  reply(200, out)
end

function _M.slow()
  ngx.sleep(tonumber(ngx.var.arg_s) or 0)
  reply(200, {})
end

function _M.run()
  ngx.req.read_body()
  local spec = json.decode(ngx.req.get_body_data() or "{}", true)
  local t = require "ugen.transport.ngx"
  local prev = spec.configure and t.configure(spec.configure)
  local c = ugen.new{ base_url = spec.base_url, api_key = spec.api_key or "spec-key", cainfo = spec.cainfo,
                      user_agent = spec.marker, timeout = 30 }
  local out
  if spec.op == "calls" then
    out = { results = {}, transport = c.transport_name }
    for i = 1, spec.n or 1 do
      local r, err = c:request(spec.method or "GET", spec.path or "/credits")
      out.results[i] = { ok = r ~= nil, status = r and (r.status or 200), err = err_table(err) }
    end
  elseif spec.op == "wait" then
    -- warm-up: one connection, one full handshake, its TLS session kept for the others
    local admin = ugen.new{ base_url = spec.origin, api_key = spec.api_key, user_agent = spec.marker }
    assert(admin:request("GET", "/_sandbox/clock"))
    -- once every job had its first answer, the clock starts and every job ends at once
    local n, seen, answered = #spec.ids, {}, 0
    local o = spec.opts
    function o.on_progress(_, id)
      if seen[id] then return end
      seen[id] = true
      answered = answered + 1
      if answered == n then
        -- on a connection of its own: through the pool it would queue behind polls
        ngx.thread.spawn(function()
          local body = json.encode(spec.clock)
          local s = ngx.socket.tcp()
          s:settimeouts(5000, 5000, 5000)
          assert(s:connect("127.0.0.1", tonumber(spec.origin:match(":(%d+)$"))))
          assert(s:sslhandshake(nil, "localhost", true))
          assert(s:send(("POST /_sandbox/clock HTTP/1.1\r\nHost: localhost\r\nX-API-Key: %s\r\n"
            .. "Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s")
            :format(spec.api_key, #body, body)))
          assert(s:receive("*l"):find(" 200 ", 1, true))
          s:close()
        end)
      end
    end
    local c0, w0 = os.clock(), now()
    local jobs, errs = c.jobs:wait_all(spec.ids, o)
    out = { wall = now() - w0, cpu = os.clock() - c0, completed = 0 }
    for i = 1, #spec.ids do
      if jobs[i] and jobs[i].status == "completed" then out.completed = out.completed + 1 end
      if errs[i] and not out.first_err then out.first_err = err_table(errs[i]) end
    end
  elseif spec.op == "kill" then
    -- two light threads take both places of a pool_size = 2 pool and are killed mid-request;
    -- a third request needs one of their places
    local th = {}
    for i = 1, 2 do th[i] = ngx.thread.spawn(function() return c:request("GET", "/slow", { s = 2 }) end) end
    ngx.sleep(0.2)
    for i = 1, 2 do ngx.thread.kill(th[i]) end
    th = nil   -- luacheck: ignore 311
    local t0 = now()
    local r, err = c:request("GET", "/slow", { s = 0 })
    out = { ok = r ~= nil, err = err_table(err), elapsed = now() - t0 }
  else
    out = { error = "unknown op " .. tostring(spec.op) }
  end
  if prev then t.configure(prev) end
  reply(200, out)
end

return _M
