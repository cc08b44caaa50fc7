-- luacheck: globals ngx
-- One node of the cluster of spec/nginx/cluster_spec.lua (and the Redis
-- tests of spec/nginx/webhook_spec.lua): the SDK inside nginx, the webhook
-- handler with dedupe = { redis = ... }, and endpoints that create jobs and
-- wait for them with via = "webhook".
-- Config (DIR/app-config.lua): { name =, secret =, redis_port =, prefix =, lease =,
--   base_url =, api_key =, interval =, wait_timeout =, fail_open =, dict = }
local ugen = require "ugen"
local ugen_ngx = require "ugen.ngx"
local json = require "ugen.json"

local _M = {}
local cfg = {}

local function reply(status, t)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.print(json.encode(t))
end

local function now() ngx.update_time(); return ngx.now() end

-- one command on the test's own Redis connection (the app's side effects)
local function redis(cmd, ...)
  local lib = require("ugen.cluster.redis").lib()
  local red = lib:new()
  red:set_timeout(1000)
  local ok, err = red:connect("127.0.0.1", cfg.redis_port)
  if not ok then return nil, err end
  local res
  res, err = red[cmd](red, ...)
  if res == nil then red:close() else red:set_keepalive(10000, 50) end
  return res, err
end

function _M.init(c)
  cfg = c
  local prefix = cfg.prefix or ""
  local function on_event(event)
    local id = tostring(event.job_id)
    -- "5xx from the receiver": a job marked fail-once gets a 500 on its first processing
    if redis("srem", prefix .. "failonce", id) == 1 then return false, "told to fail once" end
    -- a synthetic event can ask for a slow handler (the lease tests)
    if type(event.sleep) == "number" and event.sleep_on == cfg.name then ngx.sleep(event.sleep) end
    -- the side effect the specs count: once per event across the cluster
    local n, err = redis("incr", prefix .. "effect:" .. id)
    if not n then
      -- a fail_open node with Redis down: counted on this node
      if cfg.fail_open then ngx.shared.local_effects:incr(id, 1, 0); return end
      return false, "redis: " .. tostring(err)
    end
    redis("rpush", prefix .. "handled_by:" .. id, cfg.name)
  end
  _M.hook = ugen_ngx.webhook_handler{
    secret = cfg.secret, on_event = on_event, lease = cfg.lease,
    -- dict = true: the single-node store (a lua_shared_dict), for comparison
    dedupe = cfg.dict and "ugen_webhooks" or { redis = { host = "127.0.0.1", port = cfg.redis_port, prefix = prefix,
                                                          timeout = 1, fail_open = cfg.fail_open or nil } },
  }
  _M.client = ugen.new{ base_url = cfg.base_url, api_key = cfg.api_key, max_retries = 5 }
end

local function state_of(job, err)
  if job then return job.status end
  if err and type(err.job) == "table" then return err.job.status end
  return "error: " .. tostring(err and (err.code or err.kind))
end

-- GET /job?key=K[&fault=F][&failonce=1][&fail=1][&lost=1][&interval=S][&timeout=S]: create (idempotently: the
-- same key gives the same job, also when the balancer re-sends this request
-- to another node) and wait with via = "webhook"
function _M.job()
  local a = ngx.req.get_uri_args()
  local c = _M.client
  local headers = a.fault and { ["X-Sandbox-Fault"] = a.fault } or nil
  local job, err = c.jobs:create({ product_name = a.fail and "Cluster mug [fail]" or "Cluster mug",
    product_image_url = "https://example.com/m.png", segment_count = 1, idempotency_key = a.key,
    webhook_url = a.lost and "http://127.0.0.1:9/lost" or nil },     -- lost: its webhook goes nowhere
    { headers = headers })
  if not job then return reply(502, { error = tostring(err) }) end
  if a.failonce then redis("sadd", (cfg.prefix or "") .. "failonce", job.job_id) end
  local t0 = now()
  local done, werr = c.jobs:wait(job.job_id, { via = "webhook", interval = tonumber(a.interval) or cfg.interval,
                                               timeout = tonumber(a.timeout) or cfg.wait_timeout })
  reply(200, { key = a.key, job_id = job.job_id, status = state_of(done, werr), waited = now() - t0,
               node = cfg.name, from_webhook = (done or (werr and werr.job) or {}).webhook_event ~= nil,
               kind = werr and werr.kind or nil })
end

-- GET /wait_all?ids=a,b,c: ugen.ngx.wait_all with via = "webhook"
function _M.wait_all()
  local ids = {}
  for id in (ngx.var.arg_ids or ""):gmatch("[^,]+") do ids[#ids + 1] = id end
  local t0 = now()
  local jobs, errs = ugen_ngx.wait_all(_M.client, ids, { via = "webhook", interval = cfg.interval,
                                                          timeout = cfg.wait_timeout })
  local out = {}
  for i = 1, #ids do out[i] = state_of(jobs[i], errs[i]) end
  reply(200, { states = out, waited = now() - t0, node = cfg.name })
end

-- GET /local_effect?id=: the side effect counted on this node (fail_open, Redis down)
function _M.local_effect()
  reply(200, { n = ngx.shared.local_effects:get(ngx.var.arg_id) or 0 })
end

-- GET /bad_config: webhook_handler's checks of dedupe = { redis = ... }
function _M.bad_config()
  local out = {}
  local function try(dedupe, extra)
    local o = { secret = "s", on_event = function() end, dedupe = dedupe }
    for k, v in pairs(extra or {}) do o[k] = v end
    local ok, e = pcall(ugen_ngx.webhook_handler, o)
    out[#out + 1] = ok and "no error" or tostring(e)
  end
  try({ redis = { port = "6379" } })
  try({ redis = { host = "127.0.0.1", bogus = 1 } })
  try({ redis = { ttl = -1 } })
  try({ memcached = {} })
  try(42)
  try({ redis = {} }, { lease = 0 })
  try({ redis = { password = "hunter2-secret", fail_open = "yes" } })
  reply(200, { errors = out })
end

-- GET /bad_via: the argument check
function _M.bad_via()
  local ok, e = pcall(_M.client.jobs.wait, _M.client.jobs, "x", { via = "push" })
  reply(200, { ok = ok, message = tostring(e) })
end

return _M
