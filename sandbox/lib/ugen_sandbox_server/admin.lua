-- ugen_sandbox_server.admin: the /_sandbox/* endpoints (not part of the U-Gen API):
-- health (no auth), the delivery log, reset, the clock, credits, limits and
-- cancelling a job. Authenticated like the API; they act on the caller's
-- tenant. See sandbox/README.md ("Admin endpoints").

local util = require "ugen_sandbox_server.util"
local faults = require "ugen_sandbox_server.faults"
local state = require "ugen_sandbox_server.state"
local clock = require "ugen_sandbox_server.clock"
local ledger = require "ugen_sandbox_server.ledger"
local jobs = require "ugen_sandbox_server.jobs"
local tenants = require "ugen_sandbox_server.tenants"
local ticker = require "ugen_sandbox_server.ticker"
local http = require "ugen_sandbox_server.http"
local auth = require "ugen_sandbox_server.auth"
local credits_balance = require("ugen_sandbox_server.handlers.credits")["credits.balance"]

local ngx = ngx
local type, ipairs, floor = type, ipairs, math.floor
local array = util.array
local E, R, value_error = http.error_response, http.response, http.value_error

local _M = {}

-- Bounds of the admin numbers: every value the clock, the ledger and the
-- limits hold stays finite and exact (no NaN, no infinity, no 1e308 that
-- makes the next arithmetic overflow or lose the sandbox clock's precision).
local ADMIN_MAX, ADMIN_MAX_TEXT = 1e9, "1000000000"
local SPEED_MAX, SPEED_MAX_TEXT = 1e6, "1000000"

--- Answer one /_sandbox/* request (path is the whole path) -> response.
function _M.handle(method, path)
  if path == "/_sandbox/health" then
    if method ~= "GET" then return E(405, "METHOD_NOT_ALLOWED", "Use GET", nil, { Allow = "GET, HEAD" }) end
    return R(200, { status = "ok", service = "u-gen sandbox", version = state.VERSION, port = state.cfg.port,
                    speed = state.cfg.speed, started_at = state.started_at, worker_pid = ngx.worker.pid() })
  end
  local routes = {
    ["/_sandbox/deliveries"] = "GET", ["/_sandbox/reset"] = "POST", ["/_sandbox/clock"] = "GET POST",
    ["/_sandbox/credits"] = "POST", ["/_sandbox/limits"] = "PUT",
  }
  local job_id = path:match("^/_sandbox/jobs/([^/]+)/cancel$")
  local allowed = job_id and "POST" or routes[path]
  if not allowed then return E(404, "NOT_FOUND", "No route for " .. method .. " " .. path) end
  if not allowed:find(method, 1, true) then
    return E(405, "METHOD_NOT_ALLOWED", "Method " .. method .. " not allowed on " .. path, nil,
             { Allow = allowed:gsub(" ", ", ") })
  end
  local T, aresp = auth.authenticate()
  if not T then return aresp end
  local q = http.query_args()
  local b = {}
  if method ~= "GET" then
    local body, resp = http.json_body()
    if not body then return resp end
    b = body
  end

  if path == "/_sandbox/deliveries" then
    local out = array()
    for _, d in ipairs(T.deliveries) do
      if (not q.job_id or d.job_id == q.job_id) and (not q.event or d.event == q.event) then out[#out + 1] = d end
    end
    return R(200, out)
  elseif path == "/_sandbox/reset" then
    local done = array()
    if q.all == "true" or b.all == true then
      faults.clear()
      -- (still-running jobs of other tenants stay on the new clock)
      clock.restart()
      for _, t in ipairs(state.tenants) do tenants.reset(t); done[#done + 1] = t.slug end
    else
      tenants.reset(T.tenant)
      done[1] = T.tenant.slug
    end
    return R(200, { reset = done })
  elseif path == "/_sandbox/clock" then
    if method == "POST" then
      local adv, speed = b.advance, b.speed
      if adv ~= nil and not (type(adv) == "number" and adv >= 0 and adv <= ADMIN_MAX) then
        return value_error({ "body", "advance" }, "Value error, advance must be a number of seconds from 0 to "
                           .. ADMIN_MAX_TEXT, adv)
      end
      if speed ~= nil and not (type(speed) == "number" and speed > 0 and speed <= SPEED_MAX) then
        return value_error({ "body", "speed" }, "Value error, speed must be a number above 0, at most "
                           .. SPEED_MAX_TEXT, speed)
      end
      if speed then
        -- continue the sandbox clock from where it is at the new rate
        clock.set_speed(speed)
      end
      clock.advance(adv or 0)
      ticker.tick()
    end
    return R(200, { sim_time = clock.now(), speed = state.cfg.speed })
  elseif path == "/_sandbox/credits" then
    local n = b.amount
    if not (type(n) == "number" and n == floor(n) and n ~= 0 and n >= -ADMIN_MAX and n <= ADMIN_MAX) then
      return value_error({ "body", "amount" }, "Value error, amount must be a non-zero integer from -"
                         .. ADMIN_MAX_TEXT .. " to " .. ADMIN_MAX_TEXT, b.amount)
    end
    ledger.add(T, n > 0 and "bonus" or "refund", n, nil, "Sandbox adjustment")
    return credits_balance(T)
  elseif path == "/_sandbox/limits" then
    for _, k in ipairs({ "concurrent_limit", "daily_limit" }) do
      local n = b[k]
      if n ~= nil then
        if not (type(n) == "number" and n == floor(n) and n >= 0 and n <= ADMIN_MAX) then
          return value_error({ "body", k }, "Value error, must be an integer from 0 to " .. ADMIN_MAX_TEXT, n)
        end
        T[k] = n
      end
    end
    return R(200, { concurrent_limit = T.concurrent_limit, daily_limit = T.daily_limit })
  else -- cancel
    local job = T.jobs_by_id[ngx.unescape_uri(job_id)]
    if not job then return E(404, "JOB_NOT_FOUND", "Job not found") end
    jobs.advance(job)
    if job.terminal then
      return E(409, "JOB_ALREADY_FINISHED", "Job is already " .. job.status, { status = job.status })
    end
    job.credits_consumed = 0
    jobs.finish(job, "cancelled")
    return R(200, jobs.public(job))
  end
end

return _M
