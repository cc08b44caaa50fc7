-- bench/webhook.lua: ugen.webhook.verify on a signed 1 KiB JSON body (headers lookup, timestamp
-- parse and tolerance, HMAC-SHA256 through the C core, constant-time compare, and unless
-- decode = false the JSON decode of the event) against, in the same run, plain C doing
-- HMAC-SHA256 + hex + CRYPTO_memcmp over the same sizes (build/bench/raw_hmac; one-shot HMAC()
-- and, for the record, a pre-keyed context). Prints us/op and the ratios (SDK speed / C speed):
--   verify with decode = false   vs the C check (the same work)
--   verify returning the event   vs the C check + plain cjson.decode of the body (the same work)
local B = require "lib"
local webhook = require "ugen.webhook"
local json = require "ugen.json"
local cjson = require "cjson"

local N = tonumber(os.getenv("BENCH_N") or "") or 20000
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS") or "") or 9
local RAW = os.getenv("BENCH_RAW_HMAC") or "build/bench/raw_hmac"
local SECRET = "whsec_0123456789abcdef0123456789abcdef"

-- a webhook event padded to exactly 1 KiB
local event = { event = "job.completed", job_id = "550e8400-e29b-41d4-a716-446655440000", status = "completed",
  final_video_url = "https://cdn.example.com/videos/550e8400-e29b-41d4-a716-446655440000.mp4",
  thumbnail_url = "https://cdn.example.com/thumbnails/550e8400-e29b-41d4-a716-446655440000.jpg",
  credits_consumed = 166, error_message = "", timestamp = "2026-05-02T09:15:02Z" }
local body = assert(json.encode(event))
event.error_message = string.rep("x", 1024 - #body)
body = assert(json.encode(event))
assert(#body == 1024, #body)
local ts = "1767225600"
local headers = webhook.headers(SECRET, body, ts)
local opts = { now = 1767225600 + 10 }
assert(webhook.verify(SECRET, headers, body, opts))

local nodecode = { now = opts.now, decode = false }
assert(webhook.verify(SECRET, headers, body, nodecode) == true)

local fns = {}
-- verify as a receiver calls it: authenticate, then decode the event (DESIGN: returns the event)
function fns.sdk()
  local t0 = B.cpu()
  for _ = 1, N do
    local ev = webhook.verify(SECRET, headers, body, opts)
    if not ev then error("verify failed") end
  end
  return B.cpu() - t0, N
end
-- the same check without the decode (opts.decode = false): the work the C baseline does
function fns.auth()
  local t0 = B.cpu()
  for _ = 1, N do
    if webhook.verify(SECRET, headers, body, nodecode) ~= true then error("verify failed") end
  end
  return B.cpu() - t0, N
end
local function raw(mode)
  local out, ok = B.capture(B.q(RAW) .. " " .. N .. " 1024" .. (mode and (" " .. mode) or ""))
  assert(ok, "raw_hmac failed: " .. out)
  return tonumber(out:match("seconds=([%d.]+)")), N
end
function fns.raw() return raw() end
function fns.raw_keyed() return raw("keyed") end
-- plain cjson.decode of the same body: what returning the event costs at the least
function fns.cjson()
  local t0 = B.cpu()
  for _ = 1, N do
    if not cjson.decode(body) then error("decode failed") end
  end
  return B.cpu() - t0, N
end
local best, med = B.compare(ROUNDS, fns, { "sdk", "auth", "raw", "raw_keyed", "cjson" })
print(string.format("%-8s webhook verify 1 KiB, CPU us/op best of %d (median): verify %.2f (%.2f), verify decode=false "
  .. "%.2f (%.2f), C HMAC()+compare %.2f (%.2f), C pre-keyed %.2f (%.2f), cjson.decode %.2f (%.2f)",
  B.interp(), ROUNDS, best.sdk * 1e6, med.sdk * 1e6, best.auth * 1e6, med.auth * 1e6, best.raw * 1e6, med.raw * 1e6,
  best.raw_keyed * 1e6, med.raw_keyed * 1e6, best.cjson * 1e6, med.cjson * 1e6))
B.report("webhook.verify 1 KiB (decode=false) vs C HMAC + CRYPTO_memcmp", best.raw / best.auth, 0.8)
B.report("webhook.verify 1 KiB + event vs C HMAC + compare + cjson", (best.raw + best.cjson) / best.sdk, 0.8)
print(string.format("%-8s   (for the record: verify returning the event vs the C check alone %.3fx; its bound is "
  .. "%.3fx, as cjson.decode of the body alone takes %.2fx the C check; verify decode=false vs C pre-keyed %.3fx)",
  B.interp(), best.raw / best.sdk, best.raw / best.cjson, best.cjson / best.raw, best.raw_keyed / best.auth))
