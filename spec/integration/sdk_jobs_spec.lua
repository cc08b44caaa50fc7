-- SDK against the real sandbox (nginx): jobs create/get/list/each/wait/download,
-- idempotency, job failure, cancellation, tenant isolation, validation.
local S = require "support.sandbox"
local ugen = require "ugen"
local crypto = require "ugen.crypto"

-- the docs' workflow 1 values (UGEN-API.md section 15)
local DOC_JOB = {
  product_name = "Premium Wireless Headphones", product_image_url = "https://example.com/headphones.jpg",
  persona_id = "09d3a33a-3eb0-480a-80df-0c64dbf7c98f", video_model = "veo3_fast", segment_count = 3,
  interaction_mode = "holdable", caption_style = "tiktok_karaoke", music_enabled = true,
}

local function client(slug, extra)
  local info = S.info()
  local o = { base_url = info.base_url, api_key = S.tenant[slug or "default"].api_key, rng = function() return 0 end,
              timeout = 15 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return ugen.new(o)
end

local function job_params(over)
  local p = {}
  for k, v in pairs(DOC_JOB) do p[k] = v end
  for k, v in pairs(over or {}) do p[k] = v end
  return p
end

describe("sdk jobs (sandbox)", function()
  setup(function() S.info() end)

  it("create (the docs' values), get, then wait through every stage with on_progress", function()
    S.reset("acme")
    local c = client("acme")
    local job, meta = assert(c.jobs:create(job_params()))
    assert.is_string(job.job_id)
    assert.truthy(meta.status >= 200 and meta.status < 300)
    assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", meta.idempotency_key)
    assert.equal(meta.idempotency_key, job.idempotency_key)
    local got = assert(c.jobs:get(job.job_id))
    assert.equal(job.job_id, got.job_id)
    assert.equal("Premium Wireless Headphones", got.product_name)

    local stages, pcts = {}, {}
    local final = assert(c.jobs:wait(job.job_id, { interval = 0.02, timeout = 30, on_progress = function(j)
      if stages[#stages] ~= j.current_stage then stages[#stages + 1] = j.current_stage end
      pcts[#pcts + 1] = j.progress_percent
    end }))
    assert.equal("completed", final.status)
    assert.equal("complete", final.current_stage)
    assert.equal(100, final.progress_percent)
    assert.matches("^http://127%.0%.0%.1:%d+/.+%.mp4$", final.final_video_url)
    -- stages seen in pipeline order, ending with complete; percentages never go down
    local order = {}
    for i, s in ipairs(require("ugen.endpoints").stages) do order[s] = i end
    for i = 2, #stages do assert.is_true(order[stages[i]] > order[stages[i - 1]], table.concat(stages, ",")) end
    assert.equal("complete", stages[#stages])
    assert.is_true(#stages >= 4, table.concat(stages, ","))
    for i = 2, #pcts do assert.is_true(pcts[i] >= pcts[i - 1]) end
  end)

  it("downloads the final video to a file", function()
    local c = client("acme")
    local job = assert(c.jobs:create(job_params()))
    local final = assert(c.jobs:wait(job.job_id, { interval = 0.02, timeout = 30 }))
    local path = S.tmpdir() .. "/video.mp4"
    local r, err = c.jobs:download(final, path)
    assert.is_table(r, tostring(err))
    assert.equal(path, r.path)
    local data = S.read_file(path)
    assert.is_true(#data > 100)
    assert.equal("ftyp", data:sub(5, 8))
  end)

  it("a failing job ends wait with kind job_failed and err.job", function()
    local c = client("acme")
    local job = assert(c.jobs:create(job_params{ product_name = "Mug [fail:generation]" }))
    local res, err = c.jobs:wait(job.job_id, { interval = 0.02, timeout = 30 })
    assert.is_nil(res)
    assert.equal("job_failed", err.kind)
    assert.equal("JOB_FAILED", err.code)
    assert.equal("failed", err.job.status)
    assert.equal(job.job_id, err.job.job_id)
    assert.matches("MOTION_ARTIFACT", err.message)
    assert.matches("job_failed", tostring(err))
  end)

  it("a cancelled job ends wait with kind job_failed, code JOB_CANCELLED", function()
    local c = client("acme")
    local job = assert(c.jobs:create(job_params()))
    local r = S.request{ method = "POST", url = S.info().origin .. "/_sandbox/jobs/" .. job.job_id .. "/cancel",
                         tenant = "acme" }
    assert.equal(200, r.status)
    local _, err = c.jobs:wait(job.job_id, { interval = 0.02, timeout = 10 })
    assert.equal("job_failed", err.kind); assert.equal("JOB_CANCELLED", err.code)
  end)

  it("wait gives up at its deadline with kind timeout and the last job", function()
    local c = client("acme")
    local job = assert(c.jobs:create(job_params()))
    local _, err = c.jobs:wait(job.job_id, { interval = 0.02, timeout = 0.1 })
    assert.equal("timeout", err.kind); assert.equal("WAIT_TIMEOUT", err.code)
    assert.equal(job.job_id, err.job.job_id)
  end)

  it("list returns the envelope; each visits every job across pages exactly once", function()
    S.reset("acme")
    local c = client("acme")
    local ids = {}
    for i = 1, 5 do
      local j = assert(c.jobs:create(job_params{ product_name = "Item " .. i, stop_at_stage = "agents" }))
      ids[j.job_id] = true
    end
    local page = assert(c.jobs:list{ page = 1, page_size = 2 })
    for _, f in ipairs({ "items", "total", "page", "page_size", "total_pages" }) do assert.is_not_nil(page[f], f) end
    assert.equal(2, #page.items); assert.equal(1, page.page); assert.equal(2, page.page_size)
    local total = page.total
    local seen, n = {}, 0
    for job, err in c.jobs:each{ page_size = 2 } do
      assert.is_table(job, tostring(err))
      assert.is_nil(seen[job.job_id])
      seen[job.job_id] = true
      n = n + 1
    end
    assert.equal(total, n)
    for id in pairs(ids) do assert.is_true(seen[id]) end
  end)

  it("idempotency: the same key returns the same job; other params with it are a conflict", function()
    local c = client("acme")
    local key = crypto.uuid4()
    local a = assert(c.jobs:create(job_params(), { idempotency_key = key }))
    local b = assert(c.jobs:create(job_params{ idempotency_key = key }))
    assert.equal(a.job_id, b.job_id)
    local _, err = c.jobs:create(job_params{ segment_count = 4 }, { idempotency_key = key })
    assert.equal("conflict", err.kind); assert.equal(409, err.status)
    assert.equal(key, err.idempotency_key)
  end)

  it("a reset after the server processed the create is retried with the same key: exactly one job", function()
    S.reset("acme")
    local c = client("acme")
    local marker = "Reset Mug " .. crypto.uuid4()
    local fkey = crypto.uuid4()
    local job, meta = c.jobs:create(job_params{ product_name = marker },
      { headers = { ["X-Sandbox-Fault"] = "reset_after;count=1;key=" .. fkey } })
    assert.is_table(job, tostring(meta))
    local count = 0
    for j in c.jobs:each{ page_size = 100 } do
      if j.product_name == marker then count = count + 1; assert.equal(job.job_id, j.job_id) end
    end
    assert.equal(1, count)
  end)

  it("404 for an unknown id, and for another tenant's job (isolation)", function()
    local mine = assert(client("acme").jobs:create(job_params()))
    local other = client("default")
    local r, err = other.jobs:get(mine.job_id)
    assert.is_nil(r)
    assert.equal("not_found", err.kind); assert.equal(404, err.status)
    assert.is_string(err.request_id)
    r, err = other.jobs:get(crypto.uuid4())
    assert.is_nil(r)
    assert.equal("not_found", err.kind)
    r, err = other.jobs:wait(mine.job_id, { interval = 0.02 })
    assert.is_nil(r)
    assert.equal("not_found", err.kind)
  end)

  it("402 insufficient credits with required/available details", function()
    S.reset("lowcredit")
    local c = client("lowcredit")
    local job, err = c.jobs:create(job_params())
    assert.is_nil(job)
    assert.equal("insufficient_credits", err.kind)
    assert.equal(402, err.status)
    assert.equal("INSUFFICIENT_CREDITS", err.code)
    assert.is_number(err.details.required); assert.is_number(err.details.available)
    assert.is_true(err.details.required > err.details.available)
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts)
  end)

  it("validation: client-side and server-side give the same err.fields shape", function()
    local c = client("acme")
    local bad = { product_name = "Mug", segment_count = 11 }
    local _, cerr = c.jobs:create(bad)
    assert.equal("validation", cerr.kind); assert.is_nil(cerr.status)
    -- the raw escape hatch skips client-side validation: the server answers 422
    local _, serr = c:request("POST", "/jobs", bad)
    assert.equal("validation", serr.kind); assert.equal(422, serr.status)
    local function index(fields)
      local t = {}
      for _, f in ipairs(fields) do t[table.concat(f.loc, ".")] = f end
      return t
    end
    local ci, si = index(cerr.fields), index(serr.fields)
    for loc, f in pairs(si) do
      assert.is_table(ci[loc], "client-side lacks " .. loc)
      assert.equal(f.type, ci[loc].type, loc)
      assert.equal(f.msg, ci[loc].msg, loc)
    end
    assert.is_table(si["body.product_image_url"]); assert.equal("missing", si["body.product_image_url"].type)
    assert.is_table(si["body.segment_count"])
  end)

  it("server-only rules come back as a 422 validation error", function()
    local c = client("acme")
    local _, err = c.jobs:create(job_params{ video_model = "veo3_fast", aspect_ratio = "1:1" })
    assert.equal("validation", err.kind); assert.equal(422, err.status)
    assert.is_true(#err.fields >= 1)
    assert.is_table(err.fields[1].loc)
  end)
end)
