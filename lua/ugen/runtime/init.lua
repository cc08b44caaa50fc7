-- ugen.runtime: how a client waits. One seam, chosen per client.
--
-- Everything of the SDK that waits (a request in flight, a backoff sleep, a
-- poll interval, several jobs at once, a download) goes through the runtime
-- of the client that makes the call. A runtime is a plain table of functions
-- (no self argument):
--
--   required
--     now()              -> monotonic seconds (deadlines, intervals)
--     sleep(s)           pause the caller s seconds: yield where the host can
--                        run something else meanwhile, block elsewhere
--     perform(req)       -> res | nil, err: send one request (the transport
--                        contract of ugen.transport) and return its answer;
--                        may yield
--   optional (client:spawn and jobs:wait_all / wait_any / as_finished need the
--   first three; a call that needs a missing one raises, naming it)
--     spawn(fn)          -> handle: run fn() concurrently. An error raised in
--                        fn ends that handle only and is reported by join_any
--                        (never raised into the host's loop)
--     join_any(handles[, timeout])
--                        -> handle, ok, ...: wait until one of `handles`
--                        (spawned here, not yet joined) has ended; ok, ... are
--                        true and fn's results, or false and the error.
--                        With timeout (seconds): nil when none ended in time
--     cancel(handle)     stop it: its pending wait is abandoned and it is never
--                        reported; nothing when it has ended already
--     step(timeout)      frame-loop hosts: run what is due, waiting at most
--                        timeout s -> seconds until the runtime next needs to
--                        run (0: at once), or nil when it has nothing to do
--     time()             wall-clock epoch seconds (default: the C core's clock)
--     name               a short string ("curl", "ngx", "tarantool", ...)
--
-- Implementations: ugen.runtime.curl (the libcurl scheduler: blocks outside its
-- tasks, yields inside them; ugen.run / client:spawn / client:step),
-- ugen.runtime.ngx (OpenResty: cosockets, ngx.sleep, ngx.thread),
-- ugen.runtime.tarantool (fibers; libcurl on tarantool's event loop),
-- ugen.runtime.luv (libuv drives the libcurl scheduler: Neovim, luvit) and
-- ugen.runtime.haproxy (HAProxy: httpclient / core.tcp, core.msleep, tasks). A host the
-- SDK does not know plugs its own in: ugen.new{ runtime = { ... } }.
--
--   runtime.resolve(runtime_opt, transport_opt[, level]) -> runtime table, transport name
--   runtime.check(rt[, level])    raises unless rt is a usable runtime table

local type, pairs, tostring, error, require, pcall, rawget, string_format =
  type, pairs, tostring, error, require, pcall, rawget, string.format

local _M = { _VERSION = "0.1.0" }

local FUNCS = {
  now = true, sleep = true, perform = true,
  spawn = false, join_any = false, cancel = false, step = false, time = false,
}

local function bad(level, fmt, ...)
  error("ugen.new: option 'runtime' " .. string_format(fmt, ...), level + 1)
end

function _M.check(rt, level)
  level = (level or 1) + 1
  if type(rt) ~= "table" then bad(level, "must be \"curl\", \"ngx\" or a table (got %s)", type(rt)) end
  for k, v in pairs(rt) do
    if k == "name" then
      if type(v) ~= "string" then bad(level, "field 'name' must be a string") end
    elseif FUNCS[k] == nil then
      bad(level, "has an unknown field '%s'", tostring(k))
    elseif type(v) ~= "function" then
      bad(level, "field '%s' must be a function (got %s)", k, type(v))
    end
  end
  for k, required in pairs(FUNCS) do
    if required and rt[k] == nil then bad(level, "is missing the required function '%s'", k) end
  end
  local n = (rt.spawn and 1 or 0) + (rt.join_any and 1 or 0) + (rt.cancel and 1 or 0)
  if n ~= 0 and n ~= 3 then bad(level, "must have all of spawn, join_any and cancel, or none of them") end
  return rt
end

-- The field a call needs, or a clear error at the caller's caller.
function _M.need(rt, field, what, level)
  local f = rt[field]
  if f == nil then
    error(string_format("ugen: %s needs a runtime with '%s' (this client's runtime '%s' has none)",
      what, field, tostring(rt.name or "?")), (level or 1) + 1)
  end
  return f
end

-- the one test for "inside nginx with cosockets" (ugen.transport's)
local in_nginx = require("ugen.transport").in_nginx
_M.in_nginx = in_nginx

-- the one test for "inside tarantool" (its runtime: ugen.runtime.tarantool)
local function in_tarantool()
  return type(rawget(_G, "_TARANTOOL")) == "string"
end
_M.in_tarantool = in_tarantool

-- inside HAProxy's Lua: the global `core` with its tasks and services
local function in_haproxy()
  local c = rawget(_G, "core")
  return type(c) == "table" and type(c.register_service) == "function"
    and type(c.register_task) == "function" and type(c.msleep) == "function" and type(c.tcp) == "function"
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function builtin(name, level)
  if name == "ngx" then
    if not in_nginx() then bad(level, "\"ngx\" needs OpenResty / lua-nginx-module") end
    return require("ugen.runtime.ngx").get()
  elseif name == "curl" then
    return require("ugen.runtime.curl").default():runtime()
  elseif name == "tarantool" then
    if not in_tarantool() then bad(level, "\"tarantool\" needs tarantool") end
    return require("ugen.runtime.tarantool").get()
  end
  bad(level, "must be \"curl\", \"ngx\" or a table (got \"%s\")", name)
end

-- the perform of a built-in transport name
local function builtin_perform(name, level)
  if name == "ngx" then
    local ok, t = pcall(require, "ugen.transport.ngx")
    if not ok then
      error("ugen.new: transport 'ngx' is not available: " .. tostring(t):match("^[^\n]*"), level + 1)
    end
    return t.request
  end
  return require("ugen.runtime.curl").default():runtime().perform
end

-- runtime_opt: nil | "curl" | "ngx" | table; transport_opt: nil | "curl" | "ngx" | function | table.
-- -> the client's runtime (a table of the interface above), transport name
--   runtime nil: "ngx" inside nginx, ugen.runtime.haproxy inside HAProxy (unless
--     transport names a built-in), "tarantool" inside tarantool, in Neovim
--     ugen.runtime.luv's nvim(), else the curl default scheduler's runtime
--   transport: a user adapter (function / table with :request) replaces the
--     runtime's perform; a built-in name other than the runtime's kind too
--     ("curl" inside nginx: blocking libcurl requests, ngx sleeps); a runtime
--     table with its own perform takes no transport.
function _M.resolve(runtime_opt, transport_opt, level)
  level = (level or 1) + 1
  local user_send, tname = require("ugen.transport").resolve(transport_opt, level)
  -- inside HAProxy (its `core`): ugen.runtime.haproxy, unless a built-in is named
  if runtime_opt == nil and type(transport_opt) ~= "string" and in_haproxy() then
    local rt = require("ugen.runtime.haproxy").get()
    if not user_send then return rt, "haproxy" end
    rt = copy(rt)
    rt.perform = user_send
    return rt, tname
  end
  if transport_opt == nil and (runtime_opt == "curl" or runtime_opt == "ngx") then tname = runtime_opt end
  local rt
  if runtime_opt == nil or type(runtime_opt) == "string" then
    local name = runtime_opt or (in_nginx() and "ngx" or in_tarantool() and "tarantool" or "curl")
    -- in Neovim the editor's libuv loop drives the libcurl runtime (ugen.runtime.luv)
    local luv = runtime_opt == nil and name == "curl" and rawget(_G, "vim") ~= nil and require("ugen.runtime.luv")
    rt = luv and luv.in_nvim() and luv.nvim() or builtin(name, level + 1)
    -- the tarantool runtime performs over libcurl too (the engine on its event loop)
    local kind = name == "tarantool" and "curl" or name
    if user_send == nil and tname ~= kind then user_send = builtin_perform(tname, level) end
    if user_send then
      rt = copy(rt)
      rt.perform = user_send
    end
    return rt, tname
  end
  if type(runtime_opt) ~= "table" then
    bad(level, "must be \"curl\", \"ngx\" or a table (got %s)", type(runtime_opt))
  end
  if transport_opt ~= nil and runtime_opt.perform ~= nil then
    error("ugen.new: give either option 'transport' or a runtime with its own perform, not both", level)
  end
  local r = copy(runtime_opt)
  if transport_opt ~= nil and r.perform == nil then
    r.perform = user_send or builtin_perform(tname, level)
  end
  rt = _M.check(r, level)
  if transport_opt ~= nil then return rt, tname end
  return rt, rt.name or "runtime"
end

return _M
