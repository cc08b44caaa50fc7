-- The job submitter: HTTP handlers that create U-Gen jobs with the SDK. Inside
-- nginx the SDK talks over cosockets and sleeps with ngx.sleep, so a worker
-- keeps serving other requests while these wait.
-- luacheck: globals ngx
local ugen = require "ugen"
local ugen_ngx = require "ugen.ngx"
local json = require "ugen.json"

local _M = {}

local client

-- One client per worker, made at startup. It picks the "ngx" transport by
-- itself inside nginx; UGEN_BASE_URL points it at the sandbox if set.
function _M.init()
  client = ugen.new{ api_key = os.getenv("UGEN_API_KEY"), timeout = 30, max_retries = 2 }
end

local function reply(status, t)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.print(json.encode(t))
  return ngx.exit(status)
end

local function read_json()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then return nil end
  local t = json.decode(body)
  if type(t) ~= "table" then return nil end
  return t
end

-- An SDK error as a response: validation problems are the caller's fault
-- (422 with the fields), everything else is the upstream's (502).
local function fail(err)
  if err.kind == "validation" then
    return reply(422, { error = err.message, fields = err.fields })
  end
  return reply(err.kind == "insufficient_credits" and 402 or 502,
               { error = tostring(err), kind = err.kind, retryable = err.retryable })
end

local function job_params(p)
  return {
    product_name = p.product_name, product_image_url = p.product_image_url,
    segment_count = p.segment_count or 3,
    -- the webhook tells us when it is done (tenant webhook configured with
    -- client.webhooks:set, or per job:)
    webhook_url = p.webhook_url,
  }
end

-- POST /videos
function _M.create()
  if ngx.req.get_method() ~= "POST" then return reply(405, { error = "POST only" }) end
  local p = read_json()
  if not p then return reply(400, { error = "JSON object body expected" }) end
  -- jobs:create sends an idempotency key (a retried create never makes two jobs)
  local job, err = client.jobs:create(job_params(p))
  if not job then return fail(err) end
  return reply(202, { job_id = job.job_id, status = job.status, status_url = "/videos/" .. job.job_id })
end

-- POST /videos/batch {products = [...], wait = 600}: create them all, then
-- await them all at once (one light thread per job, one deadline).
function _M.batch()
  local p = read_json()
  if not p or type(p.products) ~= "table" or #p.products == 0 then
    return reply(400, { error = "{\"products\": [...]} expected" })
  end
  local ids, out = {}, {}
  for i, prod in ipairs(p.products) do
    local job, err = client.jobs:create(job_params(prod))
    if not job then return fail(err) end
    ids[i] = job.job_id
  end
  local jobs, errs = ugen_ngx.wait_all(client, ids, { interval = tonumber(p.interval) or 10,
                                                      timeout = tonumber(p.wait) or 600 })
  for i, id in ipairs(ids) do
    local j, e = jobs[i], errs[i]
    out[i] = { job_id = id, status = j and j.status or (e.job and e.job.status) or e.kind,
               final_video_url = j and j.final_video_url, error = e and e.message }
  end
  return reply(200, { jobs = out })
end

-- GET /videos/<id>
function _M.status(job_id)
  local known = ngx.shared.ugen_jobs:get("job:" .. job_id)
  if known then
    local t = json.decode(known)
    t.job_id, t.source = job_id, "webhook"
    return reply(200, t)
  end
  local job, err = client.jobs:get(job_id)
  if not job then
    if err.kind == "not_found" then return reply(404, { error = "no such job" }) end
    return fail(err)
  end
  return reply(200, { job_id = job_id, status = job.status, current_stage = job.current_stage,
                      progress_percent = job.progress_percent, source = "api" })
end

return _M
