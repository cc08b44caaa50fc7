-- spec/soak/lib.lua: the fault soak shared by spec/soak/soak_spec.lua (make soak: 1,000 jobs +
-- 200 concurrent) and spec/integration/soak_short_spec.lua (make test: the short version).
--
-- It starts a PRIVATE sandbox (own dir, high speed, large credit balance and limits, so the
-- tenant's limits never get in the way and no other spec's jobs are counted), creates N jobs
-- through the SDK over real libcurl while the sandbox injects faults (X-Sandbox-Fault) into
-- about 20% of them, and checks what "nothing lost, nothing duplicated, every error final" means:
--
-- Phase 1 (faults on). Every logical job i has its own idempotency key K_i and a distinct
--   product_name. For each create call:
--   * success -> the job carries K_i; its job_id is remembered.
--   * nil, err -> err is an ugen error carrying err.idempotency_key == K_i, and it is one of:
--     (A) an HTTP error answer (err.status set): only the injected 5xx (kind "api") or 429
--         (kind "rate_limit"), retryable. The server refused the request BEFORE processing it,
--         so NO job with K_i may exist (checked against the server's job list).
--     (B) no answer (err.status nil): kind "network" or "timeout", retryable. The outcome is
--         unknown (a reset or timeout after processing may have created the job), which is why
--         the SDK hands back the key: a later create with K_i must return THAT job, never a
--         second one (checked in phase 2).
--     Any other error (decode, validation, a non-retryable kind, a missing key) fails the soak.
-- Check 1 (faults off, via the API's own job list): no key has two jobs; every successful
--   create's job is there with the same job_id; no key of a class-(A) error has a job.
-- Phase 2: every failed create is called again with the same key and the same parameters and no
--   fault; it must succeed; if a job with K_i already existed, the answer is that job (replay).
-- Check 2: the job list holds exactly N jobs, exactly one per key, N distinct job_ids; the
--   ledger holds exactly one `reserve` entry per job (credits were reserved once per job).
-- The invariants are about outcomes, not attempt counts: libcurl itself re-sends a request whose
-- reused keep-alive connection dies before any response byte (reset/reset_after faults), which
-- is harmless here because every create carries its idempotency key. (For requests WITHOUT a
-- key the SDK now asks for a fresh connection; soak_short_spec.lua proves that separately.)
local ugen = require "ugen"
local sandbox = require "ugen.sandbox"
local sched = require("ugen").scheduler
local scheduler = require("ugen").scheduler

local M = {}

local function self_pid()
  local p = io.popen("echo $PPID")
  local s = p:read("*a")
  p:close()
  return tonumber(s:match("%d+"))
end

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Park–Miller minimal standard generator: the same fault plan on every Lua version.
local function rng(seed)
  local state = seed % 2147483647
  if state <= 0 then state = state + 2147483646 end
  return function(n)
    state = (state * 16807) % 2147483647
    return state % n + 1
  end
end

-- The fault plan. `count` = the number of requests that get the fault: 1 = transient (the SDK's
-- retry must absorb it), 6 = persistent: more than the SDK's 1 + max_retries attempts even counting
-- libcurl's own silent resend of a request whose REUSED connection dies before any response byte
-- (which happens for reset/reset_after), so the SDK must give up and return a final error.
-- Timeouts are `delay` past the per-call timeout ("slow answer past the timeout").
local function fault_kinds(timeout)
  local slow = string.format("delay=%g", timeout * 2.5)
  return {
    { name = "reset-before", h = "reset" },                         -- not processed
    { name = "reset-after", h = "reset_after" },                    -- processed, no answer
    { name = "503", h = "status=503" },
    { name = "500", h = "status=500" },
    { name = "502-html", h = "status=502;html" },
    { name = "429", h = "status=429;retry_after=0.1" },
    { name = "slow", h = slow },                                    -- processed, answer too late
  }
end

function M.start(opts)
  opts = opts or {}
  local dir = opts.dir
  if not dir then
    local base = os.getenv("UGEN_SANDBOX_SPEC_DIR")
    local name = os.tmpname()
    os.remove(name)
    dir = (base and base ~= "" and (base .. "/soak-" .. tostring(self_pid()) .. "-" .. name:match("[^/]+$")))
      or (name .. ".ugen-soak")
  end
  local info = assert(sandbox.start{ port = 0, dir = dir, speed = opts.speed or 1000, seed = "soak-seed",
                                     owner_pid = self_pid() })
  local env = { info = info, dir = dir }
  env.admin = ugen.new{ base_url = info.base_url, api_key = info.api_key, timeout = 30, max_retries = 0 }
  -- limits and credits out of the way (admin endpoints act on the caller's tenant)
  local r, err = require("ugen.pipeline").send(env.admin, { method = "PUT", url = info.origin .. "/_sandbox/limits",
    body = { concurrent_limit = 1000000, daily_limit = 1000000 } })
  assert(r, tostring(err))
  r, err = require("ugen.pipeline").send(env.admin, { method = "POST", url = info.origin .. "/_sandbox/credits",
    body = { amount = 100000000 } })
  assert(r, tostring(err))
  return env
end

function M.stop(env)
  if env and env.dir then
    sandbox.stop{ dir = env.dir }
    os.execute("rm -rf " .. sh_quote(env.dir))
    env.dir = nil
  end
end

local function params_for(tag, i, key)
  return {
    product_name = string.format("soak %s #%d", tag, i),
    product_image_url = "https://example.com/soak.png",
    segment_count = 1,
    idempotency_key = key,
  }
end

-- One create with (maybe) a fault; records the outcome into rec.
local function create_one(c, rec, kinds, call_timeout)
  local opts = { timeout = call_timeout }
  if rec.fault then
    -- unique counter key per job: exactly `count` attempts see the fault
    opts.headers = { ["X-Sandbox-Fault"] = string.format("%s;count=%d;key=%s", kinds[rec.fault].h, rec.count,
      rec.key) }
  end
  local job, err = c.jobs:create(rec.params, opts)
  rec.job, rec.err = job, err
end

-- Classify every phase-1 error; returns a list of problems (empty = fine).
local function classify(recs)
  local problems = {}
  local function bad(rec, msg)
    problems[#problems + 1] = string.format("job %s (fault %s x%s): %s: %s", rec.i, tostring(rec.fault_name),
      tostring(rec.count), msg, tostring(rec.err))
  end
  for _, rec in ipairs(recs) do
    if rec.job then
      if rec.job.idempotency_key ~= rec.key then bad(rec, "created job carries another key") end
      if type(rec.job.job_id) ~= "string" then bad(rec, "created job has no job_id") end
    else
      local err = rec.err
      if not ugen.is_error(err) then bad(rec, "error is not an ugen error")
      elseif err.idempotency_key ~= rec.key then bad(rec, "error does not carry the idempotency key")
      elseif not err.retryable then bad(rec, "non-retryable error under transient faults")
      elseif err.status ~= nil then
        rec.class = "A"
        local st = err.status
        if not ((err.kind == "api" and st >= 500 and st <= 504) or (err.kind == "rate_limit" and st == 429)) then
          bad(rec, "unexpected HTTP error")
        end
      else
        rec.class = "B"
        if err.kind ~= "network" and err.kind ~= "timeout" then bad(rec, "unexpected transport error kind") end
      end
    end
  end
  return problems
end

-- key -> list of jobs, via the API (no faults)
local function list_jobs(env)
  local by_key, n, ids = {}, 0, {}
  for job, err in env.admin.jobs:each{ page_size = 100 } do
    assert(job, tostring(err))
    n = n + 1
    ids[job.job_id] = (ids[job.job_id] or 0) + 1
    local k = job.idempotency_key
    if k then
      by_key[k] = by_key[k] or {}
      table.insert(by_key[k], job)
    end
  end
  return by_key, n, ids
end

-- The ledger is paged newest first while finishing jobs keep adding release/
-- consume entries at its head: items shift to later pages and can be seen
-- twice (never skipped), so entries are counted once by id.
local function count_reserves(env)
  local per_job, n, seen = {}, 0, {}
  for tx, err in env.admin.credits:each_transaction{ page_size = 100 } do
    assert(tx, tostring(err))
    assert(tx.id, "ledger entry without an id")
    if tx.type == "reserve" and not seen[tx.id] then
      seen[tx.id] = true
      n = n + 1
      per_job[tx.job_id] = (per_job[tx.job_id] or 0) + 1
    end
  end
  return n, per_job
end

-- opts: { n = 1000, fault_rate = 0.2, seed = 1, concurrent = false, timeout = 0.5, tag = "seq" }
-- Returns a report table; raises (assert) on any violated invariant.
function M.run(env, opts)
  local n = opts.n
  local tag = opts.tag or "seq"
  local call_timeout = opts.timeout or 0.5
  local kinds = fault_kinds(call_timeout)
  local pick = rng(opts.seed or 1)
  local per_mille = math.floor((opts.fault_rate or 0.2) * 1000 + 0.5)
  local recs = {}
  local t0 = sched.now()
  local c = ugen.new{ base_url = env.info.base_url, api_key = env.info.api_key, max_retries = 2,
                      rng = function() return 0 end, timeout = call_timeout, connect_timeout = 5 }
  -- the tenant's jobs before this run (a second run on the same sandbox)
  local _, before = list_jobs(env)

  for i = 1, n do
    local key = string.format("soak-%s-%d-%d-%d", tag, opts.seed or 1, i, math.floor(sched.time() * 1000))
    local rec = { i = i, key = key, params = params_for(tag, i, key) }
    if pick(1000) <= per_mille then
      rec.fault = pick(#kinds)
      rec.fault_name = kinds[rec.fault].name
      -- one in three faulted jobs keeps the fault for every attempt (the SDK must give up)
      rec.count = (pick(3) == 1) and 6 or 1
    end
    recs[i] = rec
  end

  if opts.concurrent then
    local runner = ugen.run or scheduler.run
    runner(function()
      local tasks = {}
      for i = 1, n do
        if c.spawn then
          tasks[i] = c:spawn(create_one, c, recs[i], kinds, call_timeout)
        else
          tasks[i] = scheduler.spawn(create_one, c, recs[i], kinds, call_timeout)
        end
      end
      for i = 1, n do
        local ok, e = tasks[i]:join()
        assert(ok, tostring(e))
      end
    end)
  else
    for i = 1, n do create_one(c, recs[i], kinds, call_timeout) end
  end
  local t1 = sched.now()

  local problems = classify(recs)
  assert(#problems == 0, table.concat(problems, "\n"))

  -- Check 1
  local by_key = list_jobs(env)
  local rep = { n = n, faulted = 0, failed = 0, class_a = 0, class_b = 0, class_b_created = 0, by_fault = {} }
  for _, rec in ipairs(recs) do
    local jobs = by_key[rec.key] or {}
    assert(#jobs <= 1, "duplicate jobs for key " .. rec.key)
    if rec.fault then
      rep.faulted = rep.faulted + 1
      local f = rep.by_fault[rec.fault_name .. "x" .. rec.count] or { n = 0, failed = 0 }
      rep.by_fault[rec.fault_name .. "x" .. rec.count] = f
      f.n = f.n + 1
      if not rec.job then f.failed = f.failed + 1 end
    end
    if rec.job then
      assert(#jobs == 1, "job lost: create returned " .. rec.job.job_id .. " for key " .. rec.key)
      assert(jobs[1].job_id == rec.job.job_id, "key " .. rec.key .. " maps to another job")
    else
      rep.failed = rep.failed + 1
      if rec.class == "A" then
        rep.class_a = rep.class_a + 1
        assert(#jobs == 0, "create answered HTTP " .. tostring(rec.err.status) .. " but a job exists: " .. rec.key)
      else
        rep.class_b = rep.class_b + 1
        if #jobs == 1 then rep.class_b_created = rep.class_b_created + 1 end
      end
      rec.existing = jobs[1]
    end
  end

  -- Phase 2: recover every failed create with its key; no faults now
  for _, rec in ipairs(recs) do
    if not rec.job then
      local job, err = c.jobs:create(rec.params, { idempotency_key = rec.err.idempotency_key, timeout = 30 })
      assert(job, "recovery create failed: " .. tostring(err))
      assert(job.idempotency_key == rec.key)
      if rec.existing then
        assert(job.job_id == rec.existing.job_id, "recovery made a second job for key " .. rec.key)
      end
      rec.job = job
    end
  end

  -- Check 2
  local by_key2, total, ids = list_jobs(env)
  assert(total == before + n, string.format("expected %d jobs, the server lists %d", before + n, total))
  local distinct = 0
  for _, rec in ipairs(recs) do
    local jobs = by_key2[rec.key]
    assert(jobs and #jobs == 1, "key " .. rec.key .. " has " .. (jobs and #jobs or 0) .. " jobs")
    assert(jobs[1].job_id == rec.job.job_id)
    assert(ids[rec.job.job_id] == 1, "job listed twice: " .. rec.job.job_id)
    distinct = distinct + 1
  end
  assert(distinct == n)
  local reserves, per_job = count_reserves(env)
  for _, rec in ipairs(recs) do
    assert(per_job[rec.job.job_id] == 1, "job " .. rec.job.job_id .. " has " .. tostring(per_job[rec.job.job_id])
      .. " reserve entries")
  end
  rep.reserves = reserves
  rep.jobs_listed = total
  rep.seconds = t1 - t0
  return rep
end

function M.format(rep)
  local names = {}
  for k in pairs(rep.by_fault) do names[#names + 1] = k end
  table.sort(names)
  local parts = {}
  for _, k in ipairs(names) do
    parts[#parts + 1] = string.format("%s %d/%d", k, rep.by_fault[k].failed, rep.by_fault[k].n)
  end
  return string.format("%d jobs in %.1fs, %d faulted (%.0f%%), %d final errors (%d HTTP-refused, %d no-answer "
    .. "of which %d had created the job), recovered; server lists %d jobs, %d reserve entries; failed/faulted: %s",
    rep.n, rep.seconds, rep.faulted, 100 * rep.faulted / rep.n, rep.failed, rep.class_a, rep.class_b,
    rep.class_b_created, rep.jobs_listed, rep.reserves, table.concat(parts, ", "))
end

return M
