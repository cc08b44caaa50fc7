-- ugen.ngx: OpenResty helpers (receiving webhooks, awaiting many jobs).
--
--   local ugen_ngx = require "ugen.ngx"
--
--   -- content_by_lua_block { handler() } ; handler built once (init_by_lua* or module level)
--   local handler = ugen_ngx.webhook_handler{
--     secret = os.getenv("UGEN_WEBHOOK_SECRET"),      -- or { new_secret, old_secret } (rotation)
--     on_event = function(event, info) ... end,       -- info.secret_index says which secret matched
--     tolerance = 300,                                -- seconds; false disables the age check
--     dedupe = "ugen_webhooks",                       -- lua_shared_dict name (replay protection)
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
--        retry), or the same event is being processed right now
--   413  body larger than max_body
--   500  on_event raised or returned false (the keys are released: the sender's
--        retry is processed normally); 503 the dedupe dict is full
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

local type, pairs, ipairs, tostring, tonumber, pcall, io_open =
  type, pairs, ipairs, tostring, tonumber, pcall, io.open

local _M = { _VERSION = "0.1.0", DEFAULT_MAX_BODY = 1048576 }

local args = require "ugen.args"
local argerror = args.argerror

local HANDLER_OPTS = { secret = true, on_event = true, tolerance = true, max_body = true, dedupe = true,
                       dedupe_ttl = true, replay_status = true }

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
  local dict_name, ttl = opts.dedupe, nil
  if dict_name ~= nil then
    if type(dict_name) ~= "string" then argerror(1, F, "dedupe must be a lua_shared_dict name", 2) end
    if not (ngx.shared and ngx.shared[dict_name]) then
      argerror(1, F, "dedupe: no lua_shared_dict named '" .. dict_name .. "' (add `lua_shared_dict " .. dict_name ..
        " 1m;` to the http block)", 2)
    end
    ttl = opts.dedupe_ttl or webhook.replay_ttl(tolerance)
    if not args.is_positive(ttl) then argerror(1, F, "dedupe_ttl must be a positive number", 2) end
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

    local dict = dict_name and ngx.shared[dict_name]
    local sig_key = webhook.replay_key(signature)
    if dict then
      local ok, derr = dict:add(sig_key, true, ttl)
      if not ok then
        if derr == "exists" then
          if replay_status == 200 then return answer(200, nil, nil, { duplicate = true }) end
          return answer(409, "REPLAYED", "this signed delivery was already received")
        end
        return answer(503, "DEDUPE_UNAVAILABLE", "replay protection store unavailable")
      end
      if ekey then
        ok, derr = dict:add(ekey, "processing", ttl)
        if not ok then
          if derr == "exists" then
            if dict:get(ekey) == "done" then
              return answer(200, nil, nil, { duplicate = true })
            end
            dict:delete(sig_key)
            return answer(409, "IN_PROGRESS", "this event is being processed")
          end
          dict:delete(sig_key)
          return answer(503, "DEDUPE_UNAVAILABLE", "replay protection store unavailable")
        end
      end
    end

    local info = {
      secret_index = matched, timestamp = ts, signature = signature, event_key = ekey,
      delivery_id = delivery, body = body, headers = headers,
    }
    local function release()
      if dict then
        dict:delete(sig_key)
        if ekey then dict:delete(ekey) end
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
    if dict and ekey then dict:set(ekey, "done", ttl) end
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
