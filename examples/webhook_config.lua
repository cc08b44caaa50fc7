-- Workflow 3 of the U-Gen API docs: configure the account's webhook.
--   lua examples/webhook_config.lua [URL]
-- URL defaults to the docs' "https://your-server.com/webhooks/ugen". The
-- secret comes from UGEN_WEBHOOK_SECRET, or a new one is made (like
-- `openssl rand -hex 32`) and printed once as an export line: keep it, your
-- receiver needs it (examples/webhook_handler.lua).
local setup = dofile((arg[0]:match("^(.*)/[^/]+$") or ".") .. "/_setup.lua")
local ugen = require "ugen"

local client = ugen.new(setup.client_options())
local url = arg[1] or "https://your-server.com/webhooks/ugen"
local secret = os.getenv("UGEN_WEBHOOK_SECRET")
local generated = false
if not secret or secret == "" then
  secret = ugen.webhook.new_secret()
  generated = true
end

local ok, err = client.webhooks:set{ webhook_url = url, webhook_secret = secret }
if not ok then setup.fail("webhooks:set", err) end

local cfg, gerr = client.webhooks:get()
if not cfg then setup.fail("webhooks:get", gerr) end
print(("webhook configured: %s (configured=%s)"):format(tostring(cfg.webhook_url), tostring(cfg.webhook_configured)))
if generated then print("export UGEN_WEBHOOK_SECRET=" .. secret) end
