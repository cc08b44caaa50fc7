-- ugen.ngx: OpenResty helpers (receiving webhooks, awaiting many jobs).
--
--   local ugen_ngx = require "ugen.ngx"
--
--   -- content_by_lua_block { handler() } ; handler built once (init_by_lua* or module level)
--   local handler = ugen_ngx.webhook_handler{
--     secret = os.getenv("UGEN_WEBHOOK_SECRET"),      -- or { new_secret, old_secret } (rotation)
--     on_event = function(event, info) ... end,       -- info.secret_index says which secret matched
--     tolerance = 300,                                -- seconds; false disables the age check
--     dedupe = "ugen_webhooks",                       -- lua_shared_dict name (replay protection, one node)
--     -- or, shared by every node of a cluster (docs/deployment.md):
--     -- dedupe = { redis = { host =, port =, prefix =, ttl =, password =, db =, timeout =,
--     --                      pool_size =, keepalive =, result_ttl =, fail_open = false } },
--     lease = 15,                                     -- seconds an event is held "processing"
--     max_body = 1048576,                             -- bytes; larger -> 413
--     replay_status = 409,                            -- status for a repeated signature (or 200)
--   }
--
--   local jobs, errs = ugen_ngx.wait_all(client, { id1, id2, ... },
--     { interval = 10, timeout = 1800, on_progress = function(job, id, i) end, max_concurrency = 64 })
--
-- The handler answers (JSON bodies {"ok": true} / {"ok": false, "error": CODE, "message": ...}):
--   200  verified and on_event succeeded; also {"duplicate": true} for an event
--        (event + job_id) that was already processed and comes again with a new
--        signature: that is the sender retrying because our earlier 2xx was lost,
--        and a 2xx is what stops its retries.
--   400  malformed: garbled signature/timestamp header, signed body that is not a JSON object
--   401  missing or wrong signature, timestamp missing or outside the tolerance
--   405  not a POST (Allow: POST)
--   409  replay: this exact signature was seen within 2 x tolerance (U-Gen signs
--        every attempt afresh, so a repeated signature is never a legitimate
--        retry), or the same event is being processed right now (IN_PROGRESS:
--        the sender retries; a handler that died holds the event for `lease`
--        seconds at most, then a retry processes it)
--   413  body larger than max_body
--   500  on_event raised or returned false (the keys are released: the sender's
--        retry is processed normally)
--   503  DEDUPE_UNAVAILABLE: the dedupe dict is full or Redis is unreachable
--        (fail closed: the sender retries; dedupe.redis.fail_open = true processes
--        the event without the shared check instead)
-- Exactly once per event across the nodes sharing the store: one SET NX EX per
-- delivery for its signature, then the event key is claimed "processing" for
-- `lease` seconds (SET NX PX) and set "done" (kept ttl seconds) after on_event
-- succeeded. on_event must finish within the lease (default 15 s: longer than
-- the sender's 10 s answer timeout, shorter than its last retry, +21 s).
-- With dedupe.redis, a job's terminal event (job.completed / job.failed) is
-- also published to the cluster with the "done" mark (one MULTI/EXEC), which
-- is what jobs:wait(id, { via = "webhook" }) on any node waits for.
-- on_event(event, info) runs in the request's light thread (cosockets usable);
-- it returns nothing/true (-> 200), false[, message] (-> 500) or an HTTP
-- status number. info = { secret_index =, timestamp =, signature =, event_key =,
-- delivery_id =, body = <raw>, headers = <ngx.req.get_headers()> }.
-- After the handler, ngx.ctx.ugen_webhook = { status =, code =, secret_index =,
-- event_key = } for logging. Secrets never appear in responses or logs.

-- luacheck: globals ngx
local ngx = ngx  -- ngx.status, ngx.header and ngx.ctx are written below
local webhook = require "ugen.webhook"
local json = require "ugen.json"
local cluster_redis = require "ugen.cluster.redis"
local notify = require "ugen.cluster.notify"

local type, pairs, ipairs, tostring, tonumber, pcall, io_open, select =
  type, pairs, ipairs, tostring, tonumber, pcall, io.open, select

local _M = { _VERSION = "0.1.0", DEFAULT_MAX_BODY = 1048576 }

local args = require "ugen.args"
local argerror = args.argerror

local HANDLER_OPTS = { secret = true, on_event = true, tolerance = true, max_body = true, dedupe = true,
                       dedupe_ttl = true, replay_status = true, lease = true }

local function respond(status, t)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(json.encode(t))
  return status
end

-- Status for a verify() failure.
local STATUS_FOR_CODE = {
  SIGNATURE_MISSING = 401, SIGNATURE_MISMATCH = 401, TIMESTAMP_MISSING = 401,
  TIMESTAMP_OUT_OF_TOLERANCE = 401, SIGNATURE_INVALID = 400, TIMESTAMP_INVALID = 400, BODY_INVALID = 400,
  REPLAYED = 409, REPLAY_STORE_UNAVAILABLE = 503,
}
_M.STATUS_FOR_CODE = STATUS_FOR_CODE

-- Raw request body (memory or nginx's temp file) -> body | nil, status, code, message
local function read_raw_body(max_body)
  local cl = ngx.var.http_content_length
  if cl then
    local n = tonumber(cl)
    if n and n > max_body then
      pcall(ngx.req.discard_body)
      return nil, 413, "BODY_TOO_LARGE", "request body larger than " .. max_body .. " bytes"
    end
  end
  local ok, rerr = pcall(ngx.req.read_body)
  if not ok then return nil, 400, "BODY_UNREADABLE", "cannot read the request body: " .. tostring(rerr) end
  local body = ngx.req.get_body_data()
  if body == nil then
    local path = ngx.req.get_body_file()
    if path then
      local f, ferr = io_open(path, "rb")
      if not f then return nil, 500, "BODY_UNREADABLE", "cannot open the buffered body: " .. tostring(ferr) end
      local size = f:seek("end")
      if size and size > max_body then
        f:close()
        return nil, 413, "BODY_TOO_LARGE", "request body larger than " .. max_body .. " bytes"
      end
      f:seek("set", 0)
      body = f:read("*a")
      f:close()
      if body == nil then return nil, 500, "BODY_UNREADABLE", "cannot read the buffered body" end
    else
      body = ""
    end
  end
  if #body > max_body then
    return nil, 413, "BODY_TOO_LARGE", "request body larger than " .. max_body .. " bytes"
  end
  return body
end
_M.read_raw_body = read_raw_body

-- The de-duplication key of a verified event: its id when it has one, else
-- event type + job id (UGEN-API.md 11.5); nil when neither is there.
local function event_key(event)
  local id = event.id or event.event_id
  if type(id) == "string" or type(id) == "number" then return "ugen:event:id:" .. tostring(id) end
  local ev, job = event.event, event.job_id
  if (type(ev) == "string") and (type(job) == "string" or type(job) == "number") then
    return "ugen:event:" .. ev .. ":" .. tostring(job)
  end
  return nil
end
_M.event_key = event_key

-- The shared-dict store: the interface of ugen.cluster.redis (seen, claim,
-- finish, release), on one node's lua_shared_dict.
local function dict_store(dict)
  local d = {}
  function d.seen(_, key, ttl)
    local ok, err = dict:add(key, true, ttl)
    if ok then return false end
    if err == "exists" then return true end
    return nil, err
  end
  function d.claim(_, key, lease)
    local ok, err = dict:add(key, "processing", lease)
    if ok then return "claimed" end
    if err ~= "exists" then return nil, err end
    return dict:get(key) == "done" and "done" or "processing"
  end
  function d.finish(_, key, ttl)
    return dict:set(key, "done", ttl)
  end
  function d.release(_, ...)
    for i = 1, select("#", ...) do dict:delete((select(i, ...))) end
    return true
  end
  return d
end

-- A job's terminal event (job.completed / job.failed with a job_id) -> the
-- event itself, for the cluster's waiters; nil for any other event.
local function terminal_event(event)
  local id = event.job_id
  if (type(id) == "string" or type(id) == "number")
     and (event.event == "job.completed" or event.event == "job.failed") then
    return event
  end
  return nil
end

function _M.webhook_handler(opts)
  local F = "webhook_handler"
  args.check_table(opts, 1, F, 2)
  local secrets = opts.secret
  if type(secrets) == "string" then secrets = { secrets } end
  if type(secrets) ~= "table" or #secrets == 0 then
    argerror(1, F, "secret must be a string or a non-empty list of strings, got " .. type(opts.secret), 2)
  end
  local list = {}
  for i, s in ipairs(secrets) do
    if not args.is_non_empty_string(s) then argerror(1, F, "secret #" .. i .. " must be a non-empty string", 2) end
    list[i] = s
  end
  local on_event = opts.on_event
  if type(on_event) ~= "function" then argerror(1, F, "on_event must be a function, got " .. type(on_event), 2) end
  local tolerance = opts.tolerance
  if tolerance == nil then tolerance = webhook.DEFAULT_TOLERANCE end
  if not webhook.valid_tolerance(tolerance) then
    argerror(1, F, "tolerance must be a finite number >= 0 or false", 2)   -- the rule verify applies
  end
  local max_body = opts.max_body or _M.DEFAULT_MAX_BODY
  if not args.is_positive_integer(max_body) then argerror(1, F, "max_body must be a positive integer (bytes)", 2) end
  local replay_status = opts.replay_status or 409
  if replay_status ~= 409 and replay_status ~= 200 then argerror(1, F, "replay_status must be 409 or 200", 2) end
  local store, ttl = nil, nil
  local dedupe = opts.dedupe
  local lease = opts.lease or cluster_redis.DEFAULT_LEASE
  if not args.is_positive(lease) then argerror(1, F, "lease must be a positive number (seconds)", 2) end
  if type(dedupe) == "string" then
    if not (ngx.shared and ngx.shared[dedupe]) then
      argerror(1, F, "dedupe: no lua_shared_dict named '" .. dedupe .. "' (add `lua_shared_dict " .. dedupe ..
        " 1m;` to the http block)", 2)
    end
    store = dict_store(ngx.shared[dedupe])
    ttl = opts.dedupe_ttl or webhook.replay_ttl(tolerance)
    if not args.is_positive(ttl) then argerror(1, F, "dedupe_ttl must be a positive number", 2) end
  elseif type(dedupe) == "table" then
    for k in pairs(dedupe) do
      if k ~= "redis" then
        argerror(1, F, "dedupe: unknown option '" .. tostring(k) .. "' (expected redis = {...})", 2)
      end
    end
    if opts.dedupe_ttl ~= nil then argerror(1, F, "dedupe_ttl is for a lua_shared_dict; use dedupe.redis.ttl", 2) end
    store = cluster_redis.new(dedupe.redis, "dedupe.redis", 2)
    ttl = store.ttl or webhook.replay_ttl(tolerance)
    notify.configure(store)        -- jobs:wait(id, { via = "webhook" }) finds the cluster through it
  elseif dedupe ~= nil then
    argerror(1, F, "dedupe must be a lua_shared_dict name or { redis = {...} }, got " .. type(dedupe), 2)
  end
  args.check_keys(opts, 1, F, HANDLER_OPTS, 2)

  return function()
    local ctx = {}
    ngx.ctx.ugen_webhook = ctx
    local function answer(status, code, message, extra)
      ctx.status, ctx.code = status, code
      local t = { ok = status >= 200 and status < 300 }
      if code then t.error = code end
      if message then t.message = message end
      for k, v in pairs(extra or {}) do t[k] = v end
      return respond(status, t), ctx
    end

    if ngx.req.get_method() ~= "POST" then
      ngx.header["Allow"] = "POST"
      pcall(ngx.req.discard_body)
      return answer(405, "METHOD_NOT_ALLOWED", "webhooks are delivered with POST")
    end
    local body, st, code, msg = read_raw_body(max_body)
    if not body then return answer(st, code, msg) end
    local headers = ngx.req.get_headers(200)

    -- the one implementation of ugen.webhook.verify: every secret tried, no early exit
    local event, matched, signature, ts = webhook.check(list, headers, body, tolerance, nil, true)
    local verr
    if not event then verr, matched = matched, signature end
    ctx.secret_index = matched
    if not event then
      local status = STATUS_FOR_CODE[verr.code] or 400
      if verr.kind == "decode" then status = 400 end
      return answer(status, verr.code or "BODY_INVALID", verr.message)
    end

    local ekey = event_key(event)
    local delivery = webhook.header_values(headers, "x-ugen-delivery")[1]
    ctx.event_key = ekey

    local ds = store            -- nil for this request when a fail_open store is down
    local sig_key = webhook.replay_key(signature)
    local function store_down(serr)
      ngx.log(ngx.ERR, "ugen webhook: replay store unavailable: ", tostring(serr))
      if ds.fail_open then
        ds = nil
        return nil
      end
      return answer(503, "DEDUPE_UNAVAILABLE", "replay protection store unavailable")
    end
    if ds then
      local seen, serr = ds:seen(sig_key, ttl)
      if seen == nil then
        local s1, s2 = store_down(serr)
        if s1 then return s1, s2 end
      elseif seen then
        if replay_status == 200 then return answer(200, nil, nil, { duplicate = true }) end
        return answer(409, "REPLAYED", "this signed delivery was already received")
      end
    end
    if ds and ekey then
      local claim, cerr = ds:claim(ekey, lease)
      if claim == nil then
        ds:release(sig_key)
        local s1, s2 = store_down(cerr)
        if s1 then return s1, s2 end
      elseif claim == "done" then
        return answer(200, nil, nil, { duplicate = true })
      elseif claim ~= "claimed" then
        ds:release(sig_key)
        return answer(409, "IN_PROGRESS", "this event is being processed")
      end
    end

    local info = {
      secret_index = matched, timestamp = ts, signature = signature, event_key = ekey,
      delivery_id = delivery, body = body, headers = headers,
    }
    local function release()
      if ds then
        if ekey then ds:release(sig_key, ekey) else ds:release(sig_key) end
      end
    end
    local res = { pcall(on_event, event, info) }
    if not res[1] then
      release()
      ngx.log(ngx.ERR, "ugen webhook: on_event raised: ", tostring(res[2]))
      return answer(500, "HANDLER_FAILED", "the event handler failed")
    end
    local r1, r2 = res[2], res[3]
    if r1 == false then
      release()
      return answer(500, "HANDLER_REFUSED", type(r2) == "string" and r2 or "the event handler refused the event")
    end
    if type(r1) == "number" and (r1 < 200 or r1 > 299) then
      release()
      return answer(r1, "HANDLER_STATUS", type(r2) == "string" and r2 or nil)
    end
    if ds and ekey then
      local ok, ferr = ds:finish(ekey, ttl, terminal_event(event))
      if not ok then
        -- the side effect happened: a 2xx (no retry); waiters learn it from their safety poll
        ngx.log(ngx.ERR, "ugen webhook: could not mark ", ekey, " done: ", tostring(ferr))
      end
    end
    ngx.log(ngx.INFO, "ugen webhook: accepted ", tostring(event.event), " (secret #", matched, ")")
    return answer(type(r1) == "number" and r1 or 200, nil, nil, matched > 1 and { secret_index = matched } or nil)
  end
end

---------------------------------------------------------------------------
-- wait_all: many jobs awaited concurrently in light threads

-- wait_all(client, ids[, opts]) -> jobs, errs: client.jobs:wait_all (the same
--   code, over the client's runtime: light threads inside nginx), kept as a
--   documented alias. Its own option: max_concurrency (default 64): at most
--   that many jobs awaited, so polls in flight, at once; the others start as
--   those end. An error raised by on_progress stops the other polls and is
--   re-raised as "ugen.ngx.wait_all: on_progress raised: ...".
function _M.wait_all(client, ids, opts)
  return require("ugen.resources.jobs_wait").ngx_wait_all(client, ids, opts)
end

return _M
