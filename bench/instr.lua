-- bench/instr.lua: CPU instructions per `client.jobs:get(id)`, counted by valgrind's
-- callgrind (exact and repeatable, whatever else the machine is doing: wall-clock ratios
-- on a shared 2-vCPU VM are noise at this scale). In one invocation, against one loopback
-- nginx serving a job:
--   sdk       this tree's SDK (its interpreter: the one running this script)
--   raw       bench/raw_curl.c: one reused libcurl easy handle, the C baseline
--   base      (BENCH_BASE=<dir of another clone, built>) that tree's SDK, e.g. a release
-- Each is run with N and 3N requests; (I(3N) - I(N)) / 2N is the cost of one request,
-- start-up excluded. Prints instructions/request and the ratios sdk/raw, sdk/base.
-- Run: make bench BENCH_ONLY=instr (or: BENCH_BASE=/tmp/old make bench BENCH_ONLY=instr).
local B = require "lib"
local json = require "ugen.json"

local N = tonumber(os.getenv("BENCH_INSTR_N") or "") or 100
local KEY = "ugen_sk_test_bench_0123456789abcdef0123456789abcdef"
local VALGRIND = os.getenv("VALGRIND") or "valgrind"

local interp = (type(jit) == "table") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
local sub = (type(jit) == "table") and "luajit" or _VERSION:match("%d+%.%d+")

-- the client program run under callgrind: tree, url, id, n
local CLIENT = [[
local tree, url, id, n = arg[1], arg[2], arg[3], tonumber(arg[4])
package.path = tree .. "/lua/?.lua;" .. tree .. "/lua/?/init.lua;" .. package.path
package.cpath = tree .. "/build/]] .. sub .. [[/?.so;" .. package.cpath
local ugen = require "ugen"
local c = ugen.new{ base_url = url, api_key = "]] .. KEY .. [[" }
for _ = 1, 20 do assert(c.jobs:get(id)) end
for _ = 1, n do assert(c.jobs:get(id)) end
]]

local function instructions(cmd)
  local out_file = os.tmpname()
  local out, ok = B.capture(("%s --tool=callgrind --callgrind-out-file=%s %s 2>&1")
    :format(VALGRIND, B.q(out_file), cmd))
  local data = B.read_file(out_file) or ""
  os.remove(out_file)
  local total = data:match("\nsummary: (%d+)") or data:match("\ntotals: (%d+)")
  if not ok or not total then error("callgrind run failed: " .. cmd .. "\n" .. out, 0) end
  return tonumber(total)
end

-- instructions of one request: (I(3N) - I(N)) / 2N
local function per_request(make_cmd)
  local a = instructions(make_cmd(N))
  local b = instructions(make_cmd(3 * N))
  return (b - a) / (2 * N)
end

local job = B.job(1)
local srv = B.nginx(assert(json.encode(job)))
local ok, err = pcall(function()
  local script = os.tmpname()
  B.write_file(script, CLIENT)
  local here = io.popen("pwd"):read("*l")
  local function sdk_cmd(tree)
    return function(n)
      return table.concat({ interp, B.q(script), B.q(tree), B.q(srv.url), B.q(job.job_id), n }, " ")
    end
  end
  local raw = per_request(function(n)
    return table.concat({ B.q(here .. "/build/bench/raw_curl"), B.q(srv.url .. "/jobs/" .. job.job_id), n,
      "'Accept: application/json'", B.q("X-API-Key: " .. KEY) }, " ")
  end)
  local sdk = per_request(sdk_cmd(here))
  print(("%-8s GET job, instructions/request (callgrind, %d vs %d requests): sdk %.1fk, raw libcurl C %.1fk")
    :format(B.interp(), N, 3 * N, sdk / 1000, raw / 1000))
  print(("%-8s %-58s %7.3fx"):format(B.interp(), "GET job: SDK instructions / raw C libcurl instructions",
    sdk / raw))
  local base = os.getenv("BENCH_BASE")
  if base and base ~= "" then
    local b = per_request(sdk_cmd(base))
    print(("%-8s %-58s %7.3fx  (goal <= 1x) %s  (base %.1fk: %s)"):format(B.interp(),
      "GET job: SDK instructions / base tree's SDK instructions", sdk / b, sdk <= b and "OK" or "MISSED",
      b / 1000, base))
  end
  os.remove(script)
end)
srv.stop()
if not ok then error(err, 0) end
