-- ugen.sched: the one seam through which the SDK waits.
--
-- Every wait of the SDK goes through these functions and nothing else:
--   sched.now()          monotonic seconds (deadlines, intervals)
--   sched.time()         wall-clock epoch seconds (Retry-After dates, webhook timestamps)
--   sched.sleep(s)       pause the caller for s seconds (backoff, Retry-After, jobs:wait)
--   sched.perform(req)   run one core request to completion -> res | nil, err
--   sched.engine()       the process-wide libcurl engine (one multi handle)
--
-- The implementations here block the calling thread (nanosleep and
-- engine:request, which sleeps in curl_multi_poll). A scheduler (ugen.run,
-- issue 5) installs itself with sched.set_backend{sleep=, perform=} so that
-- inside its coroutines the same calls yield instead; no caller changes.

local _M = { _VERSION = "0.1.0" }

local core_mod
local function core()
  if core_mod == nil then
    local ok, m = pcall(require, "ugen.core")
    if not ok then
      error("ugen: the C core (ugen.core) cannot be loaded; build it with `make build` " ..
            "or install the rock (" .. tostring(m):match("^[^\n]*") .. ")", 3)
    end
    core_mod = m
  end
  return core_mod
end
_M.core = core

local engine
function _M.engine()
  if engine == nil then
    engine = core().engine{}
  end
  return engine
end

local blocking = {}

function blocking.sleep(s)
  if s > 0 then core().sleep(s) end
end

function blocking.perform(req)
  return _M.engine():request(req)
end

-- Inside nginx (lua-nginx-module) the default sleep is ugen.transport.ngx's:
-- ngx.sleep wherever the phase allows it, so a worker never blocks.
local default = blocking
local ngx_global = rawget(_G, "ngx")
if type(ngx_global) == "table" and type(ngx_global.sleep) == "function"
   and type(ngx_global.get_phase) == "function" then
  local ok, t = pcall(require, "ugen.transport.ngx")
  if ok then default = { sleep = t.sleep, perform = blocking.perform } end
end

local backend = default

-- Install another backend (a table with sleep and perform); nil restores the
-- default one (blocking; ngx.sleep-based inside nginx). Returns the previous backend.
function _M.set_backend(b)
  local prev = backend
  backend = b or default
  return prev
end

function _M.now() return core().now() end
function _M.time() return core().time() end

function _M.sleep(s)
  if type(s) ~= "number" or s ~= s then
    error("bad argument #1 to 'sleep' (number expected, got " .. type(s) .. ")", 2)
  end
  return backend.sleep(s)
end

function _M.perform(req)
  return backend.perform(req)
end

return _M
