-- ugen.cluster.notify: jobs:wait(id, { via = "webhook" }) inside OpenResty:
-- a waiter parks until the webhook handler on ANY node of the cluster saw
-- the job's terminal event.
--
-- How the news travels: the handler that processed the event runs, in one
-- MULTI/EXEC, SET <prefix>ugen:job:<id> <event JSON> EX result_ttl and
-- PUBLISH <prefix>ugen:jobs <event JSON> (ugen.cluster.redis, Store:finish).
-- Every nginx worker that has a waiter runs ONE subscriber (an ngx.timer
-- holding a SUBSCRIBE connection) and wakes its own waiters with
-- ngx.semaphore. One subscriber per worker, not per node: a semaphore cannot
-- be posted across workers, so a per-node subscriber would have to relay
-- through a shared dict that every worker polls; a connection per worker is
-- cheaper and has no relay to lose.
--
-- Pub/sub is fire-and-forget, so the key is the truth and the message only a
-- wake-up: a waiter registers first, then GETs the key (an event handled
-- before it parked is found there), then parks. When the subscriber
-- (re)connects it wakes every waiter of its worker to GET the key again (a
-- message published while it was down is not lost). Redis unreachable: the
-- waiters sleep until their next safety poll (jobs_wait polls the API every
-- `interval`, default 60 s, and once just before the deadline).
--
--   notify.configure(store)   the node's webhook handler (ugen.ngx) calls it with its Redis store
--   notify.current()          -> that store | nil
--   notify.wait(store, job_id, seconds) -> event table | false (nothing within seconds)

-- luacheck: globals ngx
local ngx = ngx
local json = require "ugen.json"

local type, pairs, tostring, next = type, pairs, tostring, next

local _M = { _VERSION = "0.1.0", READ_TIMEOUT = 2 }

local current            -- set in init_by_lua (inherited by every worker) or init_worker_by_lua
function _M.configure(store) current = store end
function _M.current() return current end

local waiters = {}       -- job_id -> { [w] = true }, w = { sema =, ev = }
local running = false    -- the subscriber timer of this worker
_M.state = { subscribed = false, connects = 0 }

local function wake(job_id, ev)
  local set = waiters[job_id]
  if not set then return end
  for w in pairs(set) do
    w.ev = ev
    w.sema:post(1)
  end
end

local function wake_all()
  for _, set in pairs(waiters) do
    for w in pairs(set) do w.sema:post(1) end
  end
end

local function subscriber(premature, store)
  if premature then running = false; return end
  local exiting = ngx.worker.exiting
  while not exiting() do
    local red, err = store:connect(_M.READ_TIMEOUT * 1000)
    if red then
      local ok
      ok, err = red:subscribe(store.channel)
      if ok then
        _M.state.subscribed = true
        _M.state.connects = _M.state.connects + 1
        wake_all()                           -- whatever was published before: waiters re-check the keys
        while not exiting() do
          local res, rerr = red:read_reply()
          if res then
            if res[1] == "message" then
              local ev = json.decode(res[3])
              if type(ev) == "table" and ev.job_id ~= nil then wake(tostring(ev.job_id), ev) end
            end
          elseif rerr ~= "timeout" then
            err = rerr
            break
          end
        end
        _M.state.subscribed = false
      end
      red:close()
    end
    if exiting() then break end
    ngx.log(ngx.WARN, "ugen.cluster: job notifications from redis ", store.where, ": ", tostring(err),
      "; reconnecting")
    ngx.sleep(0.5)
  end
  running = false
end

local function ensure_running(store)
  if running then return end
  local ok, err = ngx.timer.at(0, subscriber, store)
  if ok then
    running = true
  else
    ngx.log(ngx.ERR, "ugen.cluster: cannot start the job notification subscriber: ", tostring(err))
  end
end
_M.start = ensure_running

-- -> the terminal event of job_id (a table) | false when none came within `seconds`
function _M.wait(store, job_id, seconds)
  ensure_running(store)
  local semaphore = require "ngx.semaphore"
  local w = { sema = semaphore.new() }
  local set = waiters[job_id]
  if not set then set = {}; waiters[job_id] = set end
  set[w] = true
  local ev
  ngx.update_time()
  local deadline = ngx.now() + seconds
  while true do
    local r = store:result(job_id)     -- false: not yet; nil, err: Redis down (wait for a wake-up or the time)
    if r then ev = r; break end
    ngx.update_time()
    local left = deadline - ngx.now()
    if left <= 0 then break end
    local ok = w.sema:wait(left)
    if w.ev then ev = w.ev; break end
    if not ok then break end
  end
  set[w] = nil
  if next(set) == nil then waiters[job_id] = nil end
  return ev or false
end

return _M
