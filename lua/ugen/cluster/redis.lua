-- ugen.cluster.redis: the Redis side of an OpenResty cluster (inside nginx
-- only: cosockets, lua-resty-redis as `resty.redis` or Debian's `nginx.redis`).
--
--   local store = require("ugen.cluster.redis").new{
--     host = "127.0.0.1", port = 6379,        -- or socket = "unix:/run/redis.sock"
--     password =, db =,                        -- AUTH / SELECT on each new connection
--     timeout = 1,                             -- seconds, connect/send/read of one command
--     pool_size = 100, keepalive = 60,         -- connection pool per worker (idle seconds)
--     prefix = "",                             -- put before every key and the channel
--     ttl =,                                   -- seconds a signature / "done" mark is kept
--     result_ttl = 86400,                      -- seconds a job's terminal event is kept for waiters
--     fail_open = false,                       -- Redis down: 503 (false) or process anyway (true)
--   }
--
-- The store has the interface of ugen.webhook.memory_store (opts.replay of
-- webhook.verify) plus the event claims of ugen.ngx.webhook_handler:
--   store:seen(key, ttl)     -> false (recorded now) | true (already there) | nil, err
--                               one SET key 1 NX EX ttl
--   store:claim(key, lease)  -> "claimed" | "processing" | "done" | nil, err
--                               SET key processing NX PX lease*1000, else GET key
--   store:finish(key, ttl, job_event) -> true | nil, err
--                               MULTI; SET key done EX ttl; [SET job key; PUBLISH]; EXEC
--                               (job_event: a terminal event with a job_id, for waiters)
--   store:release(...)       -> DEL of the keys (a failed handler: the retry runs it)
--   store:result(job_id)     -> the terminal event table the cluster saw | nil (| nil, err)
-- Every key is prefix .. key; the channel is prefix .. "ugen:jobs", a job's
-- result key prefix .. "ugen:job:" .. job_id.

-- luacheck: globals ngx
local ngx = ngx
local args = require "ugen.args"
local json = require "ugen.json"

local type, tostring, pcall, require, setmetatable, pairs, ipairs, math_ceil, math_max, math_floor =
  type, tostring, pcall, require, setmetatable, pairs, ipairs, math.ceil, math.max, math.floor
local unpack = table.unpack or unpack -- luacheck: ignore 143

local _M = { _VERSION = "0.1.0", DEFAULT_LEASE = 15, DEFAULT_RESULT_TTL = 86400 }

-- lua-resty-redis: OpenResty's name, then Debian's (lua-nginx-redis)
local redis_lib
function _M.lib()
  if redis_lib == nil then
    local ok, m = pcall(require, "resty.redis")
    if not ok then ok, m = pcall(require, "nginx.redis") end
    redis_lib = ok and m or false
  end
  return redis_lib or nil
end

local OPTS = { host = true, port = true, socket = true, password = true, db = true, timeout = true,
               pool_size = true, keepalive = true, prefix = true, ttl = true, result_ttl = true,
               fail_open = true }

local Store = {}
Store.__index = Store
Store.__name = "ugen.cluster.redis"
Store.__tostring = function(s) return "ugen.cluster.redis(" .. s.where .. ")" end  -- no password

-- cfg: the options above (checked; raises naming `what` at `level`)
function _M.new(cfg, what, level)
  what, level = what or "redis", (level or 1) + 1
  local F = "webhook_handler"
  if type(cfg) ~= "table" then args.argerror(1, F, what .. " must be a table, got " .. type(cfg), level) end
  for k in pairs(cfg) do
    if not OPTS[k] then args.argerror(1, F, what .. ": unknown option '" .. tostring(k) .. "'", level) end
  end
  local function bad(msg) args.argerror(1, F, what .. "." .. msg, level) end
  local host, port, sock = cfg.host or "127.0.0.1", cfg.port or 6379, cfg.socket
  if sock ~= nil and not args.is_non_empty_string(sock) then bad("socket must be a non-empty string") end
  if not args.is_non_empty_string(host) then bad("host must be a non-empty string") end
  if not args.is_positive_integer(port) or port > 65535 then bad("port must be an integer 1-65535") end
  if cfg.password ~= nil and not args.is_non_empty_string(cfg.password) then bad("password must be a string") end
  if cfg.db ~= nil and not (args.is_positive_integer(cfg.db) or cfg.db == 0) then bad("db must be an integer >= 0") end
  for _, k in ipairs({ "timeout", "keepalive", "ttl", "result_ttl" }) do
    if cfg[k] ~= nil and not args.is_positive(cfg[k]) then bad(k .. " must be a positive number (seconds)") end
  end
  if cfg.pool_size ~= nil and not args.is_positive_integer(cfg.pool_size) then
    bad("pool_size must be a positive integer")
  end
  if cfg.prefix ~= nil and type(cfg.prefix) ~= "string" then bad("prefix must be a string") end
  if cfg.fail_open ~= nil and type(cfg.fail_open) ~= "boolean" then bad("fail_open must be a boolean") end
  if not _M.lib() then
    args.argerror(1, F, what .. ": lua-resty-redis is not installed (resty.redis / nginx.redis)", level)
  end
  local prefix = cfg.prefix or ""
  return setmetatable({
    host = host, port = port, socket = sock, password = cfg.password, db = cfg.db,
    timeout_ms = math_floor((cfg.timeout or 1) * 1000), pool_size = cfg.pool_size or 100,
    keepalive_ms = math_floor((cfg.keepalive or 60) * 1000), prefix = prefix, ttl = cfg.ttl,
    result_ttl = cfg.result_ttl or _M.DEFAULT_RESULT_TTL,
    fail_open = cfg.fail_open == true,
    channel = prefix .. "ugen:jobs",
    pool = "ugen-redis:" .. (sock or (host .. ":" .. port)) .. ":" .. tostring(cfg.db or 0),
    where = sock or (host .. ":" .. port),
  }, Store)
end

-- a connected client (pooled), or nil, err; timeout_ms: the socket timeout
function Store:connect(timeout_ms)
  local red, err = _M.lib():new()
  if not red then return nil, err end
  red:set_timeout(timeout_ms or self.timeout_ms)
  local ok
  if self.socket then
    ok, err = red:connect(self.socket, { pool = self.pool, pool_size = self.pool_size })
  else
    ok, err = red:connect(self.host, self.port, { pool = self.pool, pool_size = self.pool_size })
  end
  if not ok then return nil, "redis " .. self.where .. ": connect: " .. tostring(err) end
  if (red:get_reused_times() or 0) == 0 then
    if self.password then
      ok, err = red:auth(self.password)
      if not ok then red:close(); return nil, "redis " .. self.where .. ": AUTH failed: " .. tostring(err) end
    end
    if self.db and self.db ~= 0 then
      ok, err = red:select(self.db)
      if not ok then red:close(); return nil, "redis " .. self.where .. ": SELECT failed: " .. tostring(err) end
    end
  end
  return red
end

-- run fn(red) on a pooled connection -> fn's results | nil, err
function Store:with(fn)
  local red, err = self:connect()
  if not red then return nil, err end
  local r1, r2 = fn(red)
  if r1 == nil and r2 ~= nil then
    red:close()
    return nil, "redis " .. self.where .. ": " .. tostring(r2)
  end
  red:set_keepalive(self.keepalive_ms, self.pool_size)
  return r1, r2
end

local function whole(ttl) return math_max(1, math_ceil(ttl)) end

function Store:seen(key, ttl)
  local k = self.prefix .. key
  return self:with(function(red)
    local res, err = red:set(k, "1", "NX", "EX", whole(ttl))
    if res == nil then return nil, err end
    return res ~= "OK"              -- ngx.null: not set, the key was there
  end)
end

function Store:claim(key, lease)
  local k = self.prefix .. key
  return self:with(function(red)
    local res, err = red:set(k, "processing", "NX", "PX", math_max(1, math_floor((lease or _M.DEFAULT_LEASE) * 1000)))
    if res == nil then return nil, err end
    if res == "OK" then return "claimed" end
    local v
    v, err = red:get(k)
    if v == nil then return nil, err end
    if v == "done" then return "done" end
    return "processing"             -- (or expired in between: the sender's next retry claims it)
  end)
end

function Store:release(...)
  local keys = { ... }
  for i = 1, #keys do keys[i] = self.prefix .. keys[i] end
  return self:with(function(red) return red:del(unpack(keys)) end)
end

function Store:result_key(job_id)
  return self.prefix .. "ugen:job:" .. job_id
end

function Store:finish(key, ttl, job_event)
  local k = self.prefix .. key
  return self:with(function(red)
    red:init_pipeline()
    red:multi()
    red:set(k, "done", "EX", whole(ttl))
    if job_event then
      local payload = json.encode(job_event)
      red:set(self:result_key(tostring(job_event.job_id)), payload, "EX", whole(self.result_ttl))
      red:publish(self.channel, payload)
    end
    red:exec()
    local res, err = red:commit_pipeline()
    if not res then return nil, err end
    local exec = res[#res]
    if type(exec) ~= "table" or exec[1] == false then
      return nil, "MULTI/EXEC failed: " .. tostring(type(exec) == "table" and exec[2] or exec)
    end
    return true
  end)
end

function Store:result(job_id)
  return self:with(function(red)
    local v, err = red:get(self:result_key(job_id))
    if v == nil then return nil, err end
    if v == ngx.null then return false end
    local ev = json.decode(v)
    if type(ev) ~= "table" then return false end
    return ev
  end)
end

return _M
