-- ugen: the Lua SDK for the U-Gen REST API.
--
--   local ugen = require "ugen"
--   local client = ugen.new{ api_key = os.getenv("UGEN_API_KEY") }
--   local job, err = client.jobs:create{ product_name = "Mug", product_image_url = url, segment_count = 3 }
--
-- Public fields: ugen.new, ugen.null, ugen.array, ugen.webhook, ugen.errors,
-- ugen.is_error, ugen._VERSION. See README.md and docs/.

local client = require "ugen.client"
local json = require "ugen.json"
local errors = require "ugen.errors"
local scheduler = require "ugen.runtime.curl"
local runtime = require "ugen.runtime"

local _M = {
  _VERSION = client._VERSION,
  DEFAULT_BASE_URL = client.DEFAULT_BASE_URL,
  new = client.new,        -- ugen.new(opts) -> client (raises on bad options)
  null = json.null,        -- send JSON null; decoded null with keep_null = true
  array = json.array,      -- ugen.array(t): encode as a JSON array, [] when empty
  errors = errors,         -- errors.is(err, kind), errors.KINDS
  is_error = errors.is,    -- ugen.is_error(err[, kind])
  run = scheduler.run,     -- ugen.run(fn, ...): fn in a scheduler task; SDK calls yield (ugen.scheduler)
  scheduler = scheduler,   -- ugen.runtime.curl: spawn / step / sleep / now / new / configure / default / current
  runtime = runtime,       -- ugen.runtime: check(rt), the interface of ugen.new{ runtime = ... }
}

-- Loaded on first use (a client that only calls the API never pays for it):
--   ugen.webhook  verify / sign / headers / new_secret / memory_store
setmetatable(_M, { __index = function(t, k)
  if k ~= "webhook" then return nil end
  local m = require("ugen.webhook")
  rawset(t, k, m)
  return m
end })

return _M
