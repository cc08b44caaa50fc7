-- The webhook receiver: verifies U-Gen's signature (both secrets while you
-- rotate), drops replays, and records each job's final state in a shared
-- dict that every worker can read.
local ugen_ngx = require "ugen.ngx"
local json = require "ugen.json"

local _M = {}

local handler

-- on_event runs once per event (duplicates and replays never reach it). It may
-- use cosockets (call the API, a database...). Return false to answer 500 and
-- have U-Gen retry later.
local function on_event(event, info)
  local jobs = ngx.shared.ugen_jobs
  if type(event.job_id) ~= "string" then return true end -- nothing we track
  local ok, err = jobs:set("job:" .. event.job_id, json.encode{
    event = event.event, status = event.status, final_video_url = event.final_video_url,
    thumbnail_url = event.thumbnail_url, error_message = event.error_message,
    credits_consumed = event.credits_consumed, received_at = ngx.now(),
  }, 7 * 86400)
  if not ok then
    ngx.log(ngx.ERR, "cannot store job ", event.job_id, ": ", err)
    return false, "storage full"
  end
  if info.secret_index > 1 then
    -- signed with the previous secret: U-Gen has not picked up the new one yet
    ngx.log(ngx.WARN, "ugen webhook signed with the previous secret (#", info.secret_index, ")")
  end
  ngx.log(ngx.INFO, "ugen ", event.event, " for job ", event.job_id)
  return true
end

-- Built once per nginx start (init_by_lua*): the options are checked here,
-- so a missing secret or dict stops nginx from starting instead of failing later.
function _M.init()
  local secrets = {}
  for _, name in ipairs({ "UGEN_WEBHOOK_SECRET", "UGEN_WEBHOOK_SECRET_OLD" }) do
    local s = os.getenv(name)
    if s and s ~= "" then secrets[#secrets + 1] = s end
  end
  if #secrets == 0 then
    error("set UGEN_WEBHOOK_SECRET (and list it with `env UGEN_WEBHOOK_SECRET;` in nginx.conf)")
  end
  handler = ugen_ngx.webhook_handler{
    secret = secrets,            -- new first; the old one is accepted until you remove it
    on_event = on_event,
    tolerance = 300,             -- seconds of clock skew / delivery delay accepted
    dedupe = "ugen_webhooks",    -- lua_shared_dict for replay protection
    max_body = 1024 * 1024,
  }
end

function _M.handle()
  return handler()
end

return _M
