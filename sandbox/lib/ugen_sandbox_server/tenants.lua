-- ugen_sandbox_server.tenants: each seeded tenant's runtime data (T) and its reset.
--
-- T = { tenant (the seed record), balance, reserved, ledger, jobs, jobs_by_id,
--       idem (idempotency key -> {fingerprint, job_id}), webhook, templates,
--       music, music_by_id, uploads, avatar_url, logo_url, tasks, deliveries,
--       concurrent_limit, daily_limit }

local state = require "ugen_sandbox_server.state"
local ledger = require "ugen_sandbox_server.ledger"
local jobs = require "ugen_sandbox_server.jobs"

local pairs, ipairs = pairs, ipairs

local _M = {}

local function fresh(t)
  local T = {
    tenant = t, balance = 0, reserved = 0, ledger = {}, jobs = {}, jobs_by_id = {}, idem = {},
    webhook = nil, templates = {}, music = {}, music_by_id = {}, uploads = 0, avatar_url = nil,
    logo_url = nil, tasks = {}, deliveries = {},
    concurrent_limit = t.concurrent_limit, daily_limit = t.daily_limit,
  }
  ledger.add(T, "purchase", t.credits, nil, "Sandbox starting balance")
  return T
end

--- Restore seed tenant t to its seeded state -> its new runtime data.
function _M.reset(t)
  local old = state.data[t.id]
  if old then
    for _, j in ipairs(old.jobs) do state.active[j] = nil end
    for _, k in pairs(old.tasks) do state.active[k] = nil end
  end
  local T = fresh(t)
  state.data[t.id] = T
  if t.slug == "default" then
    -- The docs' example job id (UGEN-API.md section 15, workflow 2), running
    -- from the moment of the (re)seed with the docs' workflow 1 values.
    jobs.create(T, {
      product_name = "Premium Wireless Headphones", product_image_url = "https://example.com/headphones.jpg",
      persona_id = "09d3a33a-3eb0-480a-80df-0c64dbf7c98f", video_model = "veo3_fast", segment_count = 3,
      interaction_mode = "holdable", caption_style = "tiktok_karaoke", music_enabled = true,
    }, "550e8400-e29b-41d4-a716-446655440000", "seed-example-job")
  end
  return T
end

return _M
