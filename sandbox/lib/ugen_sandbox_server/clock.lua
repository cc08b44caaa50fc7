-- ugen_sandbox_server.clock: the sandbox's job clock.
--
-- Sandbox seconds run `speed` times faster than real ones (--speed, or
-- POST /_sandbox/clock {"speed"}), and can be moved forward at once
-- ({"advance"}). Jobs and tasks remember the sandbox time they were created at
-- (created_sim) and compute their state from it.

local state = require "ugen_sandbox_server.state"
local util = require "ugen_sandbox_server.util"

local ngx = ngx
local pairs = pairs

local _M = { DAY = 86400 }

local t0, offset = 0, 0

--- Sandbox seconds since the clock started.
function _M.now() return (ngx.now() - t0) * state.cfg.speed + offset end

--- The real time, ISO-8601 UTC (timestamps in responses).
function _M.iso_now() return util.iso(ngx.now()) end

--- Start at 0 (init_worker).
function _M.start() t0, offset = ngx.now(), 0 end

--- Change the rate from now on; the sandbox time continues from where it is.
function _M.set_speed(speed)
  offset, t0 = _M.now(), ngx.now()
  state.cfg.speed = speed
end

--- Move the clock forward by s sandbox seconds.
function _M.advance(s) offset = offset + s end

--- Back to 0 at the start speed; running jobs and tasks keep their progress.
function _M.restart()
  local s = _M.now()
  t0, offset = ngx.now(), 0
  state.cfg.speed = state.cfg.start_speed
  for x in pairs(state.active) do x.created_sim = x.created_sim - s end
end

return _M
