-- ugen_sandbox_server.app: the local U-Gen API server (one nginx worker, LuaJIT):
-- its entry points, called from the generated nginx.conf.
-- ugen_sandbox_server.* is the SERVER: it runs only inside the sandbox's nginx
-- (sandbox/lib/ on lua_package_path) and never in the SDK. The client-side
-- MANAGER that starts and stops it is ugen.sandbox (lua/ugen/sandbox/).
--
--   app.init(cfg)      init_by_lua (master): static seed data (ugen_sandbox_server.state)
--   app.init_worker()  init_worker_by_lua: tenants, clock, ticker, owner watchdog
--   app.handle()       content_by_lua for every dynamic path: /_sandbox/* (admin),
--                      /api/v1/* (X-Sandbox-Fault, then ugen_sandbox_server.routes)
--   app.error_page()   content_by_lua of the error_page location: nginx's own
--                      errors in the API's nested JSON shape
--
-- All state lives in this worker's Lua tables (hence worker_processes 1):
-- idempotency and limit checks run without yielding, so concurrent requests
-- cannot interleave inside them. The modules, one concern each:
--   state      what the worker holds (config, seed indexes, tenant data)
--   clock      the sandbox job clock (--speed, advance)
--   ledger     prices, balances, ledger entries
--   jobs       the job lifecycle; tasks: Playground tasks; tenants: reset
--   ticker     advances running jobs and tasks every 50 ms
--   http       request bodies, response shapes, send
--   auth       X-API-Key / Bearer JWT
--   uploads    multipart uploads and file storage
--   routes     /api/v1 routing and validation (ugen.endpoints + ugen.validate)
--   handlers.* the endpoint handlers (models, jobs, credits, account, music,
--              templates)
--   admin      the /_sandbox/* endpoints
--   webhooks   deliveries; faults, static_fault: X-Sandbox-Fault; seed,
--              multipart, util: data and helpers

local util = require "ugen_sandbox_server.util"
local faults = require "ugen_sandbox_server.faults"
local webhooks = require "ugen_sandbox_server.webhooks"
local state = require "ugen_sandbox_server.state"
local clock = require "ugen_sandbox_server.clock"
local tenants = require "ugen_sandbox_server.tenants"
local ticker = require "ugen_sandbox_server.ticker"
local http = require "ugen_sandbox_server.http"
local routes = require "ugen_sandbox_server.routes"
local admin = require "ugen_sandbox_server.admin"

local ngx = ngx
local ipairs, tostring, tonumber, floor = ipairs, tostring, tonumber, math.floor
local json = util.json
local E, send, err_body = http.error_response, http.send, http.err_body

local _M = { _VERSION = state.VERSION }

local API = state.API

function _M.init(conf)
  webhooks.init(state.load(conf))
end

local function watchdog(premature)
  if premature or not state.cfg.owner_pid then return end
  local f = io.open("/proc/" .. tostring(state.cfg.owner_pid) .. "/stat", "r")
  if f then f:close(); return end
  ngx.log(ngx.WARN, "sandbox: owner process ", state.cfg.owner_pid, " is gone; shutting down")
  -- the master is this worker's parent (field 4 of /proc/self/stat)
  local sf = io.open("/proc/self/stat", "r")
  local stat = sf and sf:read("*l")
  if sf then sf:close() end
  local master = stat and tonumber(stat:match("^%d+ %b() %S+ (%d+)"))
  if master and master > 1 then os.execute("kill -TERM " .. master) end
end

function _M.init_worker()
  math.randomseed(floor(ngx.now() * 1000) % 2147483647)
  clock.start()
  state.started_at = clock.iso_now()
  for _, t in ipairs(state.tenants) do tenants.reset(t) end
  assert(ngx.timer.every(ticker.INTERVAL, ticker.tick))
  if state.cfg.owner_pid then assert(ngx.timer.every(1, watchdog)) end
end

local function handle_inner()
  ngx.header["X-Request-Id"] = ngx.var.request_id
  local method = ngx.req.get_method()
  if method == "HEAD" then method = "GET" end
  local path = (ngx.var.request_uri or "/"):match("^[^?#]*")

  if path:sub(1, 10) == "/_sandbox/" then return send(admin.handle(method, path)) end

  if path:sub(1, #API + 1) ~= API .. "/" then
    return send(E(404, "NOT_FOUND", "No route for " .. method .. " " .. path))
  end

  local fault
  local fh = ngx.req.get_headers()["x-sandbox-fault"]
  if fh then
    local f, ferr = faults.parse(fh)
    if not f then return send(E(400, "INVALID_SANDBOX_FAULT", "X-Sandbox-Fault: " .. ferr)) end
    if faults.applies(f) then fault = f end
  end
  if fault then
    ngx.ctx.sandbox_webhook_fault = fault.webhook   -- for the job POST /jobs creates (handlers/jobs.lua)
    if fault.reset then return ngx.exit(444) end
    if fault.status then
      if fault.delay and fault.delay > 0 then ngx.sleep(fault.delay) end
      local codes = { [429] = "RATE_LIMIT_EXCEEDED", [500] = "INTERNAL_ERROR", [502] = "BAD_GATEWAY",
                      [503] = "SERVICE_UNAVAILABLE", [504] = "GATEWAY_TIMEOUT" }
      local headers, details = {}, nil
      if fault.retry_after then
        headers["Retry-After"] = tostring(fault.retry_after)
        details = { retry_after = fault.retry_after }
      end
      if fault.html then
        return send({ status = fault.status, headers = headers, content_type = "text/html",
          raw = ("<html><head><title>%d</title></head><body><h1>%d</h1><p>sandbox fault</p></body></html>\n")
            :format(fault.status, fault.status) })
      end
      return send(E(fault.status, codes[fault.status] or "SANDBOX_FAULT",
                    "Injected fault (X-Sandbox-Fault): HTTP " .. fault.status, details, headers))
    end
  end
  return send(routes.dispatch(method, path:sub(#API + 1)), fault)
end

function _M.handle()
  local ok, err = xpcall(handle_inner, debug.traceback)
  if not ok then
    ngx.log(ngx.ERR, "sandbox: unhandled error: ", err)
    if not ngx.headers_sent then
      ngx.status = 500
      ngx.header["Content-Type"] = "application/json"
      ngx.print(json.encode(err_body("INTERNAL_ERROR", "Internal sandbox error")))
    end
    return ngx.exit(ngx.HTTP_OK)
  end
end

local NGINX_CODES = {
  [400] = { "BAD_REQUEST", "Bad request" }, [404] = { "NOT_FOUND", "Not found" },
  [405] = { "METHOD_NOT_ALLOWED", "Method not allowed" }, [408] = { "REQUEST_TIMEOUT", "Request timeout" },
  [411] = { "LENGTH_REQUIRED", "Length required" },
  [413] = { "PAYLOAD_TOO_LARGE", "Request body too large" }, [414] = { "URI_TOO_LONG", "URI too long" },
  [494] = { "HEADERS_TOO_LARGE", "Request headers too large" },
  [500] = { "INTERNAL_ERROR", "Internal sandbox error" }, [501] = { "NOT_IMPLEMENTED", "Not implemented" },
  [502] = { "BAD_GATEWAY", "Bad gateway" }, [503] = { "SERVICE_UNAVAILABLE", "Service unavailable" },
  [504] = { "GATEWAY_TIMEOUT", "Gateway timeout" },
  [505] = { "HTTP_VERSION_NOT_SUPPORTED", "HTTP version not supported" },
}

-- nginx's own errors (body too large, bad requests, static 404s, ...) in the
-- nested error format.
function _M.error_page()
  local status = tonumber(ngx.var.status) or ngx.status or 500
  if status == 494 then status = 400 end
  local c = NGINX_CODES[status] or { "HTTP_" .. status, "HTTP error " .. status }
  local body = json.encode(err_body(c[1], c[2]))
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["X-Request-Id"] = ngx.var.request_id
  if status == 405 then ngx.header["Allow"] = "GET, HEAD" end
  ngx.header["Content-Length"] = #body
  ngx.print(body)
  return ngx.exit(ngx.HTTP_OK)
end

return _M
