-- Issue 12, items 4 and 13, against a real loopback server
-- (spec/support/deadline_httpd.lua) that accepts and never answers, or
-- answers 429/503 with hostile Retry-After values and logs when each attempt
-- arrived.
--   4. A deadline is a deadline: jobs:wait(id, {timeout = 3}) against a server
--      that never answers returned after 3 attempts x the client timeout. Every
--      poll, retry, backoff sleep and queueing inside a call with a deadline
--      (jobs:wait, wait_all, wait_any, as_finished, a per-call `timeout`) is
--      bounded by the time left, on the blocking path and under ugen.run.
--  13. Backoff floor: a Retry-After in the past (or 0) made the retries
--      immediate; "1" followed by 400 zeros became retry_after = inf.
local D = require "support.deadline_server"
local ugen = require "ugen"
local scheduler = require("ugen").scheduler
local sched = require("ugen").scheduler
local retry = require "ugen.retry"

local SLOW = tonumber(os.getenv("UGEN_TIME_FACTOR")) or 1
local MARGIN = 0.5 * SLOW
local now = sched.now

local srv
local seq = 0
local function key(name)
  seq = seq + 1
  return ("%s-%d-%d"):format(name, seq, math.floor(now() * 1000) % 1000000)
end

-- a client on one of the server's routes; a long client timeout, like the issue's 60 s
local function client(route, extra)
  local o = { base_url = srv.base .. route, api_key = "k", timeout = 20, connect_timeout = 5,
              rng = function() return 0 end }
  for k, v in pairs(extra or {}) do o[k] = v end
  return ugen.new(o)
end

local function elapsed_since(t0) return now() - t0 end

-- gaps between the arrival times the server logged under k
local function gaps(k)
  local log = srv:log(k)
  local g = {}
  for i = 2, #log do g[#g + 1] = log[i] - log[i - 1] end
  return g, #log
end

describe("deadlines bound the whole call (issue 12 item 4)", function()
  lazy_setup(function() srv = D.start() end)
  lazy_teardown(function() if srv then srv.stop(); srv = nil end end)

  it("jobs:wait against a server that never answers returns at its timeout (blocking)", function()
    local c = client("/hang")
    local t0 = now()
    local job, err = c.jobs:wait("job-1", { timeout = 3, interval = 1 })
    local took = elapsed_since(t0)
    assert.is_nil(job)
    assert.equal("timeout", err.kind)
    assert.equal("WAIT_TIMEOUT", err.code)
    assert.is_true(took >= 3 - 0.05 and took < 3 + MARGIN, "returned after " .. took .. " s")
  end)

  it("jobs:wait under ugen.run returns at its timeout while another task keeps working", function()
    local c = client("/hang")
    local ticks = 0
    local t0 = now()
    local job, err, took = ugen.run(function()
      local ticker = c:spawn(function()
        while true do scheduler.sleep(0.1); ticks = ticks + 1 end
      end)
      local j, e = c.jobs:wait("job-2", { timeout = 2, interval = 0.5 })
      local t = elapsed_since(t0)
      ticker:cancel()
      return j, e, t
    end)
    assert.is_nil(job)
    assert.equal("WAIT_TIMEOUT", err.code)
    assert.is_true(took < 2 + MARGIN, "returned after " .. took .. " s")
    assert.is_true(ticks >= 10, "the other task did not run: " .. ticks)
  end)

  it("wait_all, wait_any and as_finished: one deadline, also for polls queued behind max_concurrency", function()
    local c = client("/hang")
    local ids = { "a", "b", "c", "d", "e" }
    local Sx = scheduler.new{ max_concurrency = 2, on_error = false }
    local t0 = now()
    local jobs, errs = Sx:run(function() return c.jobs:wait_all(ids, { timeout = 2, interval = 0.5 }) end)
    local took = elapsed_since(t0)
    assert.is_true(took < 2 + MARGIN, "wait_all returned after " .. took .. " s")
    assert.same({}, jobs)
    for i = 1, #ids do
      assert.equal("timeout", errs[i].kind, tostring(errs[i]))
      assert.equal("WAIT_TIMEOUT", errs[i].code)
    end
    assert.equal(0, Sx:stats().inflight)
    assert.equal(0, Sx:stats().queued)
    Sx:close()

    -- blocking (the default scheduler, pumped by the call)
    t0 = now()
    local job, err, i = c.jobs:wait_any(ids, { timeout = 1.5, interval = 0.5 })
    took = elapsed_since(t0)
    assert.is_nil(job)
    assert.equal("WAIT_TIMEOUT", err.code)
    assert.is_number(i)
    assert.is_true(took < 1.5 + MARGIN, "wait_any returned after " .. took .. " s")

    t0 = now()
    local seen = 0
    for _, j, e in c.jobs:as_finished(ids, { timeout = 1.5, interval = 0.5 }) do
      assert.is_nil(j)
      assert.equal("WAIT_TIMEOUT", e.code)
      seen = seen + 1
    end
    took = elapsed_since(t0)
    assert.equal(#ids, seen)
    assert.is_true(took < 1.5 + MARGIN, "as_finished ended after " .. took .. " s")
    assert.equal(0, scheduler.default():stats().inflight)
  end)

  it("a per-call timeout bounds every attempt and backoff of the call (jobs:get, client:request)", function()
    local c = client("/hang")
    local t0 = now()
    local r, err = c.jobs:get("job-3", { timeout = 1.5 })
    local took = elapsed_since(t0)
    assert.is_nil(r)
    assert.equal("timeout", err.kind)
    assert.is_true(took < 1.5 + MARGIN, "jobs:get returned after " .. took .. " s")

    t0 = now()
    r, err = c:request("GET", "/anything", nil, { timeout = 1 })
    took = elapsed_since(t0)
    assert.is_nil(r)
    assert.equal("timeout", err.kind)
    assert.is_true(took < 1 + MARGIN, "client:request returned after " .. took .. " s")

    -- under ugen.run, queued behind other requests (max_concurrency = 1): the first
    -- holds the only slot for 20 s (no deadline), the second has 1 s, the third 1.5 s
    local Sx = scheduler.new{ max_concurrency = 1, on_error = false }
    t0 = now()
    local res = Sx:run(function()
      local holder = Sx:spawn(function() return c.jobs:get("q1") end)
      local a = Sx:spawn(function() return c.jobs:get("q2", { timeout = 1 }) end)
      local b = Sx:spawn(function() return c:request("GET", "/q3", nil, { timeout = 1.5 }) end)
      local _, _, ea = a:join()
      local ta = elapsed_since(t0)
      local _, _, eb = b:join()
      local tb = elapsed_since(t0)
      holder:cancel()
      return { ea, ta, eb, tb }
    end)
    assert.equal("timeout", res[1].kind)
    assert.truthy(res[1].message:find("free slot", 1, true), res[1].message)
    assert.is_true(res[2] >= 1 - 0.05 and res[2] < 1 + MARGIN, "queued call returned after " .. res[2] .. " s")
    assert.equal("timeout", res[3].kind)
    assert.is_true(res[4] >= 1.5 - 0.05 and res[4] < 1.5 + MARGIN, "queued call returned after " .. res[4] .. " s")
    assert.equal(2, Sx:stats().peak_queued)
    assert.equal(0, Sx:stats().queued)
    Sx:close()
  end)

  it("503 with Retry-After: 100 ends jobs:wait at its deadline, without polling again meanwhile", function()
    local k = key("ra100")
    local c = client("/ra/503/n100/" .. k)
    local t0 = now()
    local job, err = c.jobs:wait("job-4", { timeout = 3, interval = 0.2 })
    local took = elapsed_since(t0)
    assert.is_nil(job)
    assert.equal("WAIT_TIMEOUT", err.code)
    assert.is_true(took >= 3 - 0.05 and took < 3 + MARGIN, "returned after " .. took .. " s")
    -- the server asked for 100 s: one poll, not one every 0.2 s
    local _, n = gaps(k)
    assert.equal(1, n)

    -- a 503 asking for 1 s against a per-call timeout of 1.5 s: one retry fits, a second does not
    k = key("ra1")
    c = client("/ra/503/n1/" .. k, { max_retries = 5 })
    t0 = now()
    local r
    r, err = c.jobs:get("job-5", { timeout = 1.5 })
    took = elapsed_since(t0)
    assert.is_nil(r)
    assert.equal("api", err.kind)
    assert.equal(503, err.status)
    assert.is_true(took < 1.5 + MARGIN, "returned after " .. took .. " s")
    local g
    g, n = gaps(k)
    assert.equal(2, n)
    assert.is_true(g[1] >= 0.95, "retried before Retry-After: " .. g[1])
  end)
end)

describe("Retry-After: a floor and a clamp (issue 12 item 13)", function()
  lazy_setup(function() srv = D.start() end)
  lazy_teardown(function() if srv then srv.stop(); srv = nil end end)

  local function attempts(mode, status)
    local k = key(mode)
    local c = client(("/ra/%d/%s/%s"):format(status, mode, k), { max_retries = 2 })
    local t0 = now()
    local r, err = c.credits:balance()
    return r, err, elapsed_since(t0), k
  end

  it("a Retry-After date in the past still waits the normal backoff between attempts", function()
    for _, status in ipairs{ 429, 503 } do
      local r, err, _, k = attempts("past", status)
      assert.is_nil(r)
      assert.equal(status, err.status)
      assert.equal(0, err.retry_after)
      assert.equal(3, err.attempts)
      local g, n = gaps(k)
      assert.equal(3, n)
      -- rng = 0: backoff(1) = 0.25 s, backoff(2) = 0.5 s
      assert.is_true(g[1] >= 0.24, ("%d: attempts 1-2 %.4f s apart"):format(status, g[1]))
      assert.is_true(g[2] >= 0.49, ("%d: attempts 2-3 %.4f s apart"):format(status, g[2]))
    end
  end)

  it("Retry-After: 0 still waits the normal backoff, also between download attempts", function()
    local r, err, _, k = attempts("zero", 429)
    assert.is_nil(r)
    assert.equal("rate_limit", err.kind)
    local g = gaps(k)
    assert.is_true(g[1] >= 0.24 and g[2] >= 0.49, ("gaps %.4f %.4f"):format(g[1], g[2]))

    k = key("dl-zero")
    local c = client("", { max_retries = 2 })
    local dir = os.tmpname()
    local info
    info, err = c.jobs:download({ job_id = "j", final_video_url = srv.base .. "/ra/503/zero/" .. k }, dir)
    os.remove(dir)
    assert.is_nil(info)
    assert.equal(503, err.status)
    local n
    g, n = gaps(k)
    assert.equal(3, n)
    assert.is_true(g[1] >= 0.24 and g[2] >= 0.49, ("download gaps %.4f %.4f"):format(g[1], g[2]))
  end)

  it("absurd Retry-After values are clamped to a finite number and not slept on", function()
    for _, mode in ipairs{ "huge", "date" } do
      local r, err, took, k = attempts(mode, 429)
      assert.is_nil(r)
      assert.equal("rate_limit", err.kind)
      assert.equal(retry.RETRY_AFTER_CAP, err.retry_after, mode)
      assert.is_true(err.retry_after < math.huge)
      assert.is_truthy(tostring(err):find("retry after 86400s", 1, true), tostring(err))
      assert.equal(1, err.attempts)
      local _, n = gaps(k)
      assert.equal(1, n)
      assert.is_true(took < 1, mode .. " took " .. took)
    end
  end)
end)
