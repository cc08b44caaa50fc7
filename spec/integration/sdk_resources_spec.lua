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
