-- The other documented endpoints through the SDK against the sandbox:
-- models, templates, music, tenant, uploads (multipart), raw requests.
local S = require "support.sandbox"
local ugen = require "ugen"

local function client(slug, extra)
  local o = { base_url = S.info().base_url, api_key = S.tenant[slug or "default"].api_key,
              rng = function() return 0 end }
  for k, v in pairs(extra or {}) do o[k] = v end
  return ugen.new(o)
end

-- a small valid PNG (1x1)
local PNG = "\137PNG\r\n\26\n\0\0\0\rIHDR\0\0\0\1\0\0\0\1\8\6\0\0\0\31\21\196\137\0\0\0\rIDATx\156c\248\15"
  .. "\4\0\9\251\3\253\227U\242\156\0\0\0\0IEND\174B`\130"

describe("sdk other resources (sandbox)", function()
  setup(function() S.info() end)

  it("models: list (bare array) and get; unknown id is not_found", function()
    local c = client("acme")
    local list = assert(c.models:list())
    assert.is_true(#list >= 1)
    local id = list[1].id or list[1].model_id
    assert.is_string(id)
    local m = assert(c.models:get(id))
    assert.is_table(m)
    local _, err = c.models:get("no-such-model")
    assert.equal("not_found", err.kind)
  end)

  it("models: try starts a playground task", function()
    local c = client("acme")
    local list = assert(c.models:list())
    local task, err = c.models:try(list[1].id or list[1].model_id, { prompt = "a mug on a table" })
    assert.is_table(task, tostring(err))
    assert.is_string(task.task_id)
  end)

  it("templates: create (201) and list", function()
    S.reset("acme")
    local c = client("acme")
    local t, meta = c.templates:create{ name = "Beauty - calm", description = "Soft tone, no music",
      config = { video_model = "kling3_std", segment_count = 4, output_aspect_ratio = "9:16",
                 interaction_mode = "holdable", music_enabled = false }, is_default = true }
    assert.is_table(t, tostring(meta))
    assert.equal(201, meta.status)
    local list = assert(c.templates:list{ limit = 10 })
    local found = false
    for _, x in ipairs(list) do if x.name == "Beauty - calm" then found = true end end
    assert.is_true(found)
  end)

  it("music: catalog filter, custom upload, list and delete", function()
    S.reset("acme")
    local c = client("acme")
    local cat = assert(c.music:catalog{ limit = 3 })
    assert.is_true(#cat <= 3 and #cat >= 1)
    local track, err = c.music:upload{ file = { data = "ID3\3\0\0\0\0\0\0" .. ("\0"):rep(200), filename = "loop.mp3" },
                                       title = "My Loop" }
    assert.is_table(track, tostring(err))
    local id = track.id or track.music_id
    assert.is_string(id)
    local mine = assert(c.music:list())
    assert.equal(1, #mine)
    assert.truthy(c.music:delete(id))
    assert.equal(0, #assert(c.music:list()))
  end)

  it("uploads: product image from a file path returns a url", function()
    local c = client("acme")
    local path = S.tmpdir() .. "/product.png"
    S.write_file(path, PNG)
    local r, err = c.uploads:product_image{ file = path }
    assert.is_table(r, tostring(err))
    assert.matches("^https?://", r.url)
    local _, e2 = c.uploads:product_image{ file = { data = "", filename = "empty.png" } }
    assert.is_table(e2)
    assert.equal("EMPTY_FILE", e2.code)   -- checked before sending (the sandbox's 400: endpoints_spec)
  end)

  it("tenant: profile, avatar and brand logo uploads", function()
    local c = client("acme")
    local me = assert(c.tenant:get())
    assert.is_table(me)
    local r, err = c.tenant:upload_avatar{ file = { data = PNG, filename = "me.png" } }
    assert.is_table(r, tostring(err))
    r, err = c.brand_kit:upload_logo{ file = { data = PNG, filename = "logo.png" } }
    assert.is_table(r, tostring(err))
  end)

  it("client:request reaches any path with query and body", function()
    local c = client("acme")
    local page = assert(c:request("GET", "/jobs", { page = 1, page_size = 1 }))
    assert.equal(1, page.page_size)
    local e = assert(c:request("POST", "/credits/estimate", { segment_count = 2, model_id = "kling3_std" }))
    assert.is_number(e.total_credits)
  end)
end)

describe("pages iterators (sandbox)", function()
  local ids = {}
  setup(function()
    S.reset("acme")
    local c = client("acme")
    for i = 1, 5 do
      local j = assert(c.jobs:create{ product_name = "Paged Mug " .. i,
        product_image_url = "https://example.com/mug.jpg", segment_count = 1, stop_at_stage = "agents" })
      ids[#ids + 1] = j.job_id
    end
  end)

  it("jobs:pages yields whole pages (items, total, page, page_size, total_pages), the items those of each", function()
    local c = client("acme")
    local pages, via_pages = {}, {}
    for page in c.jobs:pages{ page_size = 2 } do
      pages[#pages + 1] = page
      for _, j in ipairs(page.items) do via_pages[#via_pages + 1] = j.job_id end
    end
    assert.equal(3, #pages)
    for i, page in ipairs(pages) do
      assert.equal(i, page.page); assert.equal(2, page.page_size)
      assert.equal(5, page.total); assert.equal(3, page.total_pages)
    end
    assert.equal(2, #pages[1].items); assert.equal(2, #pages[2].items); assert.equal(1, #pages[3].items)
    local via_each = {}
    for j in c.jobs:each{ page_size = 2 } do via_each[#via_each + 1] = j.job_id end
    assert.same(via_each, via_pages)
    local want = {}
    for _, id in ipairs(ids) do want[id] = true end
    for _, id in ipairs(via_pages) do assert.is_true(want[id]); want[id] = nil end
    assert.is_nil(next(want))
    -- a start page, and the ledger's iterator
    local n = 0
    for page in c.jobs:pages{ page = 2, page_size = 2 } do n = n + 1; assert.equal(n + 1, page.page) end
    assert.equal(2, n)
    local entries = 0
    for page in c.credits:transaction_pages{ page_size = 1 } do entries = entries + #page.items end
    assert.equal(assert(c.credits:transactions{ page_size = 1 }).total, entries)
  end)

  -- page 1 is served, then the same per-call headers table gets a fault: page 2 fails with a 503
  it("a failed page raises its structured error; errors = 'yield' yields (false, err) once", function()
    local c = client("acme")
    local headers = {}
    local seen = 0
    local ok, err = pcall(function()
      for _ in c.jobs:pages({ page_size = 2 }, { headers = headers, max_retries = 0 }) do
        seen = seen + 1
        headers["X-Sandbox-Fault"] = "status=503"
      end
    end)
    assert.is_false(ok)
    assert.equal("api", err.kind); assert.equal(503, err.status)
    assert.equal(1, seen)
    headers = {}
    local got, errs = 0, {}
    for page, perr in c.jobs:pages({ page_size = 2 }, { headers = headers, max_retries = 0, errors = "yield" }) do
      if page then got = got + 1 else errs[#errs + 1] = perr end
      headers["X-Sandbox-Fault"] = "status=503"
    end
    assert.equal(1, got)
    assert.equal(1, #errs); assert.equal(503, errs[1].status)
    assert.has_error(function() c.jobs:pages("x") end, "bad argument #1 to 'pages' (table expected, got string)")
    assert.has_error(function() c.jobs:pages({}, { errors = "log" }) end,
      "bad argument #2 to 'pages' (opts.errors must be \"raise\" or \"yield\")")
  end)
end)
