-- Issue 16, items 6 and 7, against the real sandbox (curl transport):
-- local file problems are kind "io" (a missing directory is named, never
-- created; a .part that cannot be opened), a job without a video is a
-- "validation" error naming the job, and tostring(err) carries the facts the
-- CLI shows (job id/status/stage, credits required/available, attempts); a
-- wrong base path is ROUTE_NOT_FOUND, not a missing job.
local S = require "support.sandbox"
local ugen = require "ugen"
local socket = require "socket"

local function client(slug, extra)
  local info = S.info()
  local o = { base_url = info.base_url, api_key = S.tenant[slug or "default"].api_key,
              rng = function() return 0 end, timeout = 15 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return ugen.new(o)
end

local function new_job(c, name)
  return assert(c.jobs:create{ product_name = name or "Mug", product_image_url = "https://example.com/m.png",
                               segment_count = 1 })
end

local function exists(path)
  local ok = os.execute("test -e " .. S.q(path) .. " -o -L " .. S.q(path))
  return ok == true or ok == 0
end

describe("sdk errors (sandbox)", function()
  local done_job
  local function completed(c)
    if not done_job then
      done_job = assert(c.jobs:wait(new_job(c, "Video").job_id, { interval = 0.05, timeout = 30 }))
    end
    return done_job
  end

  setup(function() S.info() end)

  it("download into a missing directory: kind io, NO_DIRECTORY, the directory named, nothing created", function()
    local c = client("acme")
    local job = completed(c)
    local dir = S.tmpdir()
    local path = dir .. "/no/such/out.mp4"
    local r, err = c.jobs:download(job, path, { max_retries = 3 })
    local _
    assert.is_nil(r)
    assert.equal("io", err.kind)
    assert.equal("NO_DIRECTORY", err.code)
    assert.is_false(err.retryable)
    assert.equal(0, err.attempts)
    assert.truthy(err.message:find(dir .. "/no/such does not exist", 1, true), err.message)
    assert.matches("^ugen: io error NO_DIRECTORY: .*create it first", tostring(err))
    assert.is_false(exists(dir .. "/no"))
    -- by job id: refused before the job is even fetched, same error
    _, err = c.jobs:download(job.job_id, path)
    assert.equal("NO_DIRECTORY", err.code)
    -- a file where the directory should be
    S.write_file(dir .. "/afile", "x")
    _, err = c.jobs:download(job, dir .. "/afile/out.mp4")
    assert.equal("io", err.kind); assert.equal("NO_DIRECTORY", err.code)
    assert.matches("is not a directory", err.message)
    -- the target itself a directory
    _, err = c.jobs:download(job, dir)
    assert.equal("io", err.kind); assert.equal("IS_DIRECTORY", err.code)
    -- the directory there: the same call works
    assert(os.execute("mkdir -p " .. S.q(dir .. "/no/such")))
    r, err = c.jobs:download(job, path)
    assert.is_table(r, tostring(err))
  end)

  it("a .part that cannot be opened (a directory there) is kind io from the C core, not retried", function()
    local c = client("acme")
    local path = S.tmpdir() .. "/out.mp4"
    assert(os.execute("mkdir -p " .. S.q(path .. ".part/sub")))
    local r, err = c.jobs:download(completed(c), path, { max_retries = 3 })
    assert.is_nil(r)
    assert.equal("io", err.kind)
    assert.equal("IO_ERROR", err.code)
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts)
    assert.matches("output file", err.message)
    assert.is_false(exists(path))
  end)

  it("a job without a video: kind validation, NO_VIDEO, err.job, tostring names the job", function()
    local c = client("acme")
    local job = new_job(c, "Slow")
    local r, err = c.jobs:download(job.job_id, S.tmpdir() .. "/none.mp4")
    assert.is_nil(r)
    assert.equal("validation", err.kind)
    assert.equal("NO_VIDEO", err.code)
    assert.is_false(err.retryable)
    assert.equal(job.job_id, err.job.job_id)
    assert.equal("final_video_url", err.fields[1].loc[2])
    assert.matches("not ready: wait for it", err.message)
    assert.truthy(tostring(err):find("(job " .. job.job_id .. ", status ", 1, true), tostring(err))
  end)

  it("job_failed: tostring names the job id, status and stage", function()
    local c = client("acme")
    local job = new_job(c, "Mug [fail:generation]")
    local _, err = c.jobs:wait(job.job_id, { interval = 0.02, timeout = 30 })
    assert.equal("job_failed", err.kind)
    local s = tostring(err)
    assert.truthy(s:find("(job " .. job.job_id .. ", status failed, stage " .. tostring(err.job.current_stage) .. ")",
      1, true), s)
  end)

  it("402: tostring gives the credits required and available", function()
    S.reset("lowcredit")
    local c = client("lowcredit")
    local _, err = c.jobs:create{ product_name = "Mug", product_image_url = "https://example.com/m.png",
                                  segment_count = 3 }
    assert.equal("insufficient_credits", err.kind)
    local s = tostring(err)
    assert.truthy(s:find(("(credits required %d, available %d)"):format(err.details.required,
      err.details.available), 1, true), s)
  end)

  it("a wrong base path is ROUTE_NOT_FOUND pointing at base_url; an unknown job stays not_found", function()
    local good = client("acme")
    local job = new_job(good)
    local bad = client("acme", { base_url = S.info().origin .. "/api/v2" })
    local r, err = bad.jobs:get(job.job_id)
    local _
    assert.is_nil(r)
    assert.equal("api", err.kind)
    assert.equal("ROUTE_NOT_FOUND", err.code)
    assert.equal(404, err.status)
    assert.matches("No route for GET /api/v2/jobs/", err.message)
    assert.matches("check the client's base_url", tostring(err))
    _, err = good.jobs:get("00000000-0000-4000-8000-000000000000")
    assert.equal("not_found", err.kind)
    assert.is_nil(tostring(err):find("base_url", 1, true))
  end)

  it("a dead port: tostring gives the attempt count", function()
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    local c = ugen.new{ base_url = "http://127.0.0.1:" .. port .. "/api/v1", api_key = "k-0123456789",
                        max_retries = 2, rng = function() return 0 end, connect_timeout = 2 }
    local r, err = c.jobs:get("00000000-0000-4000-8000-000000000000")
    assert.is_nil(r)
    assert.equal("network", err.kind)
    assert.equal(3, err.attempts)
    assert.matches("%(after 3 attempts%)$", tostring(err))
  end)
end)
