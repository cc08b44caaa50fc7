-- ugen.batch.input: RFC 4180 CSV edge cases, JSON Lines, typing of cells by
-- the endpoint table, validation through ugen.validate (row and field named).
local input = require "ugen.batch.input"
local json = require "ugen.json"

local function csv(text)
  local recs, lines = input.parse_csv(text)
  return recs, lines
end

describe("ugen.batch.input CSV (RFC 4180)", function()
  it("splits records on CRLF and LF; the last line break is optional", function()
    assert.are.same({ { "a", "b" }, { "1", "2" }, { "3", "4" } }, (csv("a,b\r\n1,2\n3,4")))
    assert.are.same({ { "a", "b" }, { "1", "2" } }, (csv("a,b\n1,2\n")))
  end)

  it("quoted fields hold commas, doubled quotes and line breaks; lines are counted through them", function()
    local recs, lines = csv('name,note\n"Mug, big","say ""hi""\r\nnext line"\nx,y\n')
    assert.are.same({ "Mug, big", 'say "hi"\r\nnext line' }, recs[2])
    assert.are.same({ "x", "y" }, recs[3])
    assert.are.same({ 1, 2, 4 }, lines)
  end)

  it("keeps empty fields, spaces and a lone CR as data; skips a BOM and blank lines", function()
    local recs = csv("\239\187\191a,b,c\n\n , ,\n\nx\ry,,\n")
    assert.are.same({ { "a", "b", "c" }, { " ", " ", "" }, { "x\ry", "", "" } }, recs)
  end)

  it("an empty quoted field is empty; a quoted field may end the input", function()
    assert.are.same({ { "", "a" } }, (csv('"",a')))
    assert.are.same({ { "a", "b" } }, (csv('a,"b"')))
  end)

  it("refuses an unterminated quote, a quote inside an unquoted field, text after a closing quote", function()
    local r, err = csv('a,b\n"open,1\n')
    assert.is_nil(r)
    assert.truthy(err.message:find("line 2: unterminated quoted field", 1, true), err.message)
    r, err = csv('a,b\nx"y,1\n')
    assert.is_nil(r)
    assert.truthy(err.message:find("line 2: a quote inside an unquoted field", 1, true))
    r, err = csv('a,b\n"x"y,1\n')
    assert.is_nil(r)
    assert.truthy(err.message:find("line 2: text after a closing quote", 1, true))
  end)

  it("writes fields back quoted only when needed, and reads them back the same", function()
    local fields = { "plain", "a,b", 'q"q', "l\nl", "", 12 }
    local line = {}
    for i, f in ipairs(fields) do line[i] = input.csv_field(f) end
    local text = table.concat(line, ",")
    assert.are.equal('plain,"a,b","q""q","l\nl",,12', text)
    assert.are.same({ "plain", "a,b", 'q"q', "l\nl", "", "12" }, (csv(text))[1])
  end)
end)

describe("ugen.batch.input rows", function()
  local HEAD = "product_name,product_image_url,segment_count"

  it("types cells by the endpoint table, applies defaults and the column map", function()
    local rows = assert(input.read{ format = "csv", text = "title,product_image_url,segment_count,"
      .. "key_selling_points,music_enabled,sku\nMug,https://x/m.png,3,\"light|sturdy, big\",yes,S1\n"
      .. "Cup,https://x/c.png,,\"[\"\"a\"\"]\",0,S2\n",
      columns = { title = "product_name" }, ignore = { "sku" }, defaults = { segment_count = 2 } })
    assert.are.equal(2, #rows)
    local p = rows[1].params
    assert.are.equal("Mug", p.product_name)
    assert.are.equal(3, p.segment_count)
    local math_type = rawget(math, "type")
    if math_type then assert.are.equal("integer", math_type(p.segment_count)) end -- sent as 3, not 3.0
    assert.are.same({ "light", "sturdy, big" }, p.key_selling_points)
    assert.is_true(json.is_array(p.key_selling_points))
    assert.is_true(p.music_enabled)
    assert.is_nil(p.sku)
    assert.are.equal(2, rows[2].params.segment_count) -- empty cell: the default
    assert.is_false(rows[2].params.music_enabled)
    assert.are.same({ "a" }, rows[2].params.key_selling_points)
    assert.are.same({ 1, 2 }, { rows[1].row, rows[2].row })
    assert.are.same({ 2, 3 }, { rows[1].line, rows[2].line })
  end)

  it("a bad row is invalid with its field, and does not stop the good ones", function()
    local rows = assert(input.read{ format = "csv", text = HEAD .. "\nA,https://x/a.png,1\nB,https://x/b.png,11\n"
      .. "C,https://x/c.png,two\n,https://x/d.png,1\nE,https://x/e.png\n" })
    assert.is_table(rows[1].params)
    assert.is_nil(rows[1].invalid)
    assert.are.equal("segment_count", rows[2].invalid.field)
    assert.truthy(rows[2].invalid.message:find("less than or equal to 10", 1, true))
    assert.are.equal("segment_count", rows[3].invalid.field)
    assert.truthy(rows[3].invalid.message:find("a number expected, got 'two'", 1, true))
    assert.are.equal("product_name", rows[4].invalid.field) -- empty: missing (required)
    assert.are.equal("?", rows[5].invalid.field)            -- 2 fields where the header has 3
    for i = 2, 5 do assert.is_nil(rows[i].params) end
  end)

  it("refuses a header column that is no jobs:create field, with a suggestion", function()
    local r, err = input.read{ format = "csv", text = "product_name,product_image_url,segmnt_count\n" }
    assert.is_nil(r)
    assert.are.equal("segmnt_count", err.field)
    assert.truthy(err.message:find("did you mean 'segment_count'?", 1, true), err.message)
    r, err = input.read{ format = "csv", text = "product_name,product_name\n" }
    assert.is_nil(r)
    assert.truthy(err.message:find("appears twice", 1, true))
  end)

  it("an idempotency_key in the input is refused (the batch derives it)", function()
    local rows = assert(input.rows{ rows = {
      { product_name = "A", product_image_url = "https://x/a.png", segment_count = 1, idempotency_key = "k" } } })
    assert.are.equal("idempotency_key", rows[1].invalid.field)
  end)

  it("a local image must be readable; it is resolved against base_dir", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p '" .. dir .. "'"))
    local f = assert(io.open(dir .. "/mug.png", "wb"))
    f:write("\137PNG\r\n\26\n")
    f:close()
    local rows = assert(input.read{ format = "csv", base_dir = dir,
      text = HEAD .. "\nA,mug.png,1\nB,missing.png,1\nC,https://x/c.png,1\n" })
    assert.are.equal(dir .. "/mug.png", rows[1].image_path)
    assert.are.equal("product_image_url", rows[2].invalid.field)
    assert.is_nil(rows[3].image_path)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("JSON Lines: one object per line, blank lines skipped, line numbers kept, bad lines invalid", function()
    local rows = assert(input.read{ format = "jsonl", text = '{"product_name":"A","product_image_url":"https://x/a",'
      .. '"segment_count":1,"key_selling_points":["x"]}\n\n[1,2]\nnot json\n'
      .. '{"product_name":"B","product_image_url":"https://x/b","segment_count":1,"colour":"red"}\n' })
    assert.are.equal(4, #rows)
    assert.is_table(rows[1].params)
    assert.are.same({ 1, 3, 4, 5 }, { rows[1].line, rows[2].line, rows[3].line, rows[4].line })
    assert.are.equal("?", rows[2].invalid.field)
    assert.are.equal("?", rows[3].invalid.field)
    assert.are.equal("colour", rows[4].invalid.field) -- an unknown field is an error (validate, unknown = "error")
  end)

  it("the canonical form does not depend on key order or on the input format", function()
    local a = assert(input.read{ format = "csv", text = HEAD .. ",music_enabled\nA,https://x/a.png,2,true\n" })
    local b = assert(input.read{ format = "jsonl",
      text = '{"music_enabled":true,"segment_count":2,"product_image_url":"https://x/a.png","product_name":"A"}\n' })
    assert.are.equal(a[1].source, b[1].source)
    local c = input.read{ format = "csv", text = HEAD .. "\nA,https://x/a.png,3\n" }
    assert.are_not.equal(a[1].source, c[1].source)
  end)

  it("format_of picks JSON Lines by extension, CSV otherwise", function()
    assert.are.equal("jsonl", input.format_of("x/p.jsonl"))
    assert.are.equal("jsonl", input.format_of("p.NDJSON"))
    assert.are.equal("csv", input.format_of("p.csv"))
    assert.are.equal("csv", input.format_of("p"))
  end)
end)

describe("ugen.batch.run arguments", function()
  local batch = require "ugen.batch"
  local client = require("ugen").new{ api_key = "k", base_url = "http://127.0.0.1:9/api/v1" }

  it("raise at the call site, naming the option", function()
    local cases = {
      { nil, "table expected" },
      { { input = "p.csv" }, "opts.client must be a ugen client" },
      { { client = client }, "give opts.input (a file) or opts.rows" },
      { { client = client, input = "p.csv", rows = {} }, "give opts.input (a file) or opts.rows" },
      { { client = client, rows = {} }, "opts.journal is required with opts.rows" },
      { { client = client, input = "p.csv", concurrency = 0 }, "opts.concurrency must be a positive integer" },
      { { client = client, input = "p.csv", max_credits = -1 }, "opts.max_credits must be a positive number" },
      { { client = client, input = "p.csv", format = "xml" }, "opts.format must be" },
      { { client = client, input = "p.csv", on_row = 1 }, "opts.on_row must be a function" },
      { { client = client, input = "p.csv", colums = {} }, "unknown option 'colums'" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(batch.run, c[1])
      assert.is_false(ok)
      assert.truthy(tostring(err):find("bad argument #1 to 'run'", 1, true), tostring(err))
      assert.truthy(tostring(err):find(c[2], 1, true), tostring(err))
    end
  end)

  it("an unreadable input is nil, err (kind io), nothing raised", function()
    local s, err = batch.run{ client = client, input = "/nonexistent/p.csv" }
    assert.is_nil(s)
    assert.are.equal("io", err.kind)
  end)
end)
