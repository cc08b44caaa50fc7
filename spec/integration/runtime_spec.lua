-- A runtime the SDK does not know (ugen.new{ runtime = table }): a host's
-- coroutine loop made of plain functions drives jobs:wait, wait_any, wait_all
-- and as_finished against the sandbox. This is the seam host adapters use.
local S = require "support.sandbox"
local ugen = require "ugen"
local core = require "ugen.core"

local unpack = table.unpack or unpack -- luacheck: ignore 143
local function pack(...) return { n = select("#", ...), ... } end

local JOB = { product_name = "Host Mug", product_image_url = "https://example.com/mug.jpg", segment_count = 1 }
local function job_params(name)
  local p = {}
  for k, v in pairs(JOB) do p[k] = v end
  p.product_name = name
  return p
end

-- A minimal host loop: tasks are coroutines, sleep yields the wake-up time,
-- join_any round-robins the due tasks and sleeps until the next one is due.
-- perform blocks (libcurl, outside any scheduler task): a host whose requests
-- block is still a valid runtime.
local function host_runtime()
  local by_co, counts = {}, { sleep = 0, spawn = 0, perform = 0, join_any = 0, cancel = 0 }
  local rt = { name = "host", now = core.now, time = core.time }
  local curl_perform = ugen.scheduler.perform
  function rt.perform(req)
    counts.perform = counts.perform + 1
    return curl_perform(req)
  end
  function rt.sleep(s)
    counts.sleep = counts.sleep + 1
    local co = coroutine.running()
    if co and by_co[co] then coroutine.yield(core.now() + s) elseif s > 0 then core.sleep(s) end
  end
  function rt.spawn(fn)
    counts.spawn = counts.spawn + 1
    local h = { co = coroutine.create(fn), at = 0 }
    by_co[h.co] = h
    return h
  end
  function rt.cancel(h)
    counts.cancel = counts.cancel + 1
    h.done, h.joined = true, true
  end
  function rt.join_any(handles, timeout)
    counts.join_any = counts.join_any + 1
    local deadline = timeout and core.now() + timeout
    while true do
      local next_at = math.huge
      for _, h in ipairs(handles) do
        if not h.joined and h.done then
          h.joined = true
          return h, unpack(h.res, 1, h.res.n)
        end
      end
      for _, h in ipairs(handles) do
        if not h.done and h.at <= core.now() then
          local r = pack(coroutine.resume(h.co))
          if not r[1] then
            h.done, h.res = true, { n = 2, false, r[2] }
          elseif coroutine.status(h.co) == "dead" then
            h.done, h.res = true, { n = r.n, true, unpack(r, 2, r.n) }
          else
            h.at = r[2] or 0
          end
        end
        if not h.done and not h.joined and h.at < next_at then next_at = h.at end
      end
      local any = false
      for _, h in ipairs(handles) do if h.done and not h.joined then any = true end end
      if not any then
        local now = core.now()
        if deadline and now >= deadline then return nil end
        local until_ = math.min(next_at, deadline or math.huge)
        if until_ > now and until_ < math.huge then core.sleep(until_ - now) end
      end
    end
  end
  return rt, counts
end

describe("the curl runtime from a coroutine no scheduler owns", function()
  setup(function() S.info() end)

  it("wait_any / as_finished inside a task's foreign coroutine block and work (calls block there)", function()
    local c = ugen.new{ base_url = S.info().base_url, api_key = S.tenant.default.api_key, timeout = 15 }
    local id = assert(c.jobs:create(job_params("Foreign Mug"))).job_id
    assert(c.jobs:wait(id, { interval = 0.05, timeout = 30 }))
    local job, i, n = ugen.run(function()
      local wrapped = coroutine.wrap(function()
        local j, k = c.jobs:wait_any({ id }, { interval = 0.05, timeout = 30 })
        local count = 0
        for _ in c.jobs:as_finished({ id, id }, { interval = 0.05, timeout = 30 }) do count = count + 1 end
        return j, k, count
      end)
      return wrapped()
    end)
    assert.equal(id, job.job_id)
    assert.equal(1, i)
    assert.equal(2, n)
    assert.equal(0, ugen.scheduler.default():tasks())
  end)
end)

describe("a user runtime (ugen.new{ runtime = table }) against the sandbox", function()
  local base, key
  setup(function()
    S.info()
    S.reset("default")
    base, key = S.info().base_url, S.tenant.default.api_key
  end)

  it("jobs:wait runs on a runtime of now/sleep/perform only (no spawn)", function()
    local counts = { sleep = 0, perform = 0 }
    local rt = {
      name = "plain", now = core.now,
      sleep = function(s) counts.sleep = counts.sleep + 1; core.sleep(s) end,
      perform = function(req) counts.perform = counts.perform + 1; return ugen.scheduler.perform(req) end,
    }
    local c = ugen.new{ base_url = base, api_key = key, runtime = rt, timeout = 15 }
    local id = assert(c.jobs:create(job_params("Plain Host Mug"))).job_id
    local job = assert(c.jobs:wait(id, { interval = 0.05, timeout = 30 }))
    assert.equal(id, job.job_id)
    assert.equal("completed", job.status)
    assert.is_true(counts.sleep >= 1, "the poll interval went through the runtime's sleep")
    assert.is_true(counts.perform >= 3, "create + the polls went through the runtime's perform")
  end)

  it("wait_any, wait_all and as_finished run on the host's spawn/join_any/cancel", function()
    local rt, counts = host_runtime()
    local c = ugen.new{ base_url = base, api_key = key, runtime = rt, timeout = 15 }
    local done_id = assert(c.jobs:create(job_params("Host Done Mug"))).job_id
    assert(c.jobs:wait(done_id, { interval = 0.05, timeout = 30 }))
    local slow = {}
    for i = 1, 2 do slow[i] = assert(c.jobs:create(job_params("Host Slow Mug " .. i))).job_id end
    local ids = { slow[1], done_id, slow[2] }
    local job, i = c.jobs:wait_any(ids, { interval = 0.05, timeout = 30 })
    assert.equal(2, i)
    assert.equal(done_id, job.job_id)
    assert.equal(3, counts.spawn)
    assert.equal(2, counts.cancel)          -- the other two polls were stopped
    -- every one of them, in the order of the ids
    local jobs, errs = c.jobs:wait_all(ids, { interval = 0.05, timeout = 30 })
    assert.same({}, errs)
    for k = 1, #ids do assert.equal(ids[k], jobs[k].job_id) end
    -- in finishing order, each index once
    local seen = {}
    for k, j, e in c.jobs:as_finished(ids, { interval = 0.05, timeout = 30 }) do
      assert.is_nil(e)
      assert.equal(ids[k], j.job_id)
      seen[#seen + 1] = k
    end
    table.sort(seen)
    assert.same({ 1, 2, 3 }, seen)
    assert.is_true(counts.join_any >= 7)
    -- the shared deadline: a job that cannot finish in time ends with WAIT_TIMEOUT
    local late = assert(c.jobs:create(job_params("Host Late Mug"))).job_id
    local t0 = core.now()
    local _, errs2 = c.jobs:wait_all({ late }, { interval = 0.05, timeout = 0.2 })
    assert.equal("WAIT_TIMEOUT", errs2[1].code)
    assert.is_true(core.now() - t0 < 2, tostring(core.now() - t0))
  end)
end)
