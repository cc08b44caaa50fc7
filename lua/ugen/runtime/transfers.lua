-- ugen.runtime.transfers: the requests of a curl scheduler's tasks on its
-- libcurl engine, with per-origin backpressure. Owns the engine of a scheduler
-- (made on first use with max_host_connections = max_concurrency; the
-- engine's default of 64 when it is "auto"), the per-origin
-- ("scheme://host:port") FIFO queues (at most host_max requests in flight per
-- origin: sched.max, or with sched.max == nil ("auto") 64 over HTTP/1.1 and
-- 1024 over HTTP/2, learnt from the protocol of the origin's last answer and
-- assumed HTTP/2 for https until one says otherwise), sending a queued request
-- when a slot frees (bounded by what is left of its call's deadline),
-- collecting finished transfers and dropping the transfer of a cancelled task.
--
--   transfers.origin_of(url)         -> backpressure key ("?" without a URL)
--   transfers.DEFAULT_MAX_CONCURRENCY, .DEFAULT_MAX_CONCURRENCY_H2 -- "auto"'s limits
--                                       (ugen.runtime.curl exposes these same fields)
--   transfers.engine(sched)          -> its engine (ugen.core engine), made on demand
--   transfers.perform(sched, task, creq) -> res | nil, core err  (yields `task`)
--   transfers.collect(sched, wait)   -- engine:run(wait), wake the tasks whose transfer ended
--   transfers.completed(sched, done) -- the same for transfers a host's loop got from engine:act
--   transfers.pump_pending(sched)    -- send what slots freed by cancels allow
--
-- A queued request with a deadline has an expiry timer on sched.heap (entry
-- { task, queued = its queue entry }): the scheduler's timer pass sets
-- queued.task = nil and queued.expired = true when it fires first.
-- Scheduler fields used: engine, own_engine, max, hosts, transfers, inflight,
-- queued, to_pump, heap, stat. Requires ugen.url, ugen.native,
-- ugen.runtime.timer_heap and ugen.runtime.task.

local url_mod = require "ugen.url"
local native = require "ugen.native"
local timer_heap = require "ugen.runtime.timer_heap"
local task_mod = require "ugen.runtime.task"

local type, pcall, pairs, next, error = type, pcall, pairs, next, error
local string_sub = string.sub
local now = native.now
local wake, park = task_mod.wake, task_mod.park
local heap_add = timer_heap.add

-- max_concurrency = "auto": requests in flight per origin over HTTP/1.1 and over HTTP/2
local _M = { DEFAULT_MAX_CONCURRENCY = 64, DEFAULT_MAX_CONCURRENCY_H2 = 1024 }

-- per-origin backpressure key ("scheme://host:port"; "?" when there is none)
local function origin_of(url)
  return type(url) == "string" and url_mod.origin(url) or "?"
end
_M.origin_of = origin_of

local function engine(sched)
  local e = sched.engine
  if e == nil then
    e = native.engine{ max_host_connections = sched.max }
    sched.engine, sched.own_engine = e, true
  end
  return e
end
_M.engine = engine

local function host_of(sched, key)
  local h = sched.hosts[key]
  if h == nil then
    -- mux: the origin multiplexes (HTTP/2); assumed for https until an answer says otherwise
    h = { key = key, inflight = 0, q = {}, qh = 1, qt = 0, mux = string_sub(key, 1, 8) == "https://" }
    sched.hosts[key] = h
  end
  return h
end

-- requests `host` may have in flight (max_concurrency; "auto": by protocol)
local function host_max(sched, host)
  return sched.max or (host.mux and _M.DEFAULT_MAX_CONCURRENCY_H2 or _M.DEFAULT_MAX_CONCURRENCY)
end

local function submit(sched, host, entry)
  local req = entry.req
  local d = req.deadline
  if entry.queued_at and type(d) == "number" then
    -- sent later than asked: what is left of the call's deadline bounds it
    local left = d - now()
    if left < 1e-3 then left = 1e-3 end
    if type(req.timeout) ~= "number" or req.timeout > left then req.timeout = left end
    if type(req.connect_timeout) == "number" and req.connect_timeout > left then req.connect_timeout = left end
  end
  local t = engine(sched):submit(req)
  entry.transfer = t
  sched.transfers[t] = entry
  host.inflight = host.inflight + 1
  sched.inflight = sched.inflight + 1
  local st = sched.stat
  st.requests = st.requests + 1
  if sched.inflight > st.peak_inflight then st.peak_inflight = sched.inflight end
  if host.inflight > st.peak_host_inflight then st.peak_host_inflight = host.inflight end
end

-- send queued requests of `host` while it has free slots
local function pump_host(sched, host)
  while host.inflight < host_max(sched, host) and host.qh <= host.qt do
    local entry = host.q[host.qh]
    host.q[host.qh] = nil
    host.qh = host.qh + 1
    sched.queued = sched.queued - 1
    if entry.expiry then entry.expiry.task = nil end   -- sent before its deadline
    if entry.task ~= nil then
      local ok, err = pcall(submit, sched, host, entry)
      if not ok then          -- a bad request: raise it in the task that made it
        entry.raise = err
        wake(sched, entry.task, nil)
      end
    end
  end
  if host.qh > host.qt then host.qh, host.qt = 1, 0 end
end

-- a transfer the engine reports finished
local function complete(sched, t)
  local entry = sched.transfers[t]
  if entry == nil then t:close(); return end
  sched.transfers[t] = nil
  sched.inflight = sched.inflight - 1
  local host = entry.host
  host.inflight = host.inflight - 1
  local v = t:http_version()       -- what the answer came over tells whether the origin multiplexes
  if v ~= nil then host.mux = v == "2" or v == "3" end
  pump_host(sched, host)
  if entry.task ~= nil then wake(sched, entry.task, nil) else t:close() end
end

local function completed(sched, done)
  for i = 1, #done do complete(sched, done[i]) end
end
_M.completed = completed

function _M.collect(sched, wait)
  completed(sched, sched.engine:run(wait))
end

-- hosts with a slot freed by a cancel move their queues at the next round
-- (a cancel may run inside an engine callback, where nothing can be submitted)
function _M.pump_pending(sched)
  if next(sched.to_pump) == nil then return end
  local hosts = sched.to_pump
  sched.to_pump = {}
  for host in pairs(hosts) do pump_host(sched, host) end
end

-- the task of a transfer entry abandons it (cancel; its task field is cleared
-- already). Safe inside an engine callback: t:close() there is deferred by the
-- engine until the callback returned.
local function drop(sched, entry)
  if entry.expiry then entry.expiry.task = nil end
  local t = entry.transfer
  if t ~= nil then
    if sched.transfers[t] ~= nil then
      sched.transfers[t] = nil
      sched.inflight = sched.inflight - 1
      entry.host.inflight = entry.host.inflight - 1
      t:close()
      sched.to_pump[entry.host] = true
    else
      t:close()
    end
  end
end

-- one core request from `task` (running now): sent now or queued behind its
-- origin's limit (host_max); yields until it ended -> res | nil, core err
function _M.perform(sched, task, req)
  if task.cancelled then task_mod.raise_cancelled() end
  local host = host_of(sched, origin_of(req.url))
  local entry = { task = task, req = req, host = host, drop = drop }
  if host.inflight < host_max(sched, host) then
    submit(sched, host, entry)          -- raises here on a bad request
  else
    local qt = host.qt + 1
    host.qt = qt
    host.q[qt] = entry
    entry.queued_at = now()
    sched.queued = sched.queued + 1
    if sched.queued > sched.stat.peak_queued then sched.stat.peak_queued = sched.queued end
    if type(req.deadline) == "number" then
      entry.expiry = heap_add(sched.heap, { task = task, queued = entry }, req.deadline)
    end
  end
  park(task, entry)
  if entry.expired then
    return nil, { kind = "timeout", curl_code = 28, sent = false,
                  message = "the call's deadline passed while the request waited for a free slot " ..
                            "(max_concurrency)" }
  end
  if entry.raise ~= nil then error(entry.raise, 0) end
  local t = entry.transfer
  local res, err = t:result()
  t:close()
  return res, err
end

return _M
