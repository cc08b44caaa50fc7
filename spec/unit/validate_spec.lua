-- ugen.validate: the endpoint-table-driven validator shared by the SDK and
-- the sandbox (the sandbox integration specs check it end to end too).
local validate = require "ugen.validate"
local endpoints = require "ugen.endpoints"
local json = require "ugen.json"

local function job(extra)
  local b = { product_name = "Mug", product_image_url = "https://x/mug.png", segment_count = 3 }
  for k, v in pairs(extra or {}) do b[k] = v end
  return b
end

describe("ugen.validate", function()
  it("accepts a valid body and returns a copy (unknown fields kept)", function()
    local params = job{ extra_field = { 1 } }
    local details, clean = validate.check("jobs.create", params)
    assert.is_nil(details)
    assert.are.same(params, clean)
    assert.are_not.equal(params, clean)
  end)

  it("missing required fields: FastAPI shape, body as input", function()
    local details = validate.check(endpoints.by_name["jobs.create"], { product_name = "Mug" })
    assert.are.same({ type = "missing", loc = { "body", "product_image_url" }, msg = "Field required",
                      input = { product_name = "Mug" } }, details[1])
    assert.are.same({ "body", "segment_count" }, details[2].loc)
    local d2 = validate.check("jobs.create", { product_name = "Mug" }, { body = { raw = true } })
    assert.are.same({ raw = true }, d2[1].input)
  end)

  it("the JSON null sentinel counts as absent", function()
    local details = validate.check("jobs.create", job{ segment_count = json.null }, { null = json.null })
    assert.are.equal("missing", details[1].type)
    assert.is_nil(validate.check("jobs.create", job{ persona_id = json.null }, { null = json.null }))
  end)

  it("type errors use the pydantic type names and messages", function()
    local cases = {
      { { segment_count = "3" }, "int_type", "Input should be a valid integer" },
      { { segment_count = 3.5 }, "int_type" },
      { { segment_count = 1 / 0 }, "int_type" },
      { { product_name = 1 }, "string_type", "Input should be a valid string" },
      { { music_enabled = 1 }, "bool_type", "Input should be a valid boolean" },
      { { music_volume = "0.2" }, "float_type", "Input should be a valid number" },
      { { key_selling_points = "a" }, "list_type", "Input should be a valid list" },
      { { key_selling_points = { a = 1 } }, "list_type" },
      { { voice_settings = "x" }, "dict_type", "Input should be a valid dictionary" },
      { { voice_settings = { "a" } }, "dict_type" },
    }
    for _, c in ipairs(cases) do
      local details = validate.check("jobs.create", job(c[1]))
      assert.is_table(details)
      assert.are.equal(c[2], details[1].type)
      if c[3] then assert.are.equal(c[3], details[1].msg) end
      local name = next(c[1])
      assert.are.same({ "body", name }, details[1].loc)
      assert.are.equal(c[1][name], details[1].input)
    end
    local d = validate.check("jobs.create", job{ key_selling_points = { "a", 2, "c", false } })
    assert.are.equal(2, #d)
    assert.are.same({ "body", "key_selling_points", 1 }, d[1].loc)
    assert.are.same({ "body", "key_selling_points", 3 }, d[2].loc)
  end)

  it("ranges and enums, with ctx", function()
    local d = validate.check("jobs.create", job{ segment_count = 0 })
    assert.are.same({ type = "greater_than_equal", loc = { "body", "segment_count" },
                      msg = "Input should be greater than or equal to 1", input = 0, ctx = { ge = 1 } }, d[1])
    d = validate.check("jobs.create", job{ segment_count = 11 })
    assert.are.equal("less_than_equal", d[1].type)
    assert.are.same({ le = 10 }, d[1].ctx)
    d = validate.check("jobs.create", job{ qai_mode = "x" })
    assert.are.equal("enum", d[1].type)
    assert.are.equal("Input should be 'lenient', 'standard' or 'strict'", d[1].msg)
    assert.are.same({ expected = "'lenient', 'standard' or 'strict'" }, d[1].ctx)
    -- known (open) values are not enforced
    assert.is_nil(validate.check("jobs.create", job{ caption_style = "brand_new_style" }))
  end)

  it("query values arrive as strings and are coerced", function()
    local details, clean = validate.check("jobs.list", { page = "2", page_size = "50" })
    assert.is_nil(details)
    assert.are.equal(2, clean.page)
    assert.are.equal(50, clean.page_size)
    details = validate.check("jobs.list", { page_size = "101" })
    assert.are.same({ "query", "page_size" }, details[1].loc)
    assert.are.equal("less_than_equal", details[1].type)
    details = validate.check("jobs.list", { page = "abc" })
    assert.are.equal("int_type", details[1].type)
    assert.are.equal("abc", details[1].input)
    assert.is_nil(validate.check("jobs.list", { page = 3 }))
  end)

  it("path and form params", function()
    local d = validate.check("jobs.get", {})
    assert.are.same({ "path", "job_id" }, d[1].loc)
    d = validate.check("music.upload", { file = "/tmp/x.mp3" })
    assert.are.same({ "body", "title" }, d[1].loc)
    assert.is_nil(validate.check("music.upload", { file = { path = "/tmp/x.mp3" }, title = "T" }))
  end)

  it("is_array marks arrays; unmarked tables are judged by their keys", function()
    local opts = { is_array = json.is_array }
    assert.is_nil(validate.check("jobs.create", job{ key_selling_points = { "a", "b" } }, opts))
    assert.is_nil(validate.check("jobs.create", job{ key_selling_points = json.array() }, opts))
    assert.is_nil(validate.check("jobs.create", job{ key_selling_points = {} }, opts))
    assert.is_nil(validate.check("jobs.create", job{ voice_settings = {} }, opts))
    local d = validate.check("jobs.create", job{ voice_settings = json.array() }, opts)
    assert.are.equal("dict_type", d[1].type)
  end)

  it("raises on wrong argument types", function()
    assert.has_error(function() validate.check("nope.nope", {}) end)
    assert.has_error(function() validate.check(42, {}) end)
    assert.has_error(function() validate.check("jobs.create", "x") end,
                     "bad argument #2 to 'check' (table expected, got string)")
    assert.has_error(function() validate.check("jobs.create", {}, 1) end)
  end)

  it("summary is one line", function()
    local d = validate.check("jobs.create", {})
    assert.are.equal("body.product_name: Field required; body.product_image_url: Field required; "
                     .. "body.segment_count: Field required", validate.summary(d))
  end)
end)
