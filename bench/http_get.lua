-- bench/http_get.lua: sequential GET /jobs/{id} through the SDK (client.jobs:get: validation,
-- headers, libcurl engine, header table, JSON decode, error mapping) against, in the same run
-- and against the same loopback nginx serving a fixed ~1 KB job:
--   raw    a C program looping curl_easy_perform on ONE reused easy handle (build/bench/raw_curl)
--   cli    the curl command line, one process per request
--   socket luasocket's socket.http (+ cjson decode of the body, as a user would do)
-- Prints per-request times and the ratios SDK speed / baseline speed.
local B = require "lib"
local ugen = require "ugen"
local json = require "ugen.json"
local cjson = require "cjson"
local http = require "socket.http"
local ltn12 = require "ltn12"

local N = tonumber(os.getenv("BENCH_N") or "") or 1000
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS") or "") or 9
local RAW = os.getenv("BENCH_RAW_CURL") or "build/bench/raw_curl"
local KEY = "ugen_sk_test_bench_0123456789abcdef0123456789abcdef"

local job = B.job(1)
local body = assert(json.encode(job))
for _, k in ipairs(B.JOB_NULLS) do body = body:gsub("}$", ',"' .. k .. '":null}') end
local srv = B.nginx(body)
local ok, err = pcall(function()
  local client = ugen.new{ base_url = srv.url, api_key = KEY }
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
    local out, okc = B.capture(B.q(RAW) .. " " .. B.q(url) .. " " .. N
      .. " 'Accept: application/json' " .. B.q("X-API-Key: " .. KEY))
    assert(okc, "raw_curl failed: " .. out)
    return tonumber(out:match("seconds=([%d.]+)")), N
  end
  -- diagnostics (no goal): the C core's engine alone (same request, no SDK layer) and the
  -- JSON decode of the body, to show where the SDK's time over raw libcurl goes
  local core = require "ugen.core"
  local engine = core.engine{}
  local creq = { method = "GET", url = url, headers = { "Accept: application/json", "X-API-Key: " .. KEY },
                 timeout = 60, connect_timeout = 5 }
  function fns.engine()
    local t0 = B.now()
    for _ = 1, N do
      local r, e = engine:request(creq)
      if not r then error(tostring(e.message)) end
    end
    return B.now() - t0, N
  end
  function fns.decode()
    local t0 = B.now()
    for _ = 1, N * 10 do assert(json.decode(body)) end
    return B.now() - t0, N * 10
  end
  -- the least any SDK returning a decoded table must add to the raw loop: plain cjson.decode
  function fns.cjson()
    local t0 = B.now()
    for _ = 1, N * 10 do assert(cjson.decode(body)) end
    return B.now() - t0, N * 10
  end
  local NC = math.max(20, math.floor(N / 40))
  function fns.cli()
    local cmd = "curl -sf -o /dev/null -H 'Accept: application/json' -H " .. B.q("X-API-Key: " .. KEY) .. " "
      .. B.q(url)
    local t0 = B.now()
    for _ = 1, NC do assert(os.execute(cmd)) end
    return B.now() - t0, NC
  end
  local NS = math.max(50, math.floor(N / 5))
  function fns.socket()
    local t0 = B.now()
    for _ = 1, NS do
      local t = {}
      local _, code = http.request{ url = url, sink = ltn12.sink.table(t),
        headers = { ["Accept"] = "application/json", ["X-API-Key"] = KEY } }
      assert(code == 200)
      assert(cjson.decode(table.concat(t)))
    end
    return B.now() - t0, NS
  end

  local med, median = B.compare(ROUNDS, fns, { "sdk", "raw", "cli", "socket", "engine", "decode", "cjson" })
  print(string.format("%-8s GET job, us/request best of %d (median): sdk %.1f (%.1f), raw libcurl C %.1f (%.1f), "
    .. "curl CLI %.0f (%.0f), socket.http %.1f (%.1f)", B.interp(), ROUNDS, med.sdk * 1e6, median.sdk * 1e6,
    med.raw * 1e6, median.raw * 1e6, med.cli * 1e6, median.cli * 1e6, med.socket * 1e6, median.socket * 1e6))
  B.report("GET job: SDK vs raw C libcurl (one handle)", med.raw / med.sdk, 0.85)
  B.report("GET job: SDK vs curl CLI per request", med.cli / med.sdk, 10)
  B.report("GET job: SDK vs luasocket socket.http", med.socket / med.sdk, 1.2)
  print(string.format("%-8s   (diagnostics: C engine alone %.1f us = %.3fx raw; JSON decode of the body %.1f us; "
    .. "SDK layer over the engine %.1f us)", B.interp(), med.engine * 1e6, med.raw / med.engine, med.decode * 1e6,
    (med.sdk - med.engine) * 1e6))
  print(string.format("%-8s   (bound: raw libcurl + plain cjson.decode of each body, nothing else, would be %.3fx raw)",
    B.interp(), med.raw / (med.raw + med.cjson)))
end)
srv.stop()
if not ok then error(err, 0) end
