-- ugen.ngx.wait_all inside nginx: many sandbox jobs awaited at once in light
-- threads of one request; failures and the shared deadline per job.
local S = require "support.sandbox"
local N = require "support.nginx"
local ugen = require "ugen"

local function create(c, name)
  return assert(c.jobs:create{ product_name = name, product_image_url = "https://example.com/m.jpg",
                               segment_count = 1 })
end

describe("ugen.ngx.wait_all (nginx, sandbox)", function()
  local c, srv
  setup(function()
    srv = N.app()
    S.info()
    S.reset("default")
    c = ugen.new{ base_url = S.info().base_url, api_key = S.tenant.default.api_key }
  end)

  it("awaits 8 jobs concurrently: about one job's duration, results in the order of the ids", function()
    local ids = {}
    for i = 1, 8 do ids[i] = create(c, "Wait All Mug " .. i).job_id end
    -- one job alone, for the reference duration
    local one = create(c, "Reference Mug").job_id
    local ref = srv.request{ method = "POST", path = "/wait_all", json = { base_url = S.info().base_url,
      api_key = S.tenant.default.api_key, ids = { one }, opts = { interval = 0.05, timeout = 30 } } }.json
    local r = srv.request{ method = "POST", path = "/wait_all", json = { base_url = S.info().base_url,
      api_key = S.tenant.default.api_key, ids = ids, opts = { interval = 0.05, timeout = 30 } }, timeout = 60 }
    assert.equal(200, r.status, r.body)
    for i, x in ipairs(r.json.results) do
      assert.equal("completed", x.status, x.err and x.err.message)
      assert.equal(ids[i], x.job_id)
    end
    assert.is_true(r.json.progress_count >= 8)
    -- 8 jobs created before the reference one, awaited together: not 8 x its duration
    assert.is_true(r.json.elapsed < ref.elapsed * 3 + 0.5, ("%g vs %g"):format(r.json.elapsed, ref.elapsed))
  end)

  it("client.jobs:wait_all, wait_any and as_finished work inside nginx (light threads)", function()
    local ids = { create(c, "Handoff Mug 1").job_id, create(c, "Handoff Mug 2").job_id }
    local body = { base_url = S.info().base_url, api_key = S.tenant.default.api_key, ids = ids,
                   via = "jobs.wait_all", opts = { interval = 0.05, timeout = 30 } }
    local r = srv.request{ method = "POST", path = "/wait_all", json = body, timeout = 60 }
    assert.equal(200, r.status, r.body)
    assert.equal("completed", r.json.results[1].status)
    assert.equal("completed", r.json.results[2].status)
    assert.is_true(r.json.progress_count >= 2)
    -- wait_any: the first to finish (they refused inside nginx before: the
    -- curl scheduler cannot drive cosockets; now they run on the ngx runtime)
    ids = { create(c, "Any Mug 1").job_id, create(c, "Any Mug 2").job_id, create(c, "Any Mug 3").job_id }
    body.ids, body.via = ids, "jobs.wait_any"
    r = srv.request{ method = "POST", path = "/wait_all", json = body, timeout = 60 }
    assert.equal(200, r.status, r.body)
    assert.equal(1, #r.json.order)
    local first = r.json.order[1]
    assert.equal("completed", r.json.results[first].status)
    assert.equal(ids[first], r.json.results[first].job_id)
    local others = 0
    for i = 1, #ids do if r.json.results[i].status == nil then others = others + 1 end end
    assert.equal(#ids - 1, others)
    -- as_finished: every index once, in finishing order
    body.via = "jobs.as_finished"
    r = srv.request{ method = "POST", path = "/wait_all", json = body, timeout = 60 }
    assert.equal(200, r.status, r.body)
    local seen = {}
    for _, i in ipairs(r.json.order) do seen[#seen + 1] = i end
    table.sort(seen)
    assert.same({ 1, 2, 3 }, seen)
    for i = 1, #ids do
      assert.equal("completed", r.json.results[i].status)
      assert.equal(ids[i], r.json.results[i].job_id)
    end
  end)

  it("a failed job is reported in errs (job_failed) while the others complete", function()
    local ids = { create(c, "Fine Mug A").job_id, create(c, "Broken Mug [fail:agents]").job_id,
                  create(c, "Fine Mug B").job_id }
    local r = srv.request{ method = "POST", path = "/wait_all", json = { base_url = S.info().base_url,
      api_key = S.tenant.default.api_key, ids = ids, opts = { interval = 0.05, timeout = 30 } }, timeout = 60 }
    local res = r.json.results
    assert.equal("completed", res[1].status); assert.is_nil(res[1].err)
    assert.is_nil(res[2].status); assert.equal("job_failed", res[2].err.kind)
    assert.equal(2, res[2].err_index); assert.equal(ids[2], res[2].err_job_id)
    assert.equal("completed", res[3].status)
  end)

  it("an error raised by on_progress stops the other polls and is re-raised", function()
    local ids = { create(c, "Boom Mug 1").job_id, create(c, "Boom Mug 2").job_id }
    local r = srv.request{ method = "POST", path = "/wait_all", json = { base_url = S.info().base_url,
      api_key = S.tenant.default.api_key, ids = ids, raise_on_progress = true,
      opts = { interval = 0.05, timeout = 30 } } }
    assert.equal(500, r.status)
    assert.truthy(r.json.raised:find("on_progress raised: .*progress callback exploded"), r.json.raised)
    assert.is_true(r.json.elapsed < 0.3, tostring(r.json.elapsed))   -- did not wait for the jobs
  end)

  it("one deadline for all: jobs still running at the deadline end with WAIT_TIMEOUT", function()
    local ids = { create(c, "Slow Mug 1").job_id, create(c, "Slow Mug 2").job_id }
    local r = srv.request{ method = "POST", path = "/wait_all", json = { base_url = S.info().base_url,
      api_key = S.tenant.default.api_key, ids = ids, opts = { interval = 0.05, timeout = 0.1 } } }
    for _, x in ipairs(r.json.results) do
      assert.equal("timeout", x.err.kind); assert.equal("WAIT_TIMEOUT", x.err.code)
    end
    assert.is_true(r.json.elapsed < 1, tostring(r.json.elapsed))
  end)
end)
