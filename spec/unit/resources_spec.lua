-- Resources built from the endpoint table, plus the hand-written parts of
-- jobs (wait, each, download) and multipart uploads; observed through a
-- user-function transport (a public SDK feature).
local ugen = require "ugen"
local endpoints = require "ugen.endpoints"
local json = require "ugen.json"

local BASE = "http://api.test.invalid/api/v1"
local KEY = "ugen_sk_test_ABCDEFGHIJKLMNOP"

local function res(status, body, headers)
  return { status = status, headers = headers or {}, body = body and json.encode(body) or "" }
end

local function client(fn, extra)
  local o = { api_key = KEY, base_url = BASE, transport = fn, rng = function() return 0 end }
  for k, v in pairs(extra or {}) do o[k] = v end
  return ugen.new(o)
end

describe("generated resources", function()
  it("give every endpoint of the table a method on its resource", function()
    local c = client(function() return res(200, {}) end)
    for _, ep in ipairs(endpoints.list) do
      assert.is_function(c[ep.resource][ep.name], ep.resource .. ":" .. ep.name)
    end
    assert.is_function(c.jobs.each); assert.is_function(c.jobs.wait)
    assert.is_function(c.credits.each_transaction)
    assert.is_function(c.jobs.pages); assert.is_function(c.credits.transaction_pages)
    assert.equal("ugen.resource(jobs)", tostring(c.jobs))
  end)

  it("send the documented method and path for each call", function()
    local calls = {}
    local c = client(function(req) calls[#calls + 1] = req; return res(200, {}) end)
    c.jobs:get("j1"); c.jobs:list(); c.credits:balance(); c.credits:transactions{ job_id = "j1" }
    c.credits:estimate{ segment_count = 3, model_id = "veo3_fast", variant = "i2v", music_enabled = true,
                        voice_enabled = true }
    c.webhooks:set{ webhook_url = "https://h.example/hook", webhook_secret = ("a"):rep(64) }
    c.webhooks:get(); c.webhooks:delete()
    c.models:list(); c.models:get("kling3_std"); c.models:try("kling3_std", { prompt = "x" })
    c.tenant:get(); c.music:catalog(); c.music:list(); c.music:delete("m1")
    c.templates:list{ limit = 5 }; c.templates:create{ name = "t", config = { segment_count = 2 } }
    local got = {}
    for i, r in ipairs(calls) do got[i] = r.method .. " " .. r.url:sub(#BASE + 1) end
    assert.same({
      "GET /jobs/j1", "GET /jobs", "GET /credits/balance", "GET /credits/transactions?job_id=j1",
      "POST /credits/estimate", "PUT /tenants/me/webhook", "GET /tenants/me/webhook", "DELETE /tenants/me/webhook",
      "GET /models", "GET /models/kling3_std", "POST /models/kling3_std/try", "GET /tenants/me",
      "GET /music/catalog", "GET /music/custom", "DELETE /music/custom/m1", "GET /templates?limit=5",
      "POST /templates",
    }, got)
    assert.same({ segment_count = 3, model_id = "veo3_fast", variant = "i2v", music_enabled = true,
                  voice_enabled = true }, json.decode(calls[5].body))
    assert.same({ prompt = "x" }, json.decode(calls[11].body))
  end)

  it("return bare arrays as Lua lists", function()
    local c = client(function() return { status = 200, headers = {}, body = '[{"id":"a"},{"id":"b"}]' } end)
    local list = c.models:list()
    assert.equal(2, #list); assert.equal("b", list[2].id)
  end)
end)

describe("each (envelope pagination)", function()
  local function pager(total_items, page_size_default, opts)
    opts = opts or {}
    local calls = {}
    local fn = function(req)
      calls[#calls + 1] = req.url
      local page = tonumber(req.url:match("[?&]page=(%d+)")) or 1
      local size = tonumber(req.url:match("page_size=(%d+)")) or page_size_default
      if opts.fail_page == page then return res(500, { error = { code = "X", message = "boom" } }) end
      local items = {}
      for i = (page - 1) * size + 1, math.min(page * size, total_items) do items[#items + 1] = { n = i } end
      local env = { items = items, total = total_items, page = page, page_size = size,
                    total_pages = math.max(1, math.ceil(total_items / size)) }
      if opts.no_total_pages then env.total_pages = nil end
      return res(200, env)
    end
    return fn, calls
  end

  it("visits every item of every page in order, and stops at total_pages", function()
    local fn, calls = pager(7, 20)
    local c = client(fn)
    local seen = {}
    for job in c.jobs:each{ page_size = 3 } do seen[#seen + 1] = job.n end
    assert.same({ 1, 2, 3, 4, 5, 6, 7 }, seen)
    assert.equal(3, #calls)
    assert.matches("page=1&page_size=3", calls[1]); assert.matches("page=3&page_size=3", calls[3])
  end)

  it("treats an empty items list as the end, and works without total_pages", function()
    local fn, calls = pager(0, 20)
    local n = 0
    for _ in client(fn).jobs:each() do n = n + 1 end
    assert.equal(0, n); assert.equal(1, #calls)
    fn, calls = pager(6, 20, { no_total_pages = true })
    n = 0
    for _ in client(fn).credits:each_transaction{ page_size = 3 } do n = n + 1 end
    assert.equal(6, n); assert.equal(3, #calls)                   -- third page empty -> end
  end)

  it("with errors = 'yield': yields false, err once on a failing page, then ends", function()
    local fn = pager(9, 3, { fail_page = 2 })
    local c = client(fn, { max_retries = 0 })
    local seen, errs = {}, {}
    for job, err in c.jobs:each({ page_size = 3 }, { errors = "yield" }) do
      if job then seen[#seen + 1] = job.n else errs[#errs + 1] = err end
    end
    assert.same({ 1, 2, 3 }, seen)
    assert.equal(1, #errs); assert.equal("api", errs[1].kind); assert.equal(500, errs[1].status)
  end)

  it("checks its arguments", function()
    local c = client(function() return res(200, {}) end)
    assert.has_error(function() c.jobs:each("x") end, "bad argument #1 to 'each' (table expected, got string)")
  end)
end)

describe("jobs:wait", function()
  local STAGES = { "prepare", "agents", "init", "generation", "concat", "audio", "captions" }

  -- a job that advances one step per poll
  local function progressing(final)
    local polls = 0
    return function(req)
      polls = polls + 1
      assert.equal("GET", req.method)
      local i = polls
      if i <= #STAGES then
        return res(200, { job_id = "j1", status = "processing", current_stage = STAGES[i],
                          progress_percent = (i - 1) * 14 })
      end
      if final == "failed" then
        return res(200, { job_id = "j1", status = "failed", current_stage = "generation", progress_percent = 40,
                          error_message = "Keyframe QA failed: PRODUCT_INTEGRITY" })
      elseif final == "stage" then
        return res(200, { job_id = "j1", status = "weird", current_stage = "complete", progress_percent = 100,
                          final_video_url = "https://cdn/v.mp4" })
      elseif final == "cancelled" then
        return res(200, { job_id = "j1", status = "canceled", current_stage = "init", progress_percent = 20 })
      end
      return res(200, { job_id = "j1", status = "completed", current_stage = "complete", progress_percent = 100,
                        final_video_url = "https://cdn/v.mp4" })
    end, function() return polls end
  end

  it("polls until completed and calls on_progress on every change", function()
    local fn, polls = progressing()
    local seen = {}
    local job = client(fn).jobs:wait("j1", { interval = 0.01, on_progress = function(j)
      seen[#seen + 1] = j.current_stage .. ":" .. j.progress_percent
    end })
    assert.equal("completed", job.status)
    assert.equal("https://cdn/v.mp4", job.final_video_url)
    assert.equal(8, polls())
    assert.same({ "prepare:0", "agents:14", "init:28", "generation:42", "concat:56", "audio:70", "captions:84",
                  "complete:100" }, seen)
  end)

  it("does not call on_progress when nothing changed", function()
    local n = 0
    local fn = function()
      n = n + 1
      if n < 4 then return res(200, { status = "processing", current_stage = "agents", progress_percent = 10 }) end
      return res(200, { status = "completed", current_stage = "complete", progress_percent = 100 })
    end
    local calls = 0
    assert.truthy(client(fn).jobs:wait("j1", { interval = 0.01, on_progress = function() calls = calls + 1 end }))
    assert.equal(2, calls)
  end)

  it("treats stage complete with a final_video_url as done", function()
    local fn = progressing("stage")
    local job = client(fn).jobs:wait("j1", { interval = 0.01 })
    assert.equal("complete", job.current_stage)
  end)

  it("returns kind job_failed with err.job for failed and cancelled jobs", function()
    local fn = progressing("failed")
    local job, err = client(fn).jobs:wait("j1", { interval = 0.01 })
    assert.is_nil(job)
    assert.equal("job_failed", err.kind); assert.equal("JOB_FAILED", err.code)
    assert.equal("Keyframe QA failed: PRODUCT_INTEGRITY", err.message)
    assert.equal("failed", err.job.status)
    fn = progressing("cancelled")
    job, err = client(fn).jobs:wait("j1", { interval = 0.01 })
    assert.is_nil(job)
    assert.equal("job_failed", err.kind); assert.equal("JOB_CANCELLED", err.code)
  end)

  it("ends with kind timeout (err.job = last job) at the deadline", function()
    local fn = function() return res(200, { job_id = "j1", status = "processing", current_stage = "agents" }) end
    local sched = require("ugen").scheduler
    local t0 = sched.now()
    local job, err = client(fn).jobs:wait("j1", { interval = 0.05, timeout = 0.3 })
    local dt = sched.now() - t0
    assert.is_nil(job)
    assert.equal("timeout", err.kind); assert.equal("WAIT_TIMEOUT", err.code)
    assert.equal("agents", err.job.current_stage)
    assert.is_true(dt >= 0.29 and dt < 0.8, tostring(dt))
  end)

  it("stops at once on a non-retryable error, keeps polling through retryable ones", function()
    local n = 0
    local fn = function()
      n = n + 1
      return res(404, { error = { code = "NOT_FOUND", message = "no such job" } })
    end
    local _, err = client(fn).jobs:wait("nope", { interval = 0.01 })
    assert.equal("not_found", err.kind); assert.equal(1, n)
    n = 0
    fn = function()
      n = n + 1
      if n <= 2 then return res(503, {}) end
      return res(200, { status = "completed", current_stage = "complete" })
    end
    local job = client(fn, { max_retries = 0 }).jobs:wait("j1", { interval = 0.01 })
    assert.equal("completed", job.status); assert.equal(3, n)
  end)

  it("checks its arguments", function()
    local c = client(function() return res(200, {}) end)
    assert.has_error(function() c.jobs:wait(nil) end, "bad argument #1 to 'wait' (string expected, got nil)")
    assert.has_error(function() c.jobs:wait("j", { interval = 0 }) end,
      "bad argument #2 to 'wait' (opts.interval must be a positive number)")
    assert.has_error(function() c.jobs:wait("j", { on_progress = 1 }) end,
      "bad argument #2 to 'wait' (opts.on_progress must be a function)")
    assert.has_error(function() c.jobs:wait("j", { every = 1 }) end,
      "bad argument #2 to 'wait' (unknown option 'every')")
  end)

  it("is_finished knows the terminal states", function()
    local is = require("ugen.resources.jobs").is_finished
    assert.equal("completed", is{ status = "completed" })
    assert.equal("failed", is{ status = "failed" })
    assert.equal("cancelled", is{ status = "cancelled" })
    assert.equal("cancelled", is{ status = "canceled" })
    assert.equal("completed", is{ status = "x", current_stage = "complete", final_video_url = "u" })
    assert.is_nil(is{ status = "processing", current_stage = "complete" })
    assert.is_nil(is{ status = "queued" })
  end)
end)

describe("multipart uploads", function()
  it("send files as mime parts (path or data), with type from the extension", function()
    local calls = {}
    local c = client(function(req) calls[#calls + 1] = req; return res(201, { url = "https://s/x.png" }) end)
    local tmp = os.tmpname()
    local f = assert(io.open(tmp, "wb")); f:write("\137PNG\r\n\26\n" .. ("\0"):rep(24)); f:close()
    local r = c.uploads:product_image{ file = { path = tmp, filename = "shoe.png" } }
    assert.equal("https://s/x.png", r.url)
    local req = calls[1]
    assert.equal("POST", req.method)
    assert.equal(BASE .. "/uploads/product-image", req.url)
    assert.is_nil(req.body); assert.is_nil(req.headers["Content-Type"])
    assert.same({ { name = "file", path = tmp, filename = "shoe.png", type = "image/png" } }, req.mime)
    c.music:upload{ file = { data = "ID3...", filename = "song.mp3" }, title = "Song" }
    local parts = {}
    for _, p in ipairs(calls[2].mime) do parts[p.name] = p end
    assert.equal("audio/mpeg", parts.file.type); assert.equal("ID3...", parts.file.data)
    assert.equal("Song", parts.title.data)
    os.remove(tmp)
  end)

  it("report unreadable or too large files and missing fields without a request", function()
    local calls = 0
    local c = client(function() calls = calls + 1; return res(201, {}) end)
    local _, err = c.uploads:product_image{ file = "/nonexistent/x.png" }
    assert.equal("validation", err.kind); assert.same({ "body", "file" }, err.fields[1].loc)
    _, err = c.tenant:upload_avatar{ file = { data = ("x"):rep(2 * 1024 * 1024 + 1), filename = "a.png" } }
    assert.equal("validation", err.kind); assert.matches("limit", err.fields[1].msg)
    _, err = c.music:upload{ file = { data = "x", filename = "a.mp3" } }
    assert.equal("missing", err.fields[1].type); assert.same({ "body", "title" }, err.fields[1].loc)
    assert.equal(0, calls)
  end)
end)

describe("jobs:download", function()
  -- the transport honours req.output as the contract says: it writes the body there
  local function writer(calls, status)
    return function(req)
      calls[#calls + 1] = req
      local f = assert(io.open(req.output, "wb"))
      f:write(status == 200 and "VIDEO" or "<html>error</html>")
      f:close()
      return { status = status or 200, headers = {}, size = 5 }
    end
  end

  it("sends credentials only to the API's own origin", function()
    local calls = {}
    local c = client(writer(calls, 200))
    local path = os.tmpname()
    local r = c.jobs:download({ job_id = "j", final_video_url = "https://cdn.example/v.mp4" }, path)
    assert.equal(path, r.path)
    assert.equal(path .. ".part", calls[1].output)
    assert.equal("VIDEO", io.open(path, "rb"):read("*a"))
    assert.is_nil(io.open(path .. ".part", "rb"))
    assert.is_nil(calls[1].headers["X-API-Key"])
    assert.is_true(calls[1].follow)
    c.jobs:download({ job_id = "j", final_video_url = "http://api.test.invalid/files/v.mp4" }, path)
    assert.equal(KEY, calls[2].headers["X-API-Key"])
    assert.is_nil(calls[2].follow)                        -- with credentials: never follow a redirect
    c.jobs:download({ job_id = "j", final_video_url = "/files/v.mp4" }, path)
    assert.equal("http://api.test.invalid:80/files/v.mp4", calls[3].url)
    local _, err = c.jobs:download({ job_id = "j", status = "processing" }, path)
    assert.equal("NO_VIDEO", err.code)
    os.remove(path)
  end)

  it("leaves nothing behind when the download fails", function()
    local calls = {}
    local c = client(writer(calls, 404))
    local path = os.tmpname()
    os.remove(path)
    local r, err = c.jobs:download({ job_id = "j", final_video_url = "https://cdn.example/v.mp4" }, path)
    assert.is_nil(r)
    assert.equal("not_found", err.kind)
    assert.is_nil(io.open(path, "rb"))
    assert.is_nil(io.open(path .. ".part", "rb"))
  end)
end)
