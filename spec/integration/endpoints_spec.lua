-- Issue 4 against the real sandbox (nginx): every endpoint of the table is
-- routed and reaches a handler; every resource method through the SDK with its
-- error cases; uploads checked before sending by the SDK and enforced by the
-- sandbox (the same codes); client:request for the undocumented endpoints;
-- jobs:download streaming, resuming after a broken transfer, progress.
local S = require "support.sandbox"
local ugen = require "ugen"
local endpoints = require "ugen.endpoints"
local curl_perform = require("ugen").scheduler.perform
local samples = require "support.media_samples"

local unpack = table.unpack or unpack

local function client(slug, extra)
  local o = { base_url = S.info().base_url, api_key = S.tenant[slug or "default"].api_key,
              rng = function() return 0 end }
  for k, v in pairs(extra or {}) do o[k] = v end
  return ugen.new(o)
end

-- A client whose transport is the real curl one, recording every request.
local function recording(slug, extra)
  local calls = {}
  local o = { transport = function(req)
    calls[#calls + 1] = req
    return curl_perform(req)
  end }
  for k, v in pairs(extra or {}) do o[k] = v end
  return client(slug, o), calls
end

local function tmpfile(name, data)
  local path = S.tmpdir() .. "/" .. name
  S.write_file(path, data)
  return path
end

local function fetch(url) return S.request{ url = url, tenant = false } end

describe("endpoints (sandbox)", function()
  local VIDEO
  setup(function()
    S.info()
    VIDEO = S.read_file(S.info().root .. "/static/sample.mp4")
  end)

  describe("coverage", function()
    local function filled(ep, value)
      return (ep.path:gsub("{[%w_]+}", value))
    end

    it("the sandbox routes every endpoint of the table (auth is checked, never the generic 404/405)", function()
      for _, ep in ipairs(endpoints.list) do
        local r = S.request{ method = ep.method, path = filled(ep, "x"), tenant = false }
        local what = ep.method .. " " .. ep.path
        assert.equal(401, r.status, what .. ": " .. r.body)
        assert.equal("AUTHENTICATION_REQUIRED", r.json.error.code, what)
      end
      -- and a path outside the table is not routed (what the above would have shown)
      assert.equal(404, S.request{ path = "/personas", tenant = false }.status)
      assert.equal(405, S.request{ method = "PATCH", path = "/templates", tenant = false }.status)
    end)

    it("every SDK method reaches a sandbox handler with generated parameters", function()
      S.reset("acme")
      local c = client("acme", { max_retries = 0 })
      for _, ep in ipairs(endpoints.list) do
        local args = {}
        for i in ipairs(ep.path_params) do args[i] = "no-such-id" end
        local params, has = {}, false
        for _, p in ipairs(ep.params) do
          if p.required and p["in"] ~= "path" then
            has = true
            if p.type == "file" then
              local f = p.formats.png and "png" or next(p.formats)
              params[p.name] = { data = samples[f] }
            elseif p.type == "object" then params[p.name] = {}
            elseif p.type == "integer" then params[p.name] = p.min or 1
            else params[p.name] = "https://hooks.example.org/x" end
          end
        end
        if ep.open_body then params.prompt = "x"; has = true end
        if has then args[#args + 1] = params end
        local r = c[ep.resource]
        local res, err = r[ep.name](r, unpack(args, 1, #ep.path_params + (has and 1 or 0)))
        local what = ep.resource .. ":" .. ep.name
        if not res then
          assert.is_number(err.status, what .. ": " .. tostring(err))
          assert.is_true(err.status < 500, what .. ": " .. tostring(err))
          assert.not_equal(405, err.status, what)
          assert.not_equal("NOT_FOUND", err.code, what .. ": the generic 404")
          -- the only failures: unknown ids in the path, or server-side rules
          assert.truthy(#ep.path_params > 0 or err.status == 422, what .. ": " .. tostring(err))
        end
      end
      S.reset("acme")
    end)
  end)

  describe("models", function()
    it("list (a bare array, no coming_soon) and get for each listed id", function()
      local c = client()
      local list = assert(c.models:list())
      assert.is_true(#list >= 4)
      for _, m in ipairs(list) do
        assert.not_equal("coming_soon", m.status)
        local one = assert(c.models:get(m.id))
        assert.equal(m.id, one.id)
        assert.same(m.capabilities, one.capabilities)
      end
      assert.equal("coming_soon", assert(c.models:get("kling3_omni")).status)
    end)

    it("get: unknown id is not_found (MODEL_NOT_FOUND); bad ids fail before sending", function()
      local c, calls = recording()
      local r, err = c.models:get("no-such-model")
      assert.is_nil(r)
      assert.equal("not_found", err.kind); assert.equal(404, err.status); assert.equal("MODEL_NOT_FOUND", err.code)
      assert.equal(1, #calls)
      r, err = c.models:get("")
      assert.is_nil(r)
      assert.equal("validation", err.kind)
      assert.equal(1, #calls)
      assert.has_error(function() c.models:get(nil) end, "bad argument #1 to 'get' (string expected, got nil)")
      -- path values are URL-encoded: never another route ("/" goes out as %2F);
      -- a dot segment, which servers resolve after decoding %2F, is refused
      r, err = c.models:get("a/b")
      assert.is_nil(r)
      assert.equal("MODEL_NOT_FOUND", err.code)
      assert.equal(2, #calls)
      r, err = c.models:get("../credits/balance")
      assert.is_nil(r)
      assert.equal("validation", err.kind)
      assert.equal(2, #calls)
    end)

    it("try: a task id at once; its status through client:request; errors", function()
      local c = client()
      local task = assert(c.models:try("nano_banana_2", { prompt = "a red mug", aspect_ratio = "1:1" }))
      assert.is_string(task.task_id)
      assert.equal("queued", task.status)
      local done = S.eventually(function()
        local t = assert(c:request("GET", "/playground/tasks/{task_id}", { task_id = task.task_id }))
        return t.status == "completed" and t
      end, 10)
      assert.is_table(done, "the playground task did not complete")
      assert.equal("a red mug", done.input.prompt)
      assert.equal(200, fetch(done.result_url).status)
      local _, err = c.models:try("no-such-model", { prompt = "x" })
      assert.equal("not_found", err.kind); assert.equal("MODEL_NOT_FOUND", err.code)
      _, err = c.models:try("kling3_omni", {})
      assert.equal("validation", err.kind); assert.equal(422, err.status)
      _, err = c:request("GET", "/playground/tasks/{task_id}", { task_id = "nope" })
      assert.equal("not_found", err.kind)
    end)
  end)

  describe("tenant profile and its uploads", function()
    it("upload_avatar from a file path and from a string; the profile shows the newest", function()
      S.reset("acme")
      local c = client("acme")
      assert.equal(ugen.null, client("acme", { keep_null = true }).tenant:get().avatar_url)
      local png = S.read_file(S.info().root .. "/static/image.png")
      local r = assert(c.tenant:upload_avatar{ file = tmpfile("me.png", png) })
      assert.matches("%.png$", r.avatar_url)
      assert.equal(r.avatar_url, assert(c.tenant:get()).avatar_url)
      assert.equal(png, fetch(r.avatar_url).body)
      local r2, meta = c.tenant:upload_avatar{ file = { data = samples.jpeg, filename = "me.jpg" } }
      assert.is_table(r2, tostring(meta))
      assert.equal(200, meta.status)
      assert.matches("%.jpg$", r2.avatar_url)
      local me = assert(c.tenant:get())
      assert.equal(r2.avatar_url, me.avatar_url)
      assert.equal(samples.jpeg, fetch(me.avatar_url).body)
      assert.equal(S.tenant.acme.id, me.id)
      S.reset("acme")
    end)

    it("brand_kit:upload_logo (SVG, PNG, WebP) shows on the profile's brand_kit", function()
      S.reset("acme")
      local c = client("acme")
      for _, f in ipairs({ "svg", "png", "webp" }) do
        local r = assert(c.brand_kit:upload_logo{ file = { data = samples[f] } })
        assert.matches("%." .. f .. "$", r.logo_url)
        local me = assert(c.tenant:get())
        assert.equal(r.logo_url, me.brand_kit.logo_url)
        assert.is_true(me.brand_kit.enabled)
        assert.equal(samples[f], fetch(r.logo_url).body)
      end
      S.reset("acme")
    end)

    it("uploads:product_image (201) in each format; the url works for a job", function()
      local c = client("acme")
      for _, f in ipairs({ "jpeg", "png", "webp", "gif" }) do
        local r, meta = c.uploads:product_image{ file = tmpfile("product." .. f, samples[f]) }
        assert.is_table(r, tostring(meta))
        assert.equal(201, meta.status)
        assert.equal(samples[f], fetch(r.url).body)
        assert.equal(#samples[f], r.size_bytes)
      end
      local r = assert(c.uploads:product_image{ file = { data = samples.png, filename = "mug.png" } })
      local job, err = c.jobs:create{ product_name = "Mug", product_image_url = r.url, segment_count = 1 }
      assert.is_table(job, tostring(err))
      S.reset("acme")
    end)
  end)

  describe("upload rules", function()
    local UPLOADS = {
      { "uploads", "product_image", path = "/uploads/product-image", refused = "svg" },
      { "tenant", "upload_avatar", path = "/tenants/me/avatar", refused = "gif" },
      { "brand_kit", "upload_logo", path = "/tenants/me/brand-kit/logo", refused = "jpeg" },
      { "music", "upload", path = "/music/custom", refused = "png", extra = { title = "T" } },
    }

    for _, u in ipairs(UPLOADS) do
      local ep = endpoints.by_resource[u[1]][u[2]]
      local spec = ep.by_param.file
      local ok_format = spec.formats.png and "png" or "mp3"
      local cases = {
        { "empty", "", "EMPTY_FILE", 400 },
        { "a refused format", samples[u.refused], "UNSUPPORTED_FILE_TYPE", 400 },
        { "unrecognised bytes", "plain text, not media", "UNSUPPORTED_FILE_TYPE", 400 },
        { "too large", function() return samples.of(ok_format, spec.max_bytes + 1) end, "FILE_TOO_LARGE", 413 },
      }
      it(u[1] .. ":" .. u[2] .. ": the SDK refuses (nothing sent) what the sandbox refuses, same code", function()
        local c, calls = recording("acme")
        for _, case in ipairs(cases) do
          local data = type(case[2]) == "function" and case[2]() or case[2]
          local path = tmpfile("upload-" .. u[2] .. ".bin", data)
          -- the SDK, from a path and from a string
          local params = { file = path }
          for k, v in pairs(u.extra or {}) do params[k] = v end
          local r = c[u[1]]
          local res, err = r[u[2]](r, params)
          assert.is_nil(res, case[1])
          assert.equal("validation", err.kind, case[1])
          assert.equal(case[3], err.code, case[1])
          params.file = { data = data, filename = "x.bin" }
          res, err = r[u[2]](r, params)
          assert.is_nil(res, case[1])
          assert.equal(case[3], err.code, case[1])
          assert.equal(0, #calls, case[1] .. ": nothing is sent")
          -- the sandbox, with the same bytes sent anyway (curl)
          local form = { { name = "file", file = path, filename = "x.bin",
                           type = case[1] == "too large" and spec.formats[ok_format] or nil } }
          for k, v in pairs(u.extra or {}) do form[#form + 1] = { name = k, value = v } end
          local sr = S.request{ method = "POST", path = u.path, tenant = "acme", form = form }
          assert.equal(case[4], sr.status, case[1] .. ": " .. sr.body)
          assert.equal(case[3], sr.json.error.code, case[1])
          os.remove(path)
        end
        -- and what the SDK accepts, the sandbox accepts: the largest allowed file
        local params = { file = { data = samples.of(ok_format, spec.max_bytes) } }
        for k, v in pairs(u.extra or {}) do params[k] = v end
        local r = c[u[1]]
        local res, err = r[u[2]](r, params)
        assert.is_table(res, tostring(err))
        assert.equal(spec.max_bytes, res.size_bytes)
        assert.equal(1, #calls)
        S.reset("acme")
      end)
    end
  end)

  describe("music", function()
    it("catalog: a bare array; mood, tempo and limit filter it", function()
      local c = client()
      local all = assert(c.music:catalog())
      assert.is_true(#all >= 2)
      local mood, tempo = all[1].mood, all[1].tempo
      local by_mood = assert(c.music:catalog{ mood = mood })
      assert.is_true(#by_mood >= 1 and #by_mood < #all)
      for _, t in ipairs(by_mood) do assert.equal(mood, t.mood) end
      for _, t in ipairs(assert(c.music:catalog{ tempo = tempo })) do assert.equal(tempo, t.tempo) end
      assert.equal(2, #assert(c.music:catalog{ limit = 2 }))
      assert.same({}, assert(c.music:catalog{ mood = "no-such-mood" }))
    end)

    it("catalog: limit's minimum is not documented: limit 0 is sent, the server decides", function()
      local c, calls = recording()
      local _, err = c.music:catalog{ limit = "many" }
      assert.equal("validation", err.kind); assert.same({ "query", "limit" }, err.fields[1].loc)
      assert.equal(0, #calls)
      assert.same({}, assert(c.music:catalog{ limit = 0 }))
      assert.equal(1, #calls); assert.matches("limit=0", calls[1].url, 1, true)
    end)

    it("custom tracks: upload each format with a title, newest first; soft delete hides a track", function()
      S.reset("acme")
      local c = client("acme")
      assert.same({}, assert(c.music:list()))
      local ids = {}
      for _, f in ipairs({ "mp3", "wav", "ogg", "aac", "m4a" }) do
        local t, meta = c.music:upload{ file = tmpfile("track." .. f, samples[f]), title = "Track " .. f }
        assert.is_table(t, tostring(meta))
        assert.equal(201, meta.status)
        assert.equal("Track " .. f, t.title)
        assert.equal(samples[f], fetch(t.url).body)
        ids[#ids + 1] = t.id
      end
      local list = assert(c.music:list())
      assert.equal(5, #list)
      assert.equal("Track m4a", list[1].title)                    -- newest first
      local gone = assert(c.music:delete(ids[2]))
      assert.is_false(gone.is_active)
      list = assert(c.music:list())
      assert.equal(4, #list)
      for _, t in ipairs(list) do assert.not_equal(ids[2], t.id) end
      -- a deleted track can no longer be used on a job
      local _, err = c.jobs:create{ product_name = "Mug", product_image_url = "https://example.com/m.png",
                                    segment_count = 1, custom_music_id = ids[2] }
      assert.equal("validation", err.kind); assert.equal("custom_music_id", err.fields[1].loc[2])
      S.reset("acme")
    end)

    it("delete: unknown or already deleted id is not_found; a catalog track cannot be deleted", function()
      S.reset("acme")
      local c = client("acme")
      local t = assert(c.music:upload{ file = { data = samples.mp3 }, title = "Once" })
      assert.truthy(c.music:delete(t.id))
      local _, err = c.music:delete(t.id)
      assert.equal("not_found", err.kind); assert.equal("MUSIC_NOT_FOUND", err.code)
      _, err = c.music:delete("00000000-0000-4000-8000-000000000000")
      assert.equal("not_found", err.kind)
      _, err = c.music:delete(assert(c.music:catalog{ limit = 1 })[1].id)
      assert.equal("auth", err.kind); assert.equal(403, err.status)
      -- another tenant's track is not found either
      local mine = assert(c.music:upload{ file = { data = samples.wav }, title = "Mine" })
      _, err = client("default").music:delete(mine.id)
      assert.equal("not_found", err.kind)
      S.reset("acme")
    end)

    it("upload without a title fails before sending", function()
      local c, calls = recording("acme")
      local _, err = c.music:upload{ file = { data = samples.mp3 } }
      assert.equal("validation", err.kind)
      assert.equal("missing", err.fields[1].type); assert.same({ "body", "title" }, err.fields[1].loc)
      assert.equal(0, #calls)
    end)
  end)

  describe("templates", function()
    it("create (201) and list: default first, then newest first; limit", function()
      S.reset("acme")
      local c = client("acme")
      assert.same({}, assert(c.templates:list()))
      local a, meta = c.templates:create{ name = "A", config = { segment_count = 2 } }
      assert.is_table(a, tostring(meta))
      assert.equal(201, meta.status)
      assert(c.templates:create{ name = "B", description = "default", is_default = true,
                                 config = { video_model = "kling3_std", output_aspect_ratio = "9:16" } })
      assert(c.templates:create{ name = "C", config = { music_enabled = false, qai_mode = "strict" } })
      local names = {}
      for i, t in ipairs(assert(c.templates:list())) do names[i] = t.name end
      assert.same({ "B", "C", "A" }, names)
      -- a new default replaces the old one
      assert(c.templates:create{ name = "D", is_default = true, config = {} })
      local list = assert(c.templates:list())
      assert.equal("D", list[1].name)
      for i = 2, #list do assert.is_false(list[i].is_default) end
      assert.equal(2, #assert(c.templates:list{ limit = 2 }))
      S.reset("acme")
    end)

    it("bad fields: client-side (nothing sent) and server-side 422", function()
      local c, calls = recording("acme")
      local _, err = c.templates:create{ config = {} }
      assert.equal("validation", err.kind); assert.same({ "body", "name" }, err.fields[1].loc)
      _, err = c.templates:create{ name = "x", config = "not an object" }
      assert.equal("validation", err.kind); assert.same({ "body", "config" }, err.fields[1].loc)
      _, err = c.templates:create{ name = "x", config = {}, is_default = "yes" }
      assert.equal("bool_type", err.fields[1].type)
      _, err = c.templates:list{ limit = "all" }
      assert.equal("validation", err.kind)
      assert.equal(0, #calls)
      -- rules only the server knows: the config's job fields, no product data
      _, err = c.templates:create{ name = "x", config = { segment_count = 11 } }
      assert.equal("validation", err.kind); assert.equal(422, err.status)
      assert.same({ "body", "config", "segment_count" }, err.fields[1].loc)
      _, err = c.templates:create{ name = "x", config = { product_name = "Mug" } }
      assert.equal(422, err.status)
      assert.equal(2, #calls)
    end)

    it("the 21st template is a conflict (409 TEMPLATE_LIMIT_REACHED)", function()
      S.reset("acme")
      local c = client("acme")
      for i = 1, 20 do assert(c.templates:create{ name = "T" .. i, config = { segment_count = 1 } }) end
      local r, err = c.templates:create{ name = "T21", config = {} }
      assert.is_nil(r)
      assert.equal("conflict", err.kind); assert.equal(409, err.status)
      assert.equal("TEMPLATE_LIMIT_REACHED", err.code)
      assert.equal(20, #assert(c.templates:list()))
      S.reset("acme")
    end)
  end)

  describe("credits, jobs and pagination", function()
    it("balance and the ledger agree; each_transaction visits every entry", function()
      S.reset("acme")
      local c = client("acme")
      local job = assert(c.jobs:create{ product_name = "Mug", product_image_url = "https://example.com/m.png",
                                        segment_count = 1 })
      local bal = assert(c.credits:balance())
      assert.equal(bal.credit_balance - bal.credit_reserved, bal.available_credits)
      local page = assert(c.credits:transactions{ page_size = 1 })
      assert.equal(1, #page.items)
      assert.equal(bal.available_credits, page.items[1].balance_after)
      local n = 0
      for t in c.credits:each_transaction{ page_size = 1 } do n = n + 1; assert.is_string(t.type) end
      assert.equal(page.total, n)
      local mine = assert(c.credits:transactions{ job_id = job.job_id })
      assert.equal("reserve", mine.items[1].type)
      S.reset("acme")
    end)

    it("out-of-range pagination: refused before sending; the sandbox's 422 via client:request", function()
      local c, calls = recording()
      for _, bad in ipairs({ { page = 0 }, { page_size = 0 }, { page_size = 101 }, { page = "x" } }) do
        local _, err = c.credits:transactions(bad)
        assert.equal("validation", err.kind)
        _, err = c.jobs:list(bad)
        assert.equal("validation", err.kind)
      end
      assert.equal(0, #calls)
      local _, err = c:request("GET", "/credits/transactions", { page_size = 101 })
      assert.equal("validation", err.kind); assert.equal(422, err.status)
      assert.same({ "query", "page_size" }, err.fields[1].loc)
      _, err = c:request("GET", "/jobs", { page = 0 })
      assert.equal(422, err.status)
      -- a page past the end is empty, not an error
      local page = assert(c.jobs:list{ page = 10000, page_size = 100 })
      assert.same({}, page.items)
    end)

    it("jobs:get unknown id is not_found; estimate with the docs' values is 181", function()
      local c = client()
      local _, err = c.jobs:get("00000000-0000-4000-8000-000000000000")
      assert.equal("not_found", err.kind); assert.equal("JOB_NOT_FOUND", err.code)
      local e = assert(c.credits:estimate{ segment_count = 3, model_id = "veo3_fast", variant = "i2v",
                                           music_enabled = true, voice_enabled = true })
      assert.equal(181, e.total_credits)
    end)
  end)

  describe("client:request (undocumented endpoints)", function()
    it("goes through the same pipeline: auth, JSON, errors", function()
      local c, calls = recording()
      for _, path in ipairs({ "/personas", "/voices", "/jobs/x/cancel", "/tenants/me/brand-kit",
                              "/api-keys", "/models/pricing", "/credits/purchase" }) do
        local method = (path == "/jobs/x/cancel" or path == "/credits/purchase") and "POST" or "GET"
        local r, err = c:request(method, path, method == "POST" and { pack = "starter" } or nil)
        assert.is_nil(r)
        assert.equal(404, err.status, path)                -- the sandbox does not emulate them
        if path == "/models/pricing" then                  -- /models/{model_id}: an unknown model
          assert.equal("not_found", err.kind)
        else                                               -- no route, not an unknown id
          assert.equal("api", err.kind); assert.equal("ROUTE_NOT_FOUND", err.code)
        end
        assert.equal(S.tenant.default.api_key, calls[#calls].headers["X-API-Key"])
      end
      assert.equal("application/json", calls[#calls].headers["Content-Type"])
      local body = assert(c:request("GET", "/models/{model_id}", { model_id = "veo3" }))
      assert.equal("veo3", body.id)
      assert.has_error(function() c:request("GET", "/models/{model_id}", {}) end,
        "bad argument #3 to 'request' (params.model_id is required by the path)")
    end)
  end)

  describe("jobs:download", function()
    local job
    local function completed()
      if job then return job end
      local c = client("acme")
      local j = assert(c.jobs:create{ product_name = "Video", product_image_url = "https://example.com/v.png",
                                      segment_count = 1 })
      job = assert(c.jobs:wait(j.job_id, { interval = 0.05, timeout = 30 }))
      return job
    end
    local function target()
      local p = S.tmpdir() .. "/out.mp4"
      os.remove(p); os.remove(p .. ".part")
      return p
    end
    local function fault(key, n) return { ["X-Sandbox-Fault"] = "truncate;count=" .. (n or 1) .. ";key=" .. key } end

    it("the sandbox serves its MP4 with Range (206) and breaks it on request", function()
      local url = completed().final_video_url
      local r = S.request{ url = url, tenant = false, headers = { "Range: bytes=100-" } }
      assert.equal(206, r.status)
      assert.equal("bytes 100-" .. (#VIDEO - 1) .. "/" .. #VIDEO, r.headers["content-range"])
      assert.equal(VIDEO:sub(101), r.body)
      r = S.request{ url = url, tenant = false, fault = "truncate" }
      assert.equal(18, r.exit)                                   -- curl: partial file
      assert.equal(math.floor(#VIDEO / 2), #r.body)
      assert.equal(VIDEO:sub(1, #r.body), r.body)
    end)

    it("streams final_video_url to path (by id and by job table) with progress", function()
      local c = client("acme")
      local path = target()
      local seen = {}
      local r, meta = c.jobs:download(completed().job_id, path, { on_progress = function(done, total)
        seen[#seen + 1] = { done, total }
      end })
      assert.is_table(r, tostring(meta))
      assert.same({ path = path, size = #VIDEO, status = 200 }, r)
      assert.equal(VIDEO, S.read_file(path))
      assert.is_nil(S.read_file(path .. ".part"))
      assert.same({ #VIDEO, #VIDEO }, seen[#seen])
      for i = 2, #seen do assert.is_true(seen[i][1] >= seen[i - 1][1]) end
      -- a job table, onto an existing file (replaced whole)
      S.write_file(path, "old")
      assert(c.jobs:download(completed(), path))
      assert.equal(VIDEO, S.read_file(path))
    end)

    it("a transfer broken mid-way keeps the .part; the next call resumes from it (Range)", function()
      local c = client("acme")
      local path = target()
      local r, err = c.jobs:download(completed(), path, { max_retries = 0, headers = fault(S.tmpdir()) })
      assert.is_nil(r)
      assert.equal("network", err.kind); assert.is_true(err.retryable)
      local half = math.floor(#VIDEO / 2)
      assert.equal(path .. ".part", err.part); assert.equal(half, err.part_bytes)
      assert.is_nil(S.read_file(path))                          -- nothing half-written at path
      assert.equal(VIDEO:sub(1, half), S.read_file(path .. ".part"))
      local seen = {}
      r = assert(c.jobs:download(completed(), path, { on_progress = function(done, total)
        seen[#seen + 1] = { done, total }
      end }))
      assert.equal(206, r.status); assert.equal(half, r.resumed_from); assert.equal(#VIDEO, r.size)
      assert.equal(half, seen[1][1])                            -- progress starts at the kept bytes
      assert.same({ #VIDEO, #VIDEO }, seen[#seen])
      assert.equal(VIDEO, S.read_file(path))
      assert.is_nil(S.read_file(path .. ".part"))
    end)

    it("retries inside one call resume each time; after max_retries the .part is kept", function()
      local c = client("acme")
      local path = target()
      -- two breaks, one retry: the retry asked for the rest (Range) and broke again half-way
      local _, err = c.jobs:download(completed(), path, { max_retries = 1, headers = fault(S.tmpdir(), 2) })
      local half = math.floor(#VIDEO / 2)
      assert.equal(2, err.attempts)
      assert.equal(half + math.floor((#VIDEO - half) / 2), err.part_bytes)
      -- two breaks, two retries: done in one call
      local r = assert(c.jobs:download(completed(), path, { max_retries = 2, headers = fault(S.tmpdir(), 2) }))
      assert.equal(err.part_bytes, r.resumed_from)
      assert.equal(VIDEO, S.read_file(path))
    end)

    it("starts over when the .part cannot be resumed (416: it is as long as the video or longer)", function()
      local c = client("acme")
      local path = target()
      S.write_file(path .. ".part", ("x"):rep(#VIDEO + 10))
      local r = assert(c.jobs:download(completed(), path))
      assert.equal(200, r.status); assert.is_nil(r.resumed_from)
      assert.equal(VIDEO, S.read_file(path))
    end)

    it("a server that ignores Range (libcurl: cannot resume) gets a fresh download from byte 0", function()
      local srv = require("support.httpd_ctl").start()
      local ok, e = pcall(function()
        local c = client("acme")
        local path = target()
        local n = 50000
        local want = assert(S.request{ url = srv.base .. "/bytes?n=" .. n, tenant = false }).body
        assert.equal(n, #want)
        S.write_file(path .. ".part", want:sub(1, 1000))
        local r = assert(c.jobs:download({ job_id = "j", final_video_url = srv.base .. "/bytes?n=" .. n }, path))
        assert.equal(200, r.status); assert.is_nil(r.resumed_from)
        assert.equal(want, S.read_file(path))
        -- and one that honours it resumes
        S.write_file(path .. ".part", want:sub(1, 1000))
        r = assert(c.jobs:download({ job_id = "j", final_video_url = srv.base .. "/range?n=" .. n }, path))
        assert.equal(206, r.status); assert.equal(1000, r.resumed_from)
        assert.equal(want, S.read_file(path))
      end)
      srv.stop()
      assert(ok, e)
    end)

    it("failures: no video yet, unknown job, missing file, unwritable path; nothing left behind", function()
      local c = client("acme")
      local path = target()
      local running = assert(c.jobs:create{ product_name = "Slow", product_image_url = "https://example.com/s.png",
                                            segment_count = 1 })
      local _, err = c.jobs:download(running, path)
      assert.equal("NO_VIDEO", err.code); assert.equal("validation", err.kind)
      _, err = c.jobs:download("00000000-0000-4000-8000-000000000000", path)
      assert.equal("not_found", err.kind)
      S.write_file(path .. ".part", "stale")
      _, err = c.jobs:download({ job_id = "j", final_video_url = S.info().origin .. "/static/nope.mp4" }, path)
      assert.equal("not_found", err.kind); assert.equal(404, err.status)
      assert.is_nil(S.read_file(path .. ".part")); assert.is_nil(S.read_file(path))
      _, err = c.jobs:download(completed(), S.tmpdir() .. "/no/such/dir/out.mp4", { max_retries = 3 })
      assert.is_table(err)
      assert.equal("io", err.kind)
      assert.is_false(err.retryable)
      assert.equal(0, err.attempts)   -- refused before sending (issue 16 item 6)
      -- a 5xx on the file (retried, then given up) keeps nothing when nothing arrived
      _, err = c.jobs:download(completed(), path, { max_retries = 1,
        headers = { ["X-Sandbox-Fault"] = "status=503;count=2;key=" .. S.tmpdir() } })
      assert.equal(503, err.status); assert.equal(2, err.attempts)
      assert.is_nil(err.part); assert.is_nil(S.read_file(path .. ".part")); assert.is_nil(S.read_file(path))
    end)

    it("on_progress errors propagate and keep the .part; works inside ugen.run", function()
      local c = client("acme")
      local path = target()
      assert.has_error(function()
        c.jobs:download(completed(), path, { on_progress = function() error("user stop", 0) end })
      end, "user stop")
      assert.is_nil(S.read_file(path))
      local r, err
      ugen.run(function()
        r, err = c.jobs:download(completed(), path, { on_progress = function() end })
      end)
      assert.is_table(r, tostring(err))
      assert.equal(VIDEO, S.read_file(path))
    end)
  end)
end)
