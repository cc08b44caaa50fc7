-- ugen_sandbox_server.state: everything the sandbox worker keeps in memory.
--
-- One table shared by the server modules (hence worker_processes 1: the
-- state is this worker's Lua tables). The seed part is filled by load() in
-- init_by_lua (the master) and inherited by the worker; the runtime part
-- (tenant data, the active set) is filled by the worker.
--
--   cfg           { seed, speed, start_speed, dir, port, root, owner_pid, tls }
--   origin        "http(s)://127.0.0.1:PORT" (URLs of generated media and uploads;
--                 https when started with tls = true)
--   tenants       the seeded tenants, in seed order; by_key[api_key], by_id[id]
--   models, models_by_id, personas (by id), catalog (music), jwt_secret
--   data          tenant id -> that tenant's runtime data (see ugen_sandbox_server.tenants)
--   active        job/task -> true while not terminal (what the ticker advances)
--   started_at    ISO time the worker started

local seed = require "ugen_sandbox_server.seed"
local crypto = require "ugen.crypto"

local ipairs, tostring, tonumber = ipairs, tostring, tonumber

local _M = {
  VERSION = "0.1.0",
  API = "/api/v1",
  cfg = nil, origin = nil,
  tenants = {}, by_key = {}, by_id = {},
  models = {}, models_by_id = {}, personas = {}, catalog = {}, jwt_secret = nil,
  data = {}, active = {}, started_at = nil,
}

--- Static seed data from the server config (init_by_lua).
function _M.load(conf)
  local cfg = conf
  cfg.speed = tonumber(cfg.speed) or 1
  cfg.start_speed = cfg.speed
  _M.cfg = cfg
  _M.origin = (cfg.tls and "https" or "http") .. "://127.0.0.1:" .. tostring(cfg.port)
  _M.tenants = seed.tenants(cfg.seed, crypto.hmac_sha256)
  for _, t in ipairs(_M.tenants) do _M.by_key[t.api_key] = t; _M.by_id[t.id] = t end
  _M.jwt_secret = seed.jwt_secret(cfg.seed)
  _M.models = seed.models
  for _, m in ipairs(_M.models) do _M.models_by_id[m.id] = m end
  for _, p in ipairs(seed.personas) do _M.personas[p.id] = p end
  _M.catalog = seed.music_catalog(cfg.seed)
  return cfg
end

return _M
