-- ugen_sandbox_server.ticker: moves every running job and task along the sandbox
-- clock, so their side effects (settlement, webhooks) happen even when
-- nobody polls. Runs every 50 ms (ngx.timer.every) and after a clock change.

local state = require "ugen_sandbox_server.state"
local jobs = require "ugen_sandbox_server.jobs"
local tasks = require "ugen_sandbox_server.tasks"

local ngx = ngx
local pairs, ipairs, pcall = pairs, ipairs, pcall

local _M = { INTERVAL = 0.05 }

function _M.tick(premature)
  if premature then return end
  local list = {}
  for x in pairs(state.active) do list[#list + 1] = x end
  for _, x in ipairs(list) do
    local ok, err = pcall(x.task_id and tasks.advance or jobs.advance, x)
    if not ok then ngx.log(ngx.ERR, "sandbox tick: ", err) end
  end
end

return _M
