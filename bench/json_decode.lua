-- bench/json_decode.lua: decoding a page of 100 jobs (the GET /jobs envelope, ~100 KB) with the
-- SDK's codec (ugen.json.decode: private cjson.safe instance, nulls dropped, integral numbers as
-- integers on 5.3+) against plain cjson.decode on the same text, same run.
local B = require "lib"
local json = require "ugen.json"
local cjson = require "cjson"

local N = tonumber(os.getenv("BENCH_N") or "") or 200
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS") or "") or 9

local items = {}
for i = 1, 100 do items[i] = B.job(i) end
local page = assert(json.encode({ items = items, total = 1000, page = 1, page_size = 100, total_pages = 10 }))
-- the nulls the real API sends for absent values
page = page:gsub('"completed_at":', '"webhook_url":null,"error_message":null,"failed_stage":null,'
  .. '"failure_category":null,"stop_at_stage":null,"completed_at":')
assert(#json.decode(page).items == 100)

local fns = {}
function fns.sdk()
  local t0 = B.cpu()
  for _ = 1, N do assert(json.decode(page)) end
  return B.cpu() - t0, N
end
function fns.cjson()
  local t0 = B.cpu()
  for _ = 1, N do assert(cjson.decode(page)) end
  return B.cpu() - t0, N
end
local best, med = B.compare(ROUNDS, fns, { "sdk", "cjson" })
print(string.format("%-8s JSON decode 100-job page (%d bytes), CPU us/op best of %d (median): ugen.json %.1f (%.1f), "
  .. "cjson %.1f (%.1f)", B.interp(), #page, ROUNDS, best.sdk * 1e6, med.sdk * 1e6, best.cjson * 1e6, med.cjson * 1e6))
B.report("JSON decode of a 100-job page: ugen.json vs plain cjson", best.cjson / best.sdk, 0.9)
