-- ugen_sandbox_server.handlers.account: the tenant's own settings and files:
-- PUT/GET/DELETE /tenants/me/webhook, GET /tenants/me, POST /tenants/me/avatar,
-- POST /tenants/me/brand-kit/logo, POST /uploads/product-image.
-- Handlers: name -> function(T, params, ctx) -> response (ugen_sandbox_server.http).

local util = require "ugen_sandbox_server.util"
local state = require "ugen_sandbox_server.state"
local clock = require "ugen_sandbox_server.clock"
local ledger = require "ugen_sandbox_server.ledger"
local webhooks = require "ugen_sandbox_server.webhooks"
local uploads = require "ugen_sandbox_server.uploads"
local http = require "ugen_sandbox_server.http"

local null = util.null
local R, value_error = http.response, http.value_error

local H = {}

local function webhook_view(T)
  local w = T.webhook
  return { webhook_configured = w ~= nil, webhook_url = w and w.url or null,
           webhook_secret_set = w ~= nil and w.secret ~= nil, updated_at = w and w.updated_at or null }
end

H["webhooks.set"] = function(T, b)
  local msg = webhooks.check_url(b.webhook_url)
  if msg then return value_error({ "body", "webhook_url" }, msg, b.webhook_url) end
  if b.webhook_secret == "" then
    return value_error({ "body", "webhook_secret" }, "Value error, webhook_secret must not be empty "
                       .. "(omit it for unsigned deliveries)", "")
  end
  T.webhook = { url = b.webhook_url, secret = b.webhook_secret, updated_at = clock.iso_now() }
  return R(200, webhook_view(T))
end

H["webhooks.get"] = function(T) return R(200, webhook_view(T)) end

H["webhooks.delete"] = function(T)
  T.webhook = nil
  return R(200, webhook_view(T))
end

local function profile(T)
  local t = T.tenant
  return {
    id = t.id, name = t.name, slug = t.slug, email = t.email, plan = "sandbox",
    avatar_url = util.orNull(T.avatar_url),
    brand_kit = { logo_url = util.orNull(T.logo_url), enabled = T.logo_url ~= nil, position = "bottom_right",
                  opacity = 0.8, size = 0.15, margin = 24 },
    credit_balance = T.balance, available_credits = ledger.available(T),
    limits = { concurrent_jobs = T.concurrent_limit, jobs_per_day = T.daily_limit },
    webhook_configured = T.webhook ~= nil, created_at = state.started_at,
  }
end

H["tenant.get"] = function(T) return R(200, profile(T)) end

H["tenant.upload_avatar"] = function(T, _, ctx)
  local rec, resp = uploads.store(T, ctx.ep, ctx.parts.file, "avatars")
  if not rec then return resp end
  T.avatar_url = rec.url
  return R(200, { avatar_url = rec.url, content_type = rec.content_type, size_bytes = rec.size_bytes,
                  updated_at = rec.created_at })
end

H["brand_kit.upload_logo"] = function(T, _, ctx)
  local rec, resp = uploads.store(T, ctx.ep, ctx.parts.file, "brand-kit")
  if not rec then return resp end
  T.logo_url = rec.url
  return R(200, { logo_url = rec.url, content_type = rec.content_type, size_bytes = rec.size_bytes,
                  updated_at = rec.created_at })
end

H["uploads.product_image"] = function(T, _, ctx)
  local rec, resp = uploads.store(T, ctx.ep, ctx.parts.file, "products")
  if not rec then return resp end
  return R(201, rec)
end

return H
