-- ugen_sandbox_server.seed: the sandbox's deterministic seed data.
--
-- Pure Lua (5.1-5.4, LuaJIT): loaded by the nginx worker and by the
-- manager ugen.sandbox (lua/ugen/sandbox/init.lua), which must agree on every tenant's API
-- key and JWT without talking to each other. Everything here derives from the
-- --seed value through a small deterministic generator; the only outside input
-- is an HMAC-SHA256 function (hex output) used to sign the JWTs.
--
--   seed.tenants(seed, hmac_hex) -> list of tenants (see TENANTS below)
--   seed.models, seed.personas, seed.music_catalog(seed)
--   seed.base64url(s), seed.base64url_decode(s), seed.from_hex(h)

local _M = { _VERSION = "0.1.0" }

local floor, byte, char, format, concat = math.floor, string.byte, string.char, string.format, table.concat

-- Deterministic generator: 32-bit LCG (exact in doubles and 5.3+ integers);
-- only the high bits are used.
local function rng(seed_str, salt)
  local x = 5381
  local s = tostring(seed_str) .. "\0" .. tostring(salt)
  for i = 1, #s do x = (x * 33 + byte(s, i)) % 4294967296 end
  local gen = {}
  function gen.byte()
    x = (1664525 * x + 1013904223) % 4294967296
    return floor(x / 16777216) -- top 8 bits
  end
  function gen.hex(n)
    local out = {}
    for i = 1, n do out[i] = format("%x", floor(gen.byte() / 16)) end
    return concat(out)
  end
  function gen.uuid4()
    local h = gen.hex(32)
    local variant = ({ "8", "9", "a", "b" })[floor(gen.byte() / 64) + 1]
    return h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-4" .. h:sub(14, 16) .. "-" .. variant .. h:sub(18, 20)
      .. "-" .. h:sub(21, 32)
  end
  return gen
end
_M.rng = rng

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

function _M.base64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1, c2 = floor(n / 262144) % 64, floor(n / 4096) % 64
    local c3, c4 = floor(n / 64) % 64, n % 64
    out[#out + 1] = B64:sub(c1 + 1, c1 + 1) .. B64:sub(c2 + 1, c2 + 1)
      .. (b and B64:sub(c3 + 1, c3 + 1) or "") .. (c and B64:sub(c4 + 1, c4 + 1) or "")
  end
  return concat(out)
end

local B64_INDEX = {}
for i = 1, 64 do B64_INDEX[byte(B64, i)] = i - 1 end

-- -> decoded string, or nil for invalid input
function _M.base64url_decode(s)
  if type(s) ~= "string" or #s % 4 == 1 then return nil end
  local out = {}
  for i = 1, #s, 4 do
    local n, count = 0, 0
    for j = i, i + 3 do
      local ch = byte(s, j)
      if ch then
        local v = B64_INDEX[ch]
        if not v then return nil end
        n = n * 64 + v
        count = count + 1
      else
        n = n * 64
      end
    end
    local b1, b2, b3 = floor(n / 65536) % 256, floor(n / 256) % 256, n % 256
    if count == 4 then out[#out + 1] = char(b1, b2, b3)
    elseif count == 3 then out[#out + 1] = char(b1, b2)
    else out[#out + 1] = char(b1) end
  end
  return concat(out)
end

function _M.from_hex(h)
  return (h:gsub("%x%x", function(x) return char(tonumber(x, 16)) end))
end

-- The seeded accounts. `credits`, `concurrent_limit` and `daily_limit` are the
-- starting values; /_sandbox/reset restores them.
local TENANTS = {
  { slug = "default", name = "Sandbox Studio", email = "dev@sandbox.u-gen.test",
    credits = 100000, concurrent_limit = 50, daily_limit = 5000,
    doc = "the default account: plenty of credits, generous limits" },
  { slug = "acme", name = "Acme Corp", email = "ops@acme.sandbox.u-gen.test",
    credits = 10000, concurrent_limit = 10, daily_limit = 500,
    doc = "a second normal account (isolation tests)" },
  { slug = "lowcredit", name = "Low Credit Ltd", email = "billing@lowcredit.sandbox.u-gen.test",
    credits = 50, concurrent_limit = 10, daily_limit = 500,
    doc = "50 credits: less than any job costs (402 tests)" },
  { slug = "limited", name = "Limited Plan Inc", email = "dev@limited.sandbox.u-gen.test",
    credits = 100000, concurrent_limit = 1, daily_limit = 3,
    doc = "1 concurrent job, 3 jobs per day (429 tests)" },
}
_M.TENANT_SPECS = TENANTS

-- JWTs are HS256 over a seed-derived secret; iat 2026-01-01, exp 2100-01-01
-- (the expired one: exp 2026-01-01T01:00:00Z).
local JWT_IAT, JWT_EXP, JWT_EXPIRED = 1767225600, 4102444800, 1767229200

local function jwt(secret, hmac_hex, sub, exp)
  local header = _M.base64url('{"alg":"HS256","typ":"JWT"}')
  local payload = _M.base64url(format(
    '{"aud":"authenticated","exp":%d,"iat":%d,"iss":"ugen-sandbox","role":"authenticated","sub":"%s"}',
    exp, JWT_IAT, sub))
  local signing_input = header .. "." .. payload
  return signing_input .. "." .. _M.base64url(_M.from_hex(hmac_hex(secret, signing_input)))
end

--- The JWT signing secret for a seed.
function _M.jwt_secret(seed)
  return "sandbox-jwt-" .. rng(seed, "jwt-secret").hex(40)
end

--- The tenant list for a seed: { id, slug, name, email, api_key, jwt,
-- jwt_expired, credits, concurrent_limit, daily_limit, doc }.
function _M.tenants(seed, hmac_hex)
  local secret = _M.jwt_secret(seed)
  local list = {}
  for i, spec in ipairs(TENANTS) do
    local g = rng(seed, "tenant-" .. spec.slug)
    local t = {}
    for k, v in pairs(spec) do t[k] = v end
    t.id = g.uuid4()
    t.api_key = "ugen_sk_test_" .. spec.slug .. "_" .. g.hex(32)
    t.jwt = jwt(secret, hmac_hex, t.id, JWT_EXP)
    t.jwt_expired = jwt(secret, hmac_hex, t.id, JWT_EXPIRED)
    list[i] = t
  end
  return list
end

-- Personas (the docs' example persona id is one of them).
_M.personas = {
  { id = "09d3a33a-3eb0-480a-80df-0c64dbf7c98f", name = "Maya", age_range = "25-34", style = "casual" },
  { id = "5b1e7f42-8c3d-4a6e-9f21-3d4c5b6a7e80", name = "Jordan", age_range = "18-24", style = "energetic" },
  { id = "a7c9e1d3-2b4f-4d6a-8c0e-1f3a5b7c9d2e", name = "Priya", age_range = "35-44", style = "expert" },
  { id = "e2f4a6b8-c0d2-4e4f-a6b8-c0d2e4f6a8b0", name = "Sam", age_range = "45-54", style = "calm" },
}

local KLING_DURATIONS = { 3, 4, 5, 6, 7, 8, 9, 10 }

-- Model registry. `jobs` = usable as a job video_model; `pricing` drives the
-- estimate (per_second for Kling, per_segment for Veo). A coming_soon model
-- is in the registry (GET /models/{id} works) but not in GET /models.
_M.models = {
  { id = "veo3_fast", name = "Veo 3.1 Fast", family = "veo_3_1", vendor = "Google DeepMind", category = "video",
    status = "available", tier = "standard", default_variant = "i2v", jobs = true, playground = true,
    pricing = { per_segment = 30 }, keyframe_tier = "1k",
    capabilities = { supported_aspect_ratios = { "9:16", "16:9", "Auto" }, supported_durations = { 8 },
                     fixed_duration = 8, supports_keyframes = true, supports_sound = false,
                     supports_elements = false } },
  { id = "veo3", name = "Veo 3.1 Quality", family = "veo_3_1", vendor = "Google DeepMind", category = "video",
    status = "available", tier = "premium", default_variant = "i2v", jobs = true, playground = true,
    pricing = { per_segment = 60 }, keyframe_tier = "1k",
    capabilities = { supported_aspect_ratios = { "9:16", "16:9", "Auto" }, supported_durations = { 8 },
                     fixed_duration = 8, supports_keyframes = true, supports_sound = false,
                     supports_elements = false } },
  { id = "kling3_std", name = "Kling 3.0 Standard", family = "kling_3", vendor = "Kuaishou", category = "video",
    status = "available", tier = "standard", default_variant = "i2v", jobs = true, playground = true,
    pricing = { per_second = 6 }, keyframe_tier = "1k",
    capabilities = { supported_aspect_ratios = { "9:16", "16:9", "1:1" }, supported_durations = KLING_DURATIONS,
                     supports_keyframes = true, supports_sound = true, supports_elements = true } },
  { id = "kling3_pro", name = "Kling 3.0 Pro", family = "kling_3", vendor = "Kuaishou", category = "video",
    status = "available", tier = "premium", default_variant = "i2v", jobs = true, playground = true,
    pricing = { per_second = 10 }, keyframe_tier = "2k",
    capabilities = { supported_aspect_ratios = { "9:16", "16:9", "1:1" }, supported_durations = KLING_DURATIONS,
                     supports_keyframes = true, supports_sound = true, supports_elements = true } },
  { id = "kling3_4k", name = "Kling 3.0 4K", family = "kling_3", vendor = "Kuaishou", category = "video",
    status = "beta", tier = "4k", default_variant = "i2v", jobs = true, playground = true,
    pricing = { per_second = 16 }, keyframe_tier = "4k",
    capabilities = { supported_aspect_ratios = { "9:16", "16:9", "1:1" }, supported_durations = KLING_DURATIONS,
                     supports_keyframes = true, supports_sound = true, supports_elements = true,
                     native_resolution = "4k" } },
  { id = "sora-2-text-to-video", name = "Sora 2 (text to video)", family = "sora_2", vendor = "OpenAI",
    category = "video", status = "available", tier = "standard", default_variant = "t2v", jobs = false,
    playground = true, capabilities = { supported_aspect_ratios = { "9:16", "16:9" },
                                        supported_durations = { 10, 15 } } },
  { id = "sora-2-image-to-video", name = "Sora 2 (image to video)", family = "sora_2", vendor = "OpenAI",
    category = "video", status = "available", tier = "standard", default_variant = "i2v", jobs = false,
    playground = true, capabilities = { supported_aspect_ratios = { "9:16", "16:9" },
                                        supported_durations = { 10, 15 } } },
  { id = "sora-2-pro-text-to-video", name = "Sora 2 Pro (text to video)", family = "sora_2_pro",
    vendor = "OpenAI", category = "video", status = "available", tier = "premium", default_variant = "t2v",
    jobs = false, playground = true, capabilities = { supported_aspect_ratios = { "9:16", "16:9" },
                                                      supported_durations = { 10, 15 } } },
  { id = "sora-2-pro-image-to-video", name = "Sora 2 Pro (image to video)", family = "sora_2_pro",
    vendor = "OpenAI", category = "video", status = "available", tier = "premium", default_variant = "i2v",
    jobs = false, playground = true, capabilities = { supported_aspect_ratios = { "9:16", "16:9" },
                                                      supported_durations = { 10, 15 } } },
  { id = "sora2_storyboard", name = "Sora 2 Pro Storyboard", family = "sora_2_pro", vendor = "OpenAI",
    category = "video", status = "beta", tier = "premium", default_variant = "storyboard", jobs = false,
    playground = true, capabilities = { supported_aspect_ratios = { "9:16", "16:9" },
                                        supported_durations = { 10, 15, 25 } } },
  { id = "nano_banana_2", name = "NanoBanana 2", family = "nano_banana_2", vendor = "Google DeepMind",
    category = "image", status = "available", tier = "standard", default_variant = "t2i", jobs = false,
    playground = true, capabilities = {
      supported_aspect_ratios = { "Auto", "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9",
                                  "21:9", "9:21", "1:2", "2:1", "1:4", "4:1" } } },
  { id = "kling3_omni", name = "Kling 3.0 Omni", family = "kling_3", vendor = "Kuaishou", category = "video",
    status = "coming_soon", tier = "premium", default_variant = "i2v", jobs = false, playground = false,
    capabilities = { supported_aspect_ratios = { "9:16", "16:9", "1:1" }, supported_durations = KLING_DURATIONS } },
}

local MOODS = { "upbeat", "calm", "energetic", "dramatic", "playful", "inspiring" }
local TEMPOS = { "slow", "medium", "fast" }
local TITLES = {
  "Sunny Loop", "Morning Drive", "Soft Focus", "Neon Nights", "Paper Planes", "Golden Hour",
  "Tidal", "Bounce House", "Open Road", "Quiet Study", "Spark", "Night Market",
}

--- The built-in music catalog (12 tracks, ids deterministic from the seed).
function _M.music_catalog(seed)
  local g = rng(seed, "music")
  local list = {}
  for i, title in ipairs(TITLES) do
    local mood, tempo = MOODS[(i - 1) % #MOODS + 1], TEMPOS[(i - 1) % #TEMPOS + 1]
    list[i] = {
      id = g.uuid4(), title = title, artist = "U-Gen Library", mood = mood, tempo = tempo,
      energy_level = tempo == "fast" and "high" or (tempo == "slow" and "low" or "medium"),
      bpm = tempo == "fast" and 124 + i or (tempo == "slow" and 72 + i or 98 + i),
      has_vocals = i % 4 == 0, duration_seconds = 60 + 5 * i, tags = { mood, tempo },
    }
  end
  return list
end

return _M
