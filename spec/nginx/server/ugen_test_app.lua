-- luacheck: globals ngx
-- The nginx test server for spec/nginx: the SDK running inside nginx (one
-- worker), plus fake upstream endpoints served by that same worker.
-- Config (DIR/app-config.lua): { secrets = {s1, s2}, transport = "ngx" | nil,
--   small_max_body = n }
local ugen = require "ugen"
local json = require "ugen.json"
local errors = require "ugen.errors"
local ugen_ngx = require "ugen.ngx"

local _M = {}
local cfg = {}

local function reply(status, t)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.print(json.encode(t))
end

local function err_table(err)
  if err == nil then return nil end
  return { kind = err.kind, status = err.status, code = err.code, attempts = err.attempts,
           retryable = err.retryable, retry_after = err.retry_after, message = err.message,
           is_error = errors.is(err) }
end

local function now() ngx.update_time(); return ngx.now() end

local function self_base() return "http://127.0.0.1:" .. cfg.port .. "/api/v1" end

local function client(o)
  o = o or {}
  local copts = { base_url = o.base_url or self_base(), api_key = o.api_key or "test-key",
                  rng = function() return 0 end, transport = cfg.transport }
  for k, v in pairs(o.client or {}) do copts[k] = v end
  return ugen.new(copts)
end

----------------------------------------------------------------------------
-- lifecycle

function _M.init(c)
  cfg = c or {}
  if cfg.transport == json.null then cfg.transport = nil end
  -- Handlers are built at init (the usual place), checked against the dicts.
  local function on_event(event, info)
    local dict = ngx.shared.events
    local n = dict:incr("n", 1, 0)
    dict:set("e" .. n, json.encode{ event = event, secret_index = info.secret_index, timestamp = info.timestamp,
      signature = info.signature, delivery_id = info.delivery_id, event_key = info.event_key,
      body_len = #info.body, in_file = ngx.req.get_body_file() ~= nil,
      body = #info.body <= 4096 and info.body or nil })
    if event.fail_handler then return false, "told to fail" end
  end
  _M.hook = ugen_ngx.webhook_handler{ secret = cfg.secrets, on_event = on_event, tolerance = 300,
                                      dedupe = "ugen_webhooks" }
  _M.hook_small = ugen_ngx.webhook_handler{ secret = cfg.secrets, on_event = on_event, tolerance = 300,
                                            dedupe = "ugen_webhooks", max_body = cfg.small_max_body or 65536 }
  -- A client made in init (module level) is the common pattern; calls come later.
  _M.init_client = client{}
  _M.init_transport = _M.init_client.transport_name
end

function _M.init_worker()
  -- The spec process owns this server: once it is gone, stop (like the sandbox).
  if cfg.owner_pid then
    ngx.timer.every(1, function()
      local f = io.open("/proc/" .. cfg.owner_pid .. "/stat", "r")
      if f then f:close(); return end
      local pf = io.open(ngx.config.prefix() .. "nginx.pid", "r")
      local master = pf and tonumber((pf:read("*a") or ""):match("%d+"))
      if pf then pf:close() end
      if master then os.execute("kill -TERM " .. master) end
    end)
  end
  -- A call right here must fail with the phase error (recorded for the spec).
  local ok, e = pcall(function() return _M.init_client.credits:balance() end)
  ngx.shared.phase:set("init_worker", ok and "no error" or tostring(e))
  -- ... and the way out works.
  ngx.timer.at(0, function(premature)
    if premature then return end
    local r, err = _M.init_client.credits:balance()
    ngx.shared.phase:set("timer", r and ("ok " .. tostring(r.available_credits)) or tostring(err))
  end)
end

----------------------------------------------------------------------------
-- fake upstream (the "API" the in-nginx SDK calls; same worker)

function _M.fake_api()
  local delay = tonumber(ngx.var.arg_delay or ngx.var.http_x_test_delay or "0") or 0
  local key = ngx.var.http_x_test_fail_once
  if key then
    local first = ngx.shared.phase:add("fail:" .. key, true, 60)
    if first then
      return reply(503, { error = { code = "TRY_AGAIN", message = "fail once" } })
    end
  end
  if delay > 0 then ngx.sleep(delay) end
  reply(200, { available_credits = 100, credit_balance = 100, credit_reserved = 0,
               connection = tonumber(ngx.var.connection), connection_requests = tonumber(ngx.var.connection_requests),
               path = ngx.var.uri })
end

function _M.echo()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body and ngx.req.get_body_file() then
    local f = io.open(ngx.req.get_body_file(), "rb"); body = f:read("*a"); f:close()
  end
  reply(200, { method = ngx.req.get_method(), headers = ngx.req.get_headers(), body = body or "",
               uri = ngx.var.request_uri })
end

-- Responses written byte by byte on the raw downstream socket.
local RAW = {
  close = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"until\":\"close\"}",
  http10 = "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"v\":\"1.0\"}",
  chunked = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n" ..
            "Connection: close\r\n\r\n" ..
            "5;ext=1\r\n{\"a\":\r\n8\r\n\"chunked\r\nA\r\n\",\"b\":[1,2\r\n2\r\n]}\r\n0\r\nX-Trailer: t\r\n\r\n",
  chunked_cut = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" ..
                "10\r\n{\"a\":\"only",
  length_cut = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"a\":\"short\"}",
  continue = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Type: application/json\r\n" ..
             "X-Folded: one\r\n  two\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"ok\":true}",
  garbage = "NOT-HTTP garbage\r\n\r\n",
  slowbody = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n0123456789",
  nothing = "",
  bad_length = "HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n{}",
  -- no body may be read for these, whatever the headers say (the server then stalls)
  h204 = "HTTP/1.1 204 No Content\r\nConnection: close\r\nContent-Length: 10\r\n\r\n",
  h304 = "HTTP/1.1 304 Not Modified\r\nConnection: close\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n",
  head = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 100\r\nContent-Type: application/json\r\n\r\n",
}
-- response lines around the 100 KiB line limit
RAW.big_header = "HTTP/1.1 200 OK\r\nX-Big: " .. string.rep("b", 90 * 1024) .. "\r\nContent-Length: 2\r\n" ..
                 "Connection: close\r\n\r\n{}"
RAW.long_header = "HTTP/1.1 200 OK\r\nX-Long: " .. string.rep("a", 200 * 1024) .. "\r\nContent-Length: 2\r\n" ..
                  "Connection: close\r\n\r\n{}"
RAW.long_chunk_ext = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" ..
                     "2;ext=" .. string.rep("e", 200 * 1024) .. "\r\n{}\r\n0\r\n\r\n"
-- a header line that does not end (the server then stalls)
RAW.endless_header = "HTTP/1.1 200 OK\r\nX-Endless: " .. string.rep("a", 300 * 1024)
local STALL = { h204 = true, h304 = true, head = true, slowbody = true, endless_header = true }

function _M.raw()
  local case = ngx.var.arg_case
  local sock = assert(ngx.req.socket(true))
  if case == "hang" then ngx.sleep(5) end
  sock:send(RAW[case] or "")
  if STALL[case] then ngx.sleep(2) end
  -- returning from the handler closes the connection
end

function _M.chunked_stream()
  -- nginx answers HTTP/1.1 without Content-Length in chunked encoding
  ngx.header["Content-Type"] = "application/json"
  ngx.print('{"parts":[')
  ngx.flush(true)
  for i = 1, 5 do
    ngx.print(i > 1 and "," or "", '"', string.rep("x", 3000), '"')
    ngx.flush(true)
  end
  ngx.print("]}")
end

-- GET /redir?n=K[&to=URL]: K redirects (302, relative Location), then `to` (default /api/v1/redirected)
function _M.redir()
  local n = tonumber(ngx.var.arg_n) or 1
  local status = tonumber(ngx.var.arg_status) or 302
  if n > 1 then
    return ngx.redirect("/redir?n=" .. (n - 1) .. "&status=" .. status ..
      (ngx.var.arg_to and ("&to=" .. ngx.escape_uri(ngx.unescape_uri(ngx.var.arg_to))) or ""), status)
  end
  return ngx.redirect(ngx.var.arg_to and ngx.unescape_uri(ngx.var.arg_to) or "/api/v1/redirected", status)
end

function _M.nobody()
  local st = tonumber(ngx.var.arg_status)
  ngx.status = st
  if st == 304 then ngx.header["ETag"] = '"abc"' end
  ngx.exit(st)
end

----------------------------------------------------------------------------
-- SDK runners

-- POST /run {call = "credits.balance" | "credits.estimate" | "jobs.create" | "raw" | "download",
--   base_url =, api_key =, client = {...}, params = {...}, opts = {...}, path =, method =, output = }
function _M.run()
  ngx.req.read_body()
  local spec = json.decode(ngx.req.get_body_data() or "{}", true) or {}
  local c = client(spec)
  local t0 = now()
  local r, err
  local call = spec.call
  local opts = spec.opts
  if call == "credits.balance" then r, err = c.credits:balance(opts)
  elseif call == "credits.estimate" then r, err = c.credits:estimate(spec.params, opts)
  elseif call == "jobs.create" then r, err = c.jobs:create(spec.params, opts)
  elseif call == "jobs.list" then r, err = c.jobs:list(spec.params, opts)
  elseif call == "raw" then r, err = c:request(spec.method or "GET", spec.path, spec.params, opts)
  elseif call == "download" then r, err = c.jobs:download(spec.job_id, spec.path, opts)
  elseif call == "transport" then
    -- the adapter alone (exact res / err shapes)
    local t = require "ugen.transport.ngx"
    local calls, abort_after = 0, spec.abort_after
    local res, terr = t.request{ method = spec.method or "GET", url = spec.url, headers = spec.headers or {},
      body = spec.body, mime = spec.mime, output = spec.output, timeout = spec.timeout or 5,
      connect_timeout = spec.connect_timeout or 2, cainfo = spec.cainfo, follow = spec.follow,
      resume_from = spec.resume_from, low_speed_time = spec.low_speed_time, idempotent = spec.idempotent,
      on_progress = spec.progress and function(dltotal, dlnow)
        calls = calls + 1
        if abort_after and dlnow >= abort_after then return false end
        return dltotal >= 0
      end }
    return reply(200, { res = res, err = terr, elapsed = now() - t0, progress_calls = calls })
  else
    return reply(400, { error = "unknown call " .. tostring(call) })
  end
  if r then err = nil end
  reply(200, { ok = r ~= nil, result = r, err = err_table(err), elapsed = now() - t0,
               transport = c.transport_name })
end

-- GET /fanout?n=10&delay=1: n SDK calls in light threads of this request,
-- each to this same worker's slow endpoint.
function _M.fanout()
  local n = tonumber(ngx.var.arg_n) or 10
  local delay = tonumber(ngx.var.arg_delay) or 1
  local c = client{}
  local t0 = now()
  local threads = {}
  for i = 1, n do
    threads[i] = ngx.thread.spawn(function()
      local r, err = c.credits:balance{ headers = { ["X-Test-Delay"] = tostring(delay) } }
      return r and r.available_credits, (not r) and tostring(err) or nil, now() - t0
    end)
  end
  local out = {}
  for i = 1, n do
    local ok, credits, err, t = ngx.thread.wait(threads[i])
    out[i] = { ok = ok, credits = credits, err = err, t = t }
  end
  reply(200, { results = out, elapsed = now() - t0 })
end

-- GET /one?delay=1[&fail_once=key]: one SDK call (10 of these at once from outside)
function _M.one()
  local c = client{}
  local t0 = now()
  local h = { ["X-Test-Delay"] = ngx.var.arg_delay or "0" }
  if ngx.var.arg_fail_once then h["X-Test-Fail-Once"] = ngx.var.arg_fail_once end
  local r, err = c.credits:balance{ headers = h }
  reply(200, { ok = r ~= nil, credits = r and r.available_credits, err = (not r) and err_table(err) or nil,
               elapsed = now() - t0,
               started = t0 })
end

-- POST /wait_all {base_url, api_key, ids, opts}
function _M.wait_all()
  ngx.req.read_body()
  local spec = json.decode(ngx.req.get_body_data() or "{}", true)
  local c = client(spec)
  local progress = {}
  local o = spec.opts or {}
  o.on_progress = function(job, id, i)
    if spec.raise_on_progress then error("progress callback exploded") end
    progress[#progress + 1] = { id = id, i = i, stage = job.current_stage }
  end
  local t0 = now()
  local ok, jobs, errs
  local order = {}
  if spec.via == "jobs.wait_all" then        -- the client's own method (light threads)
    ok, jobs, errs = pcall(c.jobs.wait_all, c.jobs, spec.ids, o)
  elseif spec.via == "jobs.wait_any" then    -- the first job to finish, as results[i]
    ok, jobs, errs = pcall(function()
      local js, es = {}, {}
      local job, e, i = c.jobs:wait_any(spec.ids, o)
      if job then js[e] = job; order[1] = e else es[i] = e; order[1] = i end
      return js, es
    end)
  elseif spec.via == "jobs.as_finished" then -- every job, in finishing order
    ok, jobs, errs = pcall(function()
      local js, es = {}, {}
      for i, job, e in c.jobs:as_finished(spec.ids, o) do
        order[#order + 1] = i
        if job then js[i] = job else es[i] = e end
      end
      return js, es
    end)
  else
    ok, jobs, errs = pcall(ugen_ngx.wait_all, c, spec.ids, o)
  end
  if not ok then return reply(500, { raised = tostring(jobs), elapsed = now() - t0 }) end
  local out = {}
  for i = 1, #spec.ids do
    out[i] = { status = jobs[i] and jobs[i].status, job_id = jobs[i] and jobs[i].job_id, err = err_table(errs[i]),
               err_index = errs[i] and errs[i].index, err_job_id = errs[i] and errs[i].job_id }
  end
  reply(200, { results = out, order = order, progress_count = #progress, elapsed = now() - t0 })
end

-- GET /sleep_probe: the client's runtime sleep must yield (ngx.sleep), not block the worker.
function _M.sleep_probe()
  local t0 = now()
  ugen.new{ base_url = "http://127.0.0.1:9/api/v1" }.runtime.sleep(tonumber(ngx.var.arg_s) or 0.5)
  reply(200, { elapsed = now() - t0 })
end

----------------------------------------------------------------------------
-- webhooks

function _M.events()
  local dict = ngx.shared.events
  local n = dict:get("n") or 0
  local list = {}
  for i = 1, n do list[i] = json.decode(dict:get("e" .. i)) end
  reply(200, { events = list })
end

function _M.phase()
  local d = ngx.shared.phase
  reply(200, { init_worker = d:get("init_worker"), timer = d:get("timer"), log = d:get("log"),
               header_filter = d:get("header_filter"), init_transport = _M.init_transport })
end

-- log_by_lua / header_filter_by_lua: record what an SDK call does there.
function _M.call_in_phase(name)
  local ok, e = pcall(function() return _M.init_client.credits:balance() end)
  ngx.shared.phase:set(name, ok and "no error" or tostring(e))
end

return _M
