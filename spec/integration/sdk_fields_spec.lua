-- Issue 16 items 8 and 9 against the real sandbox over real libcurl:
-- a typo in a field name fails before sending (nothing reaches the server),
-- opts.extra reaches the server, undocumented ranges are the server's call,
-- and jobs:each raises a page's failure from the loop unless asked to yield it.
local S = require "support.sandbox"
local ugen = require "ugen"

local JOB = { product_name = "Fields Mug", product_image_url = "https://example.com/mug.jpg",
              segment_count = 1, stop_at_stage = "agents" }

local function client(extra)
  local o = { base_url = S.info().base_url, api_key = S.tenant.acme.api_key, rng = function() return 0 end,
              timeout = 15 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return ugen.new(o)
end

local function job(over)
  local p = {}
  for k, v in pairs(JOB) do p[k] = v end
  for k, v in pairs(over or {}) do p[k] = v end
  return p
end

local function job_count(c)
  return assert(c.jobs:list{ page_size = 1 }).total
end

describe("request fields (sandbox)", function()
  setup(function() S.info() end)

  it("a typo is a validation error naming the field, and no job is created", function()
    S.reset("acme")
    local c = client()
    local before = job_count(c)
    local r, err = c.jobs:create(job{ segment_count = false, segmnt_count = 2 })
    assert.is_nil(r)
    assert.equal("validation", err.kind); assert.is_nil(err.status)          -- client-side: never sent
    local typo
    for _, d in ipairs(err.fields) do if d.loc[2] == "segmnt_count" then typo = d end end
    assert.equal("extra_forbidden", typo.type)
    assert.equal("Unknown field 'segmnt_count'; did you mean 'segment_count'?", typo.msg)
    r, err = c.jobs:list{ pagesize = 2 }
    assert.is_nil(r); assert.equal("Unknown field 'pagesize'; did you mean 'page_size'?", err.fields[1].msg)
    assert.equal(before, job_count(c))
  end)

  it("opts.extra reaches the server: query fields and body fields", function()
    S.reset("acme")
    local c = client()
    for _ = 1, 3 do assert(c.jobs:create(job())) end
    -- a query field given only through extra is the one the server pages by
    local page = assert(c.jobs:list({}, { extra = { page_size = 2 } }))
    assert.equal(2, page.page_size); assert.equal(2, #page.items)
    -- a body field given only through extra is priced by the server
    local plain = assert(c.credits:estimate{ segment_count = 2, model_id = "kling3_std" })
    local music = assert(c.credits:estimate({ segment_count = 2, model_id = "kling3_std" },
                                            { extra = { music_enabled = true, not_yet_in_the_sdk = "x" } }))
    assert.is_true(music.total_credits > plain.total_credits)
  end)

  it("undocumented ranges are sent and left to the server (music_volume, human_review_max_rejections)", function()
    S.reset("acme")
    local c = client()
    local j, err = c.jobs:create(job{ music_volume = 1.5, human_review_max_rejections = -1 })
    assert.is_table(j, tostring(err))
    assert.is_string(j.job_id)
  end)
end)

describe("jobs:each failures (sandbox)", function()
  setup(function()
    S.reset("acme")
    local c = client()
    for _ = 1, 3 do assert(c.jobs:create(job())) end
  end)

  -- Page 1 is served; then the same per-call headers table gets a fault, so
  -- page 2 (and only what follows) fails with a 503.
  local function failing_each(c, extra_opts)
    local headers = {}
    local opts = { headers = headers, max_retries = 0 }
    for k, v in pairs(extra_opts or {}) do opts[k] = v end
    return c.jobs:each({ page_size = 1 }, opts), headers
  end

  it("raises the failed page's structured error from the loop by default", function()
    local c = client()
    local seen = {}
    local ok, err = pcall(function()
      local iter, headers = failing_each(c)
      for j in iter do
        seen[#seen + 1] = j.job_id
        headers["X-Sandbox-Fault"] = "status=503"
      end
    end)
    assert.is_false(ok)
    assert.is_table(err)
    assert.equal("api", err.kind); assert.equal(503, err.status)
    assert.equal(1, #seen)
    assert.matches("503", tostring(err))
  end)

  it("yields (false, err) once with opts.errors = 'yield'", function()
    local c = client()
    local seen, errs = {}, {}
    local iter, headers = failing_each(c, { errors = "yield" })
    for j, err in iter do
      if j then seen[#seen + 1] = j.job_id else errs[#errs + 1] = err end
      headers["X-Sandbox-Fault"] = "status=503"
    end
    assert.equal(1, #seen)
    assert.equal(1, #errs); assert.equal(503, errs[1].status)
  end)
end)
