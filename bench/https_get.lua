-- bench/https_get.lua: sequential GET /jobs/{id} over HTTPS (HTTP/2, a private CA given as
-- cainfo) through the SDK (client.jobs:get) against, in the same run and against the same
-- loopback nginx (`listen ssl http2`) serving the fixed ~1 KB job of bench/http_get.lua:
--   raw    a C program looping curl_easy_perform on ONE reused easy handle with the same CA
--          (build/bench/raw_curl --cainfo): one TLS connection, kept
-- Rounds interleaved, best of BENCH_ROUNDS; prints per-request times and SDK speed / raw speed.
local B = require "lib"
local ugen = require "ugen"
local json = require "ugen.json"

local N = tonumber(os.getenv("BENCH_N") or "") or 1000
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS") or "") or 9
local RAW = os.getenv("BENCH_RAW_CURL") or "build/bench/raw_curl"
local KEY = "ugen_sk_test_bench_0123456789abcdef0123456789abcdef"

local job = B.job(1)
local body = assert(json.encode(job))
for _, k in ipairs(B.JOB_NULLS) do body = body:gsub("}$", ',"' .. k .. '":null}') end
local srv = B.nginx(body, { tls = true })
local ok, err = pcall(function()
  local client = ugen.new{ base_url = srv.url, api_key = KEY, cainfo = srv.cainfo }
  local id = job.job_id
  local url = srv.url .. "/jobs/" .. id
  local j = assert(client.jobs:get(id))
  assert(j.job_id == id and j.credits_consumed == 166)

  local fns = {}
  function fns.sdk()
    local t0 = B.now()
    for _ = 1, N do
      local r, e = client.jobs:get(id)
      if not r then error(tostring(e)) end
    end
    return B.now() - t0, N
  end
  function fns.raw()
    local out, okc = B.capture(B.q(RAW) .. " --cainfo " .. B.q(srv.cainfo) .. " " .. B.q(url) .. " " .. N
      .. " 'Accept: application/json' " .. B.q("X-API-Key: " .. KEY))
    assert(okc, "raw_curl failed: " .. out)
    return tonumber(out:match("seconds=([%d.]+)")), N
  end
  -- diagnostic (no goal): the C core's engine alone, same request and CA, no SDK layer
  local core = require "ugen.core"
  local engine = core.engine{}
  local creq = { method = "GET", url = url, headers = { "Accept: application/json", "X-API-Key: " .. KEY },
                 timeout = 60, connect_timeout = 5, cainfo = srv.cainfo }
  function fns.engine()
    local t0 = B.now()
    for _ = 1, N do
      local r, e = engine:request(creq)
      if not r then error(tostring(e.message)) end
    end
    return B.now() - t0, N
  end

  local best, median = B.compare(ROUNDS, fns, { "sdk", "raw", "engine" })
  print(string.format("%-8s GET job over HTTPS/h2, us/request best of %d (median): sdk %.1f (%.1f), raw libcurl C "
    .. "%.1f (%.1f), C engine alone %.1f (%.1f)", B.interp(), ROUNDS, best.sdk * 1e6, median.sdk * 1e6,
    best.raw * 1e6, median.raw * 1e6, best.engine * 1e6, median.engine * 1e6))
  B.report("GET job over HTTPS/h2: SDK vs raw C libcurl (same CA)", best.raw / best.sdk, 0.8)
end)
srv.stop()
if not ok then error(err, 0) end
