-- bench/webhook.lua: ugen.webhook.verify on a signed 1 KiB JSON body (headers lookup, timestamp
-- parse and tolerance, HMAC-SHA256 through the C core, constant-time compare, JSON decode of
-- the event) against, in the same run, plain C doing HMAC-SHA256 + hex + CRYPTO_memcmp over the
-- same sizes (build/bench/raw_hmac). Prints us/op and the ratio (SDK speed / C speed).
local B = require "lib"
local webhook = require "ugen.webhook"
local json = require "ugen.json"

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

local fns = {}
function fns.sdk()
  local t0 = B.now()
  for _ = 1, N do
    local ev = webhook.verify(SECRET, headers, body, opts)
    if not ev then error("verify failed") end
  end
  return B.now() - t0, N
end
function fns.raw()
  local out, ok = B.capture(B.q(RAW) .. " " .. N .. " 1024")
  assert(ok, "raw_hmac failed: " .. out)
  return tonumber(out:match("seconds=([%d.]+)")), N
end
-- for the record: the share of verify that is the event's JSON decode (the C baseline has none)
function fns.decode()
  local t0 = B.now()
  for _ = 1, N do
    if not json.decode(body) then error("decode failed") end
  end
  return B.now() - t0, N
end
local best, med = B.compare(ROUNDS, fns, { "sdk", "raw", "decode" })
print(string.format("%-8s webhook verify 1 KiB, us/op best of %d (median): sdk %.2f (%.2f), C HMAC+compare %.2f (%.2f)",
  B.interp(), ROUNDS, best.sdk * 1e6, med.sdk * 1e6, best.raw * 1e6, med.raw * 1e6))
B.report("webhook.verify 1 KiB vs C OpenSSL HMAC + CRYPTO_memcmp", best.raw / best.sdk, 0.8)
print(string.format("%-8s   (of which JSON decode of the event %.2f us; verify without it would be %.3fx)", B.interp(),
  best.decode * 1e6, best.raw / math.max(best.sdk - best.decode, 1e-9)))
