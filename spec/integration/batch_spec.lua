-- ugen batch / ugen.batch against the real sandbox: the issue's scenario (200
-- rows, 5 bad, faults on ~20% of requests, the `ugen batch run` process killed
-- with kill -9 three times and re-run), a kill inside the window between the
-- request and the journal write, the budget, 402/429 waits, uploads and
-- downloads. The sandbox clock runs at 100x (a job takes 0.2 s).
local S = require "support.sandbox"
local tools = require "support.tools"
local ugen = require "ugen"
local batch = require "ugen.batch"
local input = require "ugen.batch.input"
local journal = require "ugen.batch.journal"

local q, read_file, write_file = S.q, S.read_file, S.write_file
local UGEN = "bin/ugen"

local function env_prefix(info)
  return "env UGEN_BASE_URL=" .. q(info.base_url) .. " UGEN_API_KEY=" .. q(info.api_key) .. " UGEN_TTY=0 "
end

-- run the CLI to its end -> exit code, stdout, stderr
local function ugen_cli(dir, args, env)
  local out, err = dir .. "/cli.out", dir .. "/cli.err"
  local cmd = env_prefix(S.info()) .. (env or "") .. " lua5.4 " .. UGEN .. " " .. args .. " >" .. q(out)
    .. " 2>" .. q(err)
  local a, _, c = os.execute(cmd)
  local code = type(a) == "number" and a / 256 or c
  if type(a) == "number" and a < 256 then code = a end
  return code, read_file(out) or "", read_file(err) or ""
end

-- start the CLI in the background -> its pid (the lua5.4 process itself, by exec)
local function ugen_bg(dir, args)
  local cmd = "exec " .. env_prefix(S.info()) .. "lua5.4 " .. UGEN .. " " .. args
  local p = io.popen("sh -c " .. q(cmd .. " >" .. q(dir .. "/bg.out") .. " 2>" .. q(dir .. "/bg.err")) .. " & echo $!")
  local pid = tonumber(p:read("*a"):match("%d+"))
  p:close()
  return pid
end

local function alive(pid) return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
  or os.execute("kill -0 " .. pid .. " 2>/dev/null") == 0 end

local function kill9(pid)
  os.execute("kill -9 " .. pid .. " 2>/dev/null")
  assert.truthy(S.eventually(function() return not alive(pid) end, 5))
end

-- every job of the default tenant on the sandbox -> list, by_id
local function server_jobs()
  local list, by_id, page = {}, {}, 1
  while true do
    local r = S.request{ path = "/jobs?page_size=100&page=" .. page }
    assert.are.equal(200, r.status, r.body)
    for _, j in ipairs(r.json.items) do
      list[#list + 1] = j
      by_id[j.job_id] = j
    end
    if page >= r.json.total_pages then break end
    page = page + 1
  end
  return list, by_id
end

local function batch_jobs()
  local out = {}
  for _, j in ipairs((server_jobs())) do
    if type(j.idempotency_key) == "string" and j.idempotency_key:match("^batch%-") then out[#out + 1] = j end
  end
  return out
end

-- the catalogue of the issue: 200 rows, 5 with segment_count 12 (bad), 3 that fail on the server
local BAD, FAILING = {}, {}
local function catalogue(n)
  local lines = { "product_name,product_image_url,segment_count,key_selling_points,cta_text,sku" }
  for i = 1, n do
    local name, seg = "Product " .. i, (i % 3) + 1
    if i % 40 == 7 then seg = 12; BAD[i] = true end
    if i % 67 == 3 then name = name .. " [fail]"; FAILING[i] = true end
    lines[#lines + 1] = string.format('"%s",https://example.com/p%d.png,%d,"light|""quoted"", sturdy",'
      .. '"Buy\r\nnow %d",SKU-%d', name, i, seg, i, i)
  end
  return table.concat(lines, "\r\n") .. "\r\n"
end

describe("ugen batch against the sandbox", function()
  setup(function()
    tools.need("lua5.4")
    S.info()
  end)
  before_each(function()
    S.reset(true)
    S.speed(100)
  end)
  teardown(function()
    S.reset(true)
  end)

  it("200 rows, 5 bad, ~20% faults, kill -9 three times: 195 jobs, journal = server, report once per row",
    function()
    local dir = S.tmpdir()
    local csv = dir .. "/products.csv"
    write_file(csv, catalogue(200))
    local jpath = csv .. ".batch.sqlite"
    S.speed(40) -- a job takes 0.5 s: a whole run takes several seconds, so each kill lands mid-run
    local flags = " --poll-interval 0.1 --concurrency 16 --ignore sku --max-credits 60000 "
    local faults = { "reset_after;chance=0.2", "status=429;retry_after=1;chance=0.2", "status=503;chance=0.2" }
    math.randomseed(os.time())
    for k = 1, 3 do
      local pid = ugen_bg(dir, "--header " .. q("X-Sandbox-Fault: " .. faults[k]) .. " batch run " .. q(csv) .. flags)
      -- a random point of the run (a whole run takes about 8 s here)
      S.sleep(0.3 + math.random() * 1.5)
      assert.truthy(alive(pid), read_file(dir .. "/bg.err"))
      kill9(pid)
    end
    -- the journal after the kills is still a usable database
    local mid = assert(batch.status{ journal = jpath })
    assert.are.equal(200, mid.total)
    local code, out, err = ugen_cli(dir, "--header " .. q("X-Sandbox-Fault: reset_after;chance=0.2")
      .. " batch run " .. q(csv) .. flags)
    assert.are.equal(3, code, out .. err) -- done, with failed and invalid rows
    assert.truthy(out:find("200 rows: 192 completed, 3 failed, 5 invalid, 0 running, 0 pending", 1, true), out)
    -- the rows that need attention are named with row, line and field (or reason)
    local n_invalid, n_failed = 0, 0
    for row, line in out:gmatch("\nrow (%d+) %(line (%d+)%): invalid segment_count: ") do
      assert.truthy(BAD[tonumber(row)], row)
      assert.are.equal(2 * tonumber(row), tonumber(line)) -- each record spans two lines (a quoted CRLF)
      n_invalid = n_invalid + 1
    end
    for row in out:gmatch("\nrow (%d+) %(line %d+%): failed %(job [%x%-]+%): Keyframe QA failed") do
      assert.truthy(FAILING[tonumber(row)], row)
      n_failed = n_failed + 1
    end
    assert.are.same({ 5, 3 }, { n_invalid, n_failed })

    -- exactly 195 jobs on the sandbox, one per valid row (distinct keys)
    local jobs = batch_jobs()
    assert.are.equal(195, #jobs)
    local by_key = {}
    for _, j in ipairs(jobs) do
      assert.is_nil(by_key[j.idempotency_key])
      by_key[j.idempotency_key] = j
    end

    -- every row's journal entry matches the server
    local j = assert(journal.open(jpath))
    local entries = j:rows()
    j:close()
    assert.are.equal(200, #entries)
    local spent, seen_jobs = 0, {}
    for i, e in ipairs(entries) do
      assert.are.equal(i, e.row)
      if BAD[i] then
        assert.are.equal("invalid", e.state)
        assert.are.equal("segment_count", e.field)
        assert.is_nil(e.job_id)
      else
        local sj = by_key[e.key]
        assert.is_table(sj, "row " .. i .. " has no job on the server")
        assert.are.equal(sj.job_id, e.job_id)
        assert.is_nil(seen_jobs[e.job_id])
        seen_jobs[e.job_id] = true
        assert.are.equal("Product " .. i .. (FAILING[i] and " [fail]" or ""), sj.product_name)
        assert.are.equal(i % 3 + 1, sj.segment_count)
        if FAILING[i] then
          assert.are.equal("failed", e.state)
          assert.are.equal("failed", sj.status)
          assert.are.equal(sj.error_message, e.reason)
        else
          assert.are.equal("completed", e.state)
          assert.are.equal("completed", sj.status)
          assert.are.equal(sj.final_video_url, e.video_url)
        end
        assert.are.equal(sj.credits_consumed, e.credits)
        spent = spent + sj.credits_consumed
      end
    end

    -- the report lists every row once; credits spent = the sum of the jobs' charges
    code, out, err = ugen_cli(dir, "batch report " .. q(csv) .. " --csv " .. q(dir .. "/report.csv"))
    assert.are.equal(0, code, err)
    assert.are.equal("200 rows written to " .. dir .. "/report.csv\n", out)
    local records = assert(input.parse_csv(read_file(dir .. "/report.csv")))
    assert.are.same(batch.REPORT_COLUMNS, records[1])
    assert.are.equal(201, #records)
    local rows_seen, report_credits = {}, 0
    for r = 2, #records do
      local n = tonumber(records[r][1])
      assert.is_nil(rows_seen[n])
      rows_seen[n] = true
      report_credits = report_credits + (tonumber(records[r][6]) or 0)
    end
    for i = 1, 200 do assert.truthy(rows_seen[i], "row " .. i .. " missing from the report") end
    local st = assert(batch.status{ input = csv })
    assert.are.equal(spent, st.credits_spent)
    assert.are.equal(spent, report_credits)
    assert.is_true(spent > 0)
    -- and the ledger agrees: every consume entry of these jobs adds up to the same
    local consumed = 0
    local pg = 1
    while true do
      local r = S.request{ path = "/credits/transactions?page_size=100&page=" .. pg }
      for _, t in ipairs(r.json.items) do
        if t.type == "consume" and seen_jobs[t.job_id] then consumed = consumed - t.amount end
      end
      if pg >= r.json.total_pages then break end
      pg = pg + 1
    end
    assert.are.equal(spent, consumed)
  end)

  it("kill -9 after the API made the job but before the journal knew: the re-run finds that job", function()
    local dir = S.tmpdir()
    local csv = dir .. "/p.csv"
    write_file(csv, "product_name,product_image_url,segment_count\nMug,https://example.com/m.png,1\n")
    local before = #batch_jobs()
    -- every request is answered 2 s after it was processed: kill while the create's answer is held
    local pid = ugen_bg(dir, "--header 'X-Sandbox-Fault: delay=2' batch run " .. q(csv) .. " --poll-interval 0.1")
    local made = S.eventually(function() local l = batch_jobs(); return #l > before and l end, 15, 0.02)
    assert.is_table(made, read_file(dir .. "/bg.err"))
    -- meanwhile a second run of the same journal is refused
    local c2, _, e2 = ugen_cli(dir, "batch run " .. q(csv))
    assert.are.equal(1, c2)
    assert.truthy(e2:find("another run is using the journal", 1, true), e2)
    kill9(pid)
    local j = assert(journal.open(csv .. ".batch.sqlite"))
    local e = j:row(1)
    j:close()
    assert.are.equal("pending", e.state) -- the answer never reached the journal
    assert.is_nil(e.job_id)
    assert.are.equal(made[1].idempotency_key, e.key)
    local code, out, err = ugen_cli(dir, "batch run " .. q(csv) .. " --poll-interval 0.1")
    assert.are.equal(0, code, out .. err)
    local after = batch_jobs()
    assert.are.equal(before + 1, #after) -- no second job
    j = assert(journal.open(csv .. ".batch.sqlite"))
    e = j:row(1)
    j:close()
    assert.are.equal("completed", e.state)
    assert.are.equal(made[1].job_id, e.job_id)
  end)

  it("--max-credits refuses a batch estimated above it; running out of available credits stops, a re-run resumes",
    function()
    local dir = S.tmpdir()
    local csv = dir .. "/p.csv"
    local lines = { "product_name,product_image_url,segment_count" }
    for i = 1, 4 do lines[#lines + 1] = "P" .. i .. ",https://example.com/" .. i .. ".png,1" end
    write_file(csv, table.concat(lines, "\n") .. "\n")
    local est = S.request{ method = "POST", path = "/credits/estimate", json = { segment_count = 1 } }.json
    local one = est.total_credits
    local code, out, err = ugen_cli(dir, "batch run " .. q(csv) .. " --max-credits " .. (4 * one - 1))
    assert.are.equal(1, code, out)
    assert.truthy(err:find("^error: insufficient_credits: the batch needs about " .. 4 * one), err)
    assert.are.equal(0, #batch_jobs())
    -- the account can pay for two and a half jobs: two are made, then the batch stops
    local bal = S.request{ path = "/credits/balance" }.json
    local cut = bal.available_credits - math.floor(2.5 * one)
    assert.are.equal(200, S.request{ method = "POST", url = S.info().origin .. "/_sandbox/credits",
                                      json = { amount = -cut } }.status)
    code, out, err = ugen_cli(dir, "batch run " .. q(csv) .. " --max-credits " .. (4 * one) .. " --poll-interval 0.1")
    assert.are.equal(1, code, out .. err)
    assert.truthy(out:find("4 rows: 2 completed, 0 failed, 0 invalid, 0 running, 2 pending", 1, true), out)
    assert.truthy(out:find("stopped: not enough available credits", 1, true), out)
    assert.are.equal(2, #batch_jobs())
    -- credits back: the re-run makes the two others, and only them
    S.request{ method = "POST", url = S.info().origin .. "/_sandbox/credits", json = { amount = cut } }
    code, out, err = ugen_cli(dir, "batch run " .. q(csv) .. " --max-credits " .. (4 * one) .. " --poll-interval 0.1")
    assert.are.equal(0, code, out .. err)
    assert.truthy(out:find("4 rows: 4 completed", 1, true), out)
    assert.are.equal(4, #batch_jobs())
    local st = assert(batch.status{ input = csv })
    assert.are.equal(4, st.completed)
    assert.is_true(st.credits_spent <= 4 * one)
  end)

  it("waits out 402 and 429 (Retry-After) without failing a row; uploads a local image; --download", function()
    local dir = S.tmpdir()
    local png = read_file("sandbox/static/image.png")
    write_file(dir .. "/mug.png", png)
    local rows = {
      { product_name = "Local", product_image_url = dir .. "/mug.png", segment_count = 1 },
      { product_name = "Remote", product_image_url = "https://example.com/r.png", segment_count = 2 },
    }
    -- the first three POST /jobs get a 402 with Retry-After (the header is added to the creates only,
    -- by a runtime that wraps the client's own)
    local key = "batch-spec-" .. tostring(os.time()) .. tostring(math.random(1e6))
    local base = ugen.new{ base_url = S.info().base_url, api_key = S.info().api_key }.runtime
    local rt = {}
    for k, v in pairs(base) do rt[k] = v end
    local creates = 0
    rt.perform = function(req)
      if req.method == "POST" and req.url:match("/jobs$") then
        creates = creates + 1
        req.headers["X-Sandbox-Fault"] = "status=402;retry_after=0.3;count=3;key=" .. key
      end
      return base.perform(req)
    end
    local c = ugen.new{ base_url = S.info().base_url, api_key = S.info().api_key, runtime = rt }
    local states = {}
    local s = assert(batch.run{ client = c, rows = rows, journal = dir .. "/j.sqlite", poll_interval = 0.1,
      download = dir .. "/videos", on_row = function(e) states[e.state] = true end })
    assert.are.equal(5, creates) -- 3 answered 402 and waited, then one each
    assert.is_nil(states.failed)
    assert.are.equal(2, s.completed)
    assert.are.equal(0, s.failed)
    local entries = assert(batch.report{ journal = dir .. "/j.sqlite" })
    for _, e in ipairs(entries) do
      assert.are.equal("completed", e.state)
      local f = read_file(e.file)
      assert.are.equal(#read_file("sandbox/static/sample.mp4"), #f)
    end
    local _, by_id = server_jobs()
    assert.truthy(by_id[entries[1].job_id].product_image_url:find("/files/", 1, true))
    assert.are.equal("https://example.com/r.png", by_id[entries[2].job_id].product_image_url)

    -- 429: the tenant's concurrent limit 1, three rows at concurrency 3
    S.request{ method = "PUT", url = S.info().origin .. "/_sandbox/limits", json = { concurrent_limit = 1 } }
    local c2 = ugen.new{ base_url = S.info().base_url, api_key = S.info().api_key, max_retries = 0 }
    local s3 = assert(batch.run{ client = c2, journal = dir .. "/j3.sqlite", poll_interval = 0.1, concurrency = 3,
      rows = { rows[2], { product_name = "B", product_image_url = "https://example.com/b.png", segment_count = 1 },
               { product_name = "C", product_image_url = "https://example.com/c.png", segment_count = 1 } } })
    assert.are.equal(3, s3.completed)
  end)

  it("invalid input: a header column that is no field is refused naming it; bad rows name row and field", function()
    local dir = S.tmpdir()
    local csv = dir .. "/p.csv"
    write_file(csv, "product_nme,product_image_url,segment_count\nMug,https://example.com/m.png,1\n")
    local code, _, err = ugen_cli(dir, "batch run " .. q(csv))
    assert.are.equal(1, code)
    assert.truthy(err:find("column 'product_nme' is not a jobs:create field (did you mean 'product_name'?)", 1, true),
      err)
    -- on a terminal (forced): one line rewritten in place, never wider than COLUMNS - 1
    local out
    code, out, err = ugen_cli(dir, "batch run " .. q(csv) .. " --map product_nme=product_name --poll-interval 0.1",
      "UGEN_TTY=1 COLUMNS=60")
    assert.are.equal(0, code, err)
    assert.truthy(out:find("1 rows: 1 completed", 1, true), out)
    assert.truthy(err:find("\r\27[K", 1, true), err)
    assert.truthy(err:find("1/1 done, 1 completed, %d+ credits\n$"), err)
    for piece in err:gmatch("\r\27%[K([^\r\n]*)") do assert.is_true(#piece <= 59, piece) end
    assert.falsy(err:find("row 1 (line", 1, true)) -- no per-row lines on a terminal
    -- the same journal with a changed input is refused
    write_file(csv, "product_nme,product_image_url,segment_count\nMug,https://example.com/m.png,2\n")
    local code2, _, err2 = ugen_cli(dir, "batch run " .. q(csv) .. " --map product_nme=product_name")
    assert.are.equal(1, code2)
    assert.truthy(err2:find("the input differs from the batch", 1, true), err2)
    assert.are.equal(1, #batch_jobs())
  end)
end)
