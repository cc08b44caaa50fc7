-- bench/memory.lua: resident set size of one SDK process after 10,000 and after 100,000
-- sequential GET job requests (SDK over libcurl against a loopback nginx). Goal: the second
-- within 5% of the first (no growth per request: no leak in C, no unbounded Lua cache).
local B = require "lib"
local ugen = require "ugen"
local json = require "ugen.json"

local FIRST = tonumber(os.getenv("BENCH_MEM_FIRST") or "") or 10000
local TOTAL = tonumber(os.getenv("BENCH_MEM_TOTAL") or "") or 100000

local job = B.job(1)
local srv = B.nginx(assert(json.encode(job)))
local ok, err = pcall(function()
  local client = ugen.new{ base_url = srv.url, api_key = "ugen_sk_test_bench_0123456789abcdef0123456789abcdef" }
  local id = job.job_id
  local t0 = B.now()
  for _ = 1, FIRST do assert(client.jobs:get(id)) end
  collectgarbage("collect")
  local rss1 = B.rss_kib()
  for _ = FIRST + 1, TOTAL do assert(client.jobs:get(id)) end
  collectgarbage("collect")
  local rss2 = B.rss_kib()
  local dt = B.now() - t0
  local growth = (rss2 - rss1) / rss1
  print(string.format("%-8s RSS after %d requests: %d KiB; after %d: %d KiB (%+.2f%%; %d requests in %.1fs)",
    B.interp(), FIRST, rss1, TOTAL, rss2, growth * 100, TOTAL, dt))
  print(string.format("%-8s %-58s %+7.2f%%  (goal within 5%%) %s", B.interp(),
    "memory: RSS growth from 10k to 100k requests", growth * 100, math.abs(growth) <= 0.05 and "OK" or "MISSED"))
end)
srv.stop()
if not ok then error(err, 0) end
