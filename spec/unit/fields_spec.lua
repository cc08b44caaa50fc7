-- Issue 16 items 8 and 9: unknown request fields are a client-side
-- validation error naming the closest known field; opts.extra sends fields
-- the SDK does not know yet; only documented ranges are enforced; the each
-- iterators raise a failed page's error unless asked to yield it.
-- Observed through a user-function transport (a public SDK feature).
local ugen = require "ugen"
local validate = require "ugen.validate"
local json = require "ugen.json"

local BASE = "http://api.test.invalid/api/v1"
local KEY = "ugen_sk_test_ABCDEFGHIJKLMNOP"

local function res(status, body)
  return { status = status, headers = {}, body = body and json.encode(body) or "" }
end

local function recorder(answer)
  local calls = {}
  local c = ugen.new{ api_key = KEY, base_url = BASE, rng = function() return 0 end, max_retries = 0,
    transport = function(req)
      calls[#calls + 1] = req
      return answer and answer(req, #calls) or res(200, { job_id = "j1", items = {} })
    end }
  return c, calls
end

local JOB = { product_name = "Mug", product_image_url = "https://e.com/mug.png", segment_count = 2 }
local function job(extra)
  local b = {}
  for k, v in pairs(JOB) do b[k] = v end
  for k, v in pairs(extra or {}) do b[k] = v end
  return b
end

describe("unknown fields (validate.check, unknown = 'error')", function()
  it("are extra_forbidden problems in the API's 422 shape, naming the closest field", function()
    local d = validate.check("jobs.create", job{ segment_count = false, segmnt_count = 2 }, { unknown = "error" })
    -- the typo is reported next to the real problem (segment_count is not an integer)
    assert.equal(2, #d)
    assert.same({ type = "extra_forbidden", loc = { "body", "segmnt_count" }, input = 2,
                  msg = "Unknown field 'segmnt_count'; did you mean 'segment_count'?",
                  ctx = { suggestion = "segment_count" } }, d[2])
    d = validate.check("jobs.list", { pagesize = 2 }, { unknown = "error" })
    assert.same({ "query", "pagesize" }, d[1].loc)
    assert.equal("Unknown field 'pagesize'; did you mean 'page_size'?", d[1].msg)
    -- still ignored by default (the sandbox, like the API, ignores them) and on open bodies
    assert.is_nil(validate.check("jobs.create", job{ segmnt_count = 2 }))
    assert.is_nil(validate.check("models.try", { model_id = "kling3_std", prompt = "x", anything = 1 },
                                 { unknown = "error" }))
  end)

  it("suggest only close names: swaps, case, one edit on short names; nothing for far ones", function()
    assert.equal("segment_count", validate.suggest("jobs.create", "segmetn_count"))   -- a swap
    assert.equal("product_name", validate.suggest("jobs.create", "Product_Name"))
    assert.equal("limit", validate.suggest("music.catalog", "limt"))
    assert.equal("mood", validate.suggest("music.catalog", "moods"))
    assert.is_nil(validate.suggest("music.catalog", "colour"))
    assert.is_nil(validate.suggest("jobs.list", "sort"))
    assert.equal(1, validate.distance("ab", "ba"))
    assert.equal(3, validate.distance("kitten", "sitting"))
    local d = validate.check("jobs.list", { sort = "asc", [1] = "x" }, { unknown = "error" })
    assert.equal(2, #d)
    assert.equal("Unknown field '1'", d[1].msg); assert.equal("Unknown field 'sort'", d[2].msg)
    assert.is_nil(d[2].ctx)
  end)
end)

describe("constraints: only the documented ones", function()
  it("music_volume, limit, human_review_max_rejections ranges: the server's; documented ones stay", function()
    local u = { unknown = "error" }
    assert.is_nil(validate.check("jobs.create", job{ music_volume = 1.5 }, u))
    assert.is_nil(validate.check("jobs.create", job{ music_volume = -0.5 }, u))
    assert.is_nil(validate.check("jobs.create", job{ human_review_max_rejections = -1 }, u))
    assert.is_nil(validate.check("music.catalog", { limit = 0 }, u))
    assert.is_nil(validate.check("templates.list", { limit = 0 }, u))
    -- documented ranges stay: segment_count 1..10, page_size max 100, max_retries_video 0..5
    assert.equal("less_than_equal", validate.check("jobs.create", job{ segment_count = 11 })[1].type)
    assert.equal("less_than_equal", validate.check("jobs.list", { page_size = 101 })[1].type)
    assert.equal("less_than_equal", validate.check("jobs.create", job{ max_retries_video = 6 })[1].type)
  end)
end)

describe("SDK calls", function()
  it("a typo is a validation error and nothing is sent", function()
    local c, calls = recorder()
    local r, err = c.jobs:create(job{ segmnt_count = 2 })
    assert.is_nil(r)
    assert.equal("validation", err.kind)
    assert.equal("extra_forbidden", err.fields[1].type)
    assert.matches("did you mean 'segment_count'", tostring(err), 1, true)
    r, err = c.jobs:list{ pagesize = 2 }
    assert.is_nil(r); assert.equal("Unknown field 'pagesize'; did you mean 'page_size'?", err.fields[1].msg)
    r, err = c.credits:estimate{ segment_count = 2, model = "veo3_fast" }
    assert.is_nil(r); assert.same({ "body", "model" }, err.fields[1].loc)
    assert.equal(0, #calls)
  end)

  it("opts.extra is sent as given: in the JSON body, or in the query", function()
    local c, calls = recorder()
    assert(c.jobs:create(job(), { extra = { brand_new_option = { a = 1 }, segment_count = 99 } }))
    local body = json.decode(calls[1].body)
    assert.same({ a = 1 }, body.brand_new_option)
    assert.equal(99, body.segment_count)                       -- not validated
    assert(c.jobs:list({ page_size = 5 }, { extra = { status = "failed" } }))
    assert.matches("[?&]status=failed", calls[2].url)
    assert.matches("[?&]page_size=5", calls[2].url)
    assert(c.jobs:get("j1", { extra = { expand = "events" } }))
    assert.equal(BASE .. "/jobs/j1?expand=events", calls[3].url)
    assert(c:request("GET", "/jobs", nil, { extra = { status = "queued" } }))
    assert.equal(BASE .. "/jobs?status=queued", calls[4].url)
  end)

  it("opts.extra on an upload becomes form fields", function()
    local c, calls = recorder(function() return res(201, { url = "https://e.com/u.png" }) end)
    local png = "\137PNG\r\n\26\n" .. ("\0"):rep(32)
    assert(c.uploads:product_image({ file = { data = png } }, { extra = { folder = "spring" } }))
    local parts = {}
    for _, part in ipairs(calls[1].mime) do parts[part.name] = part end
    assert.equal("spring", parts.folder.data)
    assert.equal("image/png", parts.file.type)
  end)

  it("checks opts.extra", function()
    local c = recorder()
    assert.has_error(function() c.jobs:list({}, { extra = "x" }) end,
      "bad argument #2 to 'list' (opts.extra must be a table of fields)")
    assert.has_error(function() c.jobs:list({}, { extra = { [1] = "x" } }) end,
      "bad argument #2 to 'list' (opts.extra: field names must be non-empty strings)")
  end)
end)

describe("each: failures are impossible to miss", function()
  local function pager(fail_page)
    return function(req)
      local page = tonumber(req.url:match("[?&]page=(%d+)")) or 1
      if page == fail_page then return res(503, { error = { code = "DOWN", message = "down" } }) end
      return res(200, { items = { { job_id = "p" .. page } }, total = 3, page = page, page_size = 1,
                        total_pages = 3 })
    end
  end

  it("raises the page's structured error from the loop by default", function()
    local c = recorder(pager(2))
    local seen = {}
    local ok, err = pcall(function()
      for j in c.jobs:each{ page_size = 1 } do seen[#seen + 1] = j.job_id end
    end)
    assert.is_false(ok)
    assert.is_table(err)
    assert.equal("api", err.kind); assert.equal(503, err.status)
    assert.same({ "p1" }, seen)
  end)

  it("yields (false, err) once with opts.errors = 'yield'", function()
    local c = recorder(pager(2))
    local seen, errs = {}, {}
    for j, err in c.jobs:each({ page_size = 1 }, { errors = "yield" }) do
      if j then seen[#seen + 1] = j.job_id else errs[#errs + 1] = err end
    end
    assert.same({ "p1" }, seen)
    assert.equal(1, #errs); assert.equal(503, errs[1].status)
    assert.has_error(function() c.jobs:each({}, { errors = "ignore" }) end,
      "bad argument #2 to 'each' (opts.errors must be \"raise\" or \"yield\")")
  end)
end)

describe("credits:estimate", function()
  it("accepts the fields of jobs:create (its own list is a GAP in the docs) but not typos", function()
    local c, calls = recorder()
    assert(c.credits:estimate{ segment_count = 2, model_id = "veo3_fast", segment_duration = 8,
                               video_resolution = "1080p" })
    local body = json.decode(calls[1].body)
    assert.equal(8, body.segment_duration)
    assert.equal("1080p", body.video_resolution)
    local r, err = c.credits:estimate{ segment_count = 2, segmnt_duration = 8 }
    assert.is_nil(r)
    assert.matches("did you mean 'segment_duration'", tostring(err), 1, true)
    assert.equal(1, #calls)
  end)
end)
