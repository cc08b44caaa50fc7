-- ugen.endpoints: the one declarative table of every documented U-Gen endpoint.
--
-- Both the SDK (resource methods + client-side validation, lua/ugen/resources/*)
-- and the sandbox server (routing + server-side validation, sandbox/) are driven
-- by this table, so the two cannot drift. Source: UGEN-API.md / endpoints.json.
--
-- Endpoint fields:
--   resource   resource table on the client (client.jobs, client.credits, ...)
--   name       method name on that resource (client.jobs:create)
--   method     HTTP method
--   path       path relative to the base URL; {x} marks a path parameter
--   params     list of parameter specs (below); path params first, in path order
--   body       "json" | "multipart" | nil (no request body)
--   paging     "envelope" ({items,total,page,page_size,total_pages}) | "array"
--              (bare JSON array) | nil
--   success    documented success status, or nil where the docs are silent
--              (the SDK accepts any 2xx either way)
--   rate_limited  true where the docs say 429 + Retry-After applies
--   idempotency   name of the body field carrying the idempotency key
--   special    set where the resource module adds hand-written behaviour
--
-- Parameter spec fields:
--   name, ["in"] = "path"|"query"|"body"|"form", type = "string"|"integer"|
--   "number"|"boolean"|"object"|"array"|"file", items (element type for arrays),
--   required, default (documented default; informational, never sent),
--   min/max (inclusive numeric range; only where the docs state it), enum
--   (closed value set, enforced),
--   known (open value set: documented values, not enforced), formats/max_bytes
--   (files), doc (one line).
--
-- Choices where the docs are silent are written down in docs/api-choices.md.

local STAGES = { "prepare", "agents", "init", "generation", "concat", "audio", "captions", "complete" }

local PAGE = { name = "page", ["in"] = "query", type = "integer", min = 1, default = 1 }
local PAGE_SIZE = { name = "page_size", ["in"] = "query", type = "integer", min = 1, max = 100, default = 20 }

local IMAGE_TYPES = {
  jpeg = "image/jpeg", png = "image/png", webp = "image/webp", gif = "image/gif", svg = "image/svg+xml",
}
local AUDIO_TYPES = {
  mp3 = "audio/mpeg", wav = "audio/wav", ogg = "audio/ogg", aac = "audio/aac", m4a = "audio/mp4",
}

local MB = 1024 * 1024

local function file_param(formats, max_bytes, doc)
  return { name = "file", ["in"] = "form", type = "file", required = true,
           formats = formats, max_bytes = max_bytes, doc = doc }
end

local endpoints = {
  -- Jobs ------------------------------------------------------------------
  {
    resource = "jobs", name = "create", method = "POST", path = "/jobs", body = "json",
    rate_limited = true, idempotency = "idempotency_key", special = true,
    doc = "Create a UGC video generation job (reserves credits)",
    params = {
      { name = "product_name", ["in"] = "body", type = "string", required = true },
      { name = "product_image_url", ["in"] = "body", type = "string", required = true,
        doc = "e.g. the url from uploads:product_image" },
      { name = "segment_count", ["in"] = "body", type = "integer", required = true, min = 1, max = 10 },
      { name = "video_model", ["in"] = "body", type = "string",
        known = { "veo3_fast", "veo3", "kling3_std", "kling3_pro", "kling3_4k" },
        doc = "two doc snapshots disagree; the server decides (models:list)" },
      { name = "persona_id", ["in"] = "body", type = "string", doc = "omitted: random persona" },
      { name = "video_resolution", ["in"] = "body", type = "string", default = "standard", known = { "standard" } },
      { name = "aspect_ratio", ["in"] = "body", type = "string", default = "9:16",
        known = { "9:16", "16:9", "1:1" }, doc = "1:1 only with Kling models" },
      { name = "segment_duration", ["in"] = "body", type = "integer", default = 8, min = 3, max = 10,
        doc = "Veo: fixed 8; Kling: 3..10" },
      { name = "interaction_mode", ["in"] = "body", type = "string", default = "holdable",
        known = { "holdable", "display_static" } },
      { name = "environment_description", ["in"] = "body", type = "string" },
      { name = "key_selling_points", ["in"] = "body", type = "array", items = "string" },
      { name = "cta_text", ["in"] = "body", type = "string" },
      { name = "custom_script", ["in"] = "body", type = "string" },
      { name = "script_structure", ["in"] = "body", type = "string", default = "standard_5phase",
        known = { "standard_5phase" } },
      { name = "script_tone", ["in"] = "body", type = "string", default = "conversational",
        known = { "conversational" } },
      { name = "caption_style", ["in"] = "body", type = "string", default = "tiktok_karaoke",
        known = { "tiktok_karaoke" } },
      { name = "custom_caption_options", ["in"] = "body", type = "object" },
      { name = "music_enabled", ["in"] = "body", type = "boolean" },
      { name = "music_mood", ["in"] = "body", type = "string" },
      { name = "music_volume", ["in"] = "body", type = "number", default = 0.15,
        doc = "range not documented: the server decides" },
      { name = "custom_music_id", ["in"] = "body", type = "string" },
      { name = "voice_settings", ["in"] = "body", type = "object" },
      { name = "qai_enabled", ["in"] = "body", type = "boolean" },
      { name = "captions_enabled", ["in"] = "body", type = "boolean" },
      { name = "qai_mode", ["in"] = "body", type = "string", default = "lenient",
        enum = { "lenient", "standard", "strict" } },
      { name = "max_retries_keyframe", ["in"] = "body", type = "integer", default = 1, min = 0, max = 5 },
      { name = "max_retries_video", ["in"] = "body", type = "integer", default = 0, min = 0, max = 5 },
      { name = "human_review_max_rejections", ["in"] = "body", type = "integer", default = 0,
        doc = "range not documented: the server decides" },
      { name = "human_review_budget", ["in"] = "body", type = "string", default = "accept_best",
        known = { "accept_best" } },
      { name = "stop_at_stage", ["in"] = "body", type = "string", enum = STAGES },
      { name = "idempotency_key", ["in"] = "body", type = "string",
        doc = "generated (UUID v4) by the SDK when absent; reused on every retry" },
      { name = "webhook_url", ["in"] = "body", type = "string", doc = "per-job override of the tenant URL" },
    },
  },
  {
    resource = "jobs", name = "list", method = "GET", path = "/jobs", paging = "envelope", success = 200,
    doc = "List jobs, newest first", params = { PAGE, PAGE_SIZE },
  },
  {
    resource = "jobs", name = "get", method = "GET", path = "/jobs/{job_id}", success = 200,
    doc = "A job: status, current_stage, progress_percent, final_video_url",
    params = { { name = "job_id", ["in"] = "path", type = "string", required = true } },
  },

  -- Credits ---------------------------------------------------------------
  {
    resource = "credits", name = "balance", method = "GET", path = "/credits/balance", success = 200,
    doc = "credit_balance, credit_reserved, available_credits", params = {},
  },
  {
    resource = "credits", name = "transactions", method = "GET", path = "/credits/transactions",
    paging = "envelope", success = 200, doc = "The credit ledger, paginated",
    params = { PAGE, PAGE_SIZE, { name = "job_id", ["in"] = "query", type = "string" } },
  },
  {
    resource = "credits", name = "estimate", method = "POST", path = "/credits/estimate", body = "json",
    success = 200, doc = "Price a job before creating it (total + breakdown)",
    -- the docs list only some of its body fields (GAP); it prices a job, so the fields of
    -- jobs:create are accepted too (sent unvalidated); anything else is an unknown field
    also_accepts = "jobs.create",
    params = {
      { name = "segment_count", ["in"] = "body", type = "integer", min = 1, max = 10 },
      { name = "model_id", ["in"] = "body", type = "string" },
      { name = "variant", ["in"] = "body", type = "string", known = { "i2v" } },
      { name = "music_enabled", ["in"] = "body", type = "boolean" },
      { name = "voice_enabled", ["in"] = "body", type = "boolean" },
    },
  },

  -- Models ----------------------------------------------------------------
  {
    resource = "models", name = "list", method = "GET", path = "/models", paging = "array", success = 200,
    doc = "Available and beta models with capabilities", params = {},
  },
  {
    resource = "models", name = "get", method = "GET", path = "/models/{model_id}", success = 200,
    doc = "One model", params = { { name = "model_id", ["in"] = "path", type = "string", required = true } },
  },
  {
    resource = "models", name = "try", method = "POST", path = "/models/{model_id}/try", body = "json",
    doc = "Playground: start a one-off generation; returns a task id",
    open_body = true, -- body fields are not documented: passed through unvalidated
    params = { { name = "model_id", ["in"] = "path", type = "string", required = true } },
  },

  -- Tenant webhook configuration ----------------------------------------------
  {
    resource = "webhooks", name = "set", method = "PUT", path = "/tenants/me/webhook", body = "json",
    doc = "Set or replace the account's webhook URL and signing secret",
    params = {
      { name = "webhook_url", ["in"] = "body", type = "string", required = true, doc = "HTTPS required" },
      { name = "webhook_secret", ["in"] = "body", type = "string",
        doc = "omitted: deliveries are unsigned; ugen.webhook.new_secret() makes one" },
    },
  },
  {
    resource = "webhooks", name = "get", method = "GET", path = "/tenants/me/webhook", success = 200,
    doc = "The webhook config (never the secret)", params = {},
  },
  {
    resource = "webhooks", name = "delete", method = "DELETE", path = "/tenants/me/webhook",
    doc = "Remove the webhook URL and secret", params = {},
  },

  -- Tenant profile and brand kit -------------------------------------------------
  {
    resource = "tenant", name = "get", method = "GET", path = "/tenants/me", success = 200,
    doc = "The tenant profile (includes the avatar URL)", params = {},
  },
  {
    resource = "tenant", name = "upload_avatar", method = "POST", path = "/tenants/me/avatar",
    body = "multipart", special = true, doc = "Upload the profile avatar (replaces the old one)",
    params = { file_param({ png = IMAGE_TYPES.png, jpeg = IMAGE_TYPES.jpeg, webp = IMAGE_TYPES.webp },
                          2 * MB, "PNG, JPEG or WebP, at most 2 MB") },
  },
  {
    resource = "brand_kit", name = "upload_logo", method = "POST", path = "/tenants/me/brand-kit/logo",
    body = "multipart", special = true, doc = "Upload the brand logo (watermark; upsert)",
    params = { file_param({ png = IMAGE_TYPES.png, svg = IMAGE_TYPES.svg, webp = IMAGE_TYPES.webp },
                          2 * MB, "PNG, SVG or WebP, at most 2 MB") },
  },

  -- Uploads -----------------------------------------------------------------
  {
    resource = "uploads", name = "product_image", method = "POST", path = "/uploads/product-image",
    body = "multipart", success = 201, special = true,
    doc = "Upload a product image; returns {url} for product_image_url",
    params = { file_param({ jpeg = IMAGE_TYPES.jpeg, png = IMAGE_TYPES.png, webp = IMAGE_TYPES.webp,
                            gif = IMAGE_TYPES.gif }, 10 * MB, "JPEG, PNG, WebP or GIF, at most 10 MB") },
  },

  -- Music -------------------------------------------------------------------
  {
    resource = "music", name = "catalog", method = "GET", path = "/music/catalog", paging = "array",
    success = 200, doc = "Browse the built-in music catalog",
    params = {
      { name = "mood", ["in"] = "query", type = "string", known = { "upbeat" } },
      { name = "tempo", ["in"] = "query", type = "string" },
      { name = "limit", ["in"] = "query", type = "integer", default = 50 },
    },
  },
  {
    resource = "music", name = "list", method = "GET", path = "/music/custom", paging = "array",
    success = 200, doc = "The account's active custom tracks, newest first", params = {},
  },
  {
    resource = "music", name = "upload", method = "POST", path = "/music/custom", body = "multipart",
    special = true, doc = "Upload a custom music track",
    params = {
      file_param(AUDIO_TYPES, 20 * MB, "MP3, WAV, OGG, AAC or M4A, at most 20 MB"),
      { name = "title", ["in"] = "form", type = "string", required = true },
    },
  },
  {
    resource = "music", name = "delete", method = "DELETE", path = "/music/custom/{music_id}",
    doc = "Soft-delete a custom track",
    params = { { name = "music_id", ["in"] = "path", type = "string", required = true } },
  },

  -- Templates ---------------------------------------------------------------
  {
    resource = "templates", name = "list", method = "GET", path = "/templates", paging = "array",
    success = 200, doc = "The account's job templates",
    params = { { name = "limit", ["in"] = "query", type = "integer", default = 50 } },
  },
  {
    resource = "templates", name = "create", method = "POST", path = "/templates", body = "json",
    success = 201, doc = "Save a job configuration as a template (max 20 per account)",
    params = {
      { name = "name", ["in"] = "body", type = "string", required = true },
      { name = "description", ["in"] = "body", type = "string" },
      { name = "config", ["in"] = "body", type = "object", required = true },
      { name = "is_default", ["in"] = "body", type = "boolean", default = false },
    },
  },
}

local M = { list = endpoints, stages = STAGES, image_types = IMAGE_TYPES, audio_types = AUDIO_TYPES }

-- Index: M.by_name["jobs.create"], M.by_resource.jobs.create
M.by_name, M.by_resource = {}, {}
for _, ep in ipairs(endpoints) do
  M.by_name[ep.resource .. "." .. ep.name] = ep
  local r = M.by_resource[ep.resource]
  if not r then r = {}; M.by_resource[ep.resource] = r end
  r[ep.name] = ep
  ep.path_params, ep.by_param = {}, {}
  for _, p in ipairs(ep.params) do
    ep.by_param[p.name] = p
    if p["in"] == "path" then ep.path_params[#ep.path_params + 1] = p.name end
  end
end
for _, ep in ipairs(endpoints) do
  if ep.also_accepts then ep.also_accepts = assert(M.by_name[ep.also_accepts], ep.also_accepts).by_param end
end

return M
