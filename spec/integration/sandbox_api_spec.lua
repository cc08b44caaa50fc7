-- Every documented endpoint of the sandbox, its auth, validation and error
-- statuses, driven with plain curl against the real server on real nginx.
local S = require "support.sandbox"

local function tmpfile(name, data)
  local path = S.tmpdir() .. "/" .. name
  S.write_file(path, data)
  return path
end

local function post_job(body, opts)
  opts = opts or {}
  return S.request{ method = "POST", path = "/jobs", json = body, tenant = opts.tenant, fault = opts.fault }
end

local JOB = { product_name = "Mug", product_image_url = "https://example.com/mug.png", segment_count = 1 }

local function detail(r, name)
  for _, d in ipairs(r.json.detail) do
    if d.loc[#d.loc] == name then return d end
  end
end

describe("sandbox API", function()
  local info
  setup(function()
    info = S.info()
    S.reset(true)
  end)

  describe("auth", function()
    it("401 with the nested error body without credentials", function()
      local r = S.request{ path = "/credits/balance", tenant = false }
      assert.are.equal(401, r.status)
      assert.are.equal("AUTHENTICATION_REQUIRED", r.json.error.code)
      assert.is_string(r.json.error.message)
      assert.is_truthy(r.headers["x-request-id"])
    end)

    it("401 INVALID_API_KEY for an unknown key", function()
      local r = S.request{ path = "/credits/balance", api_key = "ugen_sk_test_nope" }
      assert.are.equal(401, r.status)
      assert.are.equal("INVALID_API_KEY", r.json.error.code)
    end)

    it("accepts the JWT (Bearer) of each tenant", function()
      for _, t in ipairs(info.tenants) do
        local r = S.request{ path = "/tenants/me", jwt = t.jwt, tenant = false }
        assert.are.equal(200, r.status)
        assert.are.equal(t.slug, r.json.slug)
        assert.are.equal(t.id, r.json.id)
      end
    end)

    it("the JWT wins when both headers are sent", function()
      local r = S.request{ path = "/tenants/me", api_key = S.tenant.default.api_key, jwt = S.tenant.acme.jwt }
      assert.are.equal(200, r.status)
      assert.are.equal("acme", r.json.slug)
      -- an invalid JWT is a 401 even next to a valid API key
      r = S.request{ path = "/tenants/me", api_key = S.tenant.default.api_key, jwt = S.tenant.acme.jwt .. "x" }
      assert.are.equal(401, r.status)
      assert.are.equal("INVALID_TOKEN", r.json.error.code)
    end)

    it("401 for an expired, forged or malformed token", function()
      local t = S.tenant.default
      local r = S.request{ path = "/tenants/me", jwt = t.jwt_expired, tenant = false }
      assert.are.equal(401, r.status)
      local h, p = t.jwt:match("^([^.]+)%.([^.]+)%.")
      local forged = h .. "." .. S.tenant.acme.jwt:match("^[^.]+%.([^.]+)%.") .. "." .. t.jwt:match("([^.]+)$")
      assert.are_not.equal(p, forged:match("^[^.]+%.([^.]+)%."))
      assert.are.equal(401, S.request{ path = "/tenants/me", jwt = forged, tenant = false }.status)
      r = S.request{ path = "/tenants/me", headers = { "Authorization: Basic abc" }, tenant = false }
      assert.are.equal(401, r.status)
      assert.are.equal("INVALID_TOKEN", r.json.error.code)
    end)
  end)

  describe("routing and bad input", function()
    it("404 in the nested format for unknown paths, in and outside /api/v1", function()
      for _, url in ipairs({ info.base_url .. "/nope", info.origin .. "/", info.origin .. "/static/nope.txt" }) do
        local r = S.request{ url = url }
        assert.are.equal(404, r.status)
        assert.are.equal("NOT_FOUND", r.json.error.code)
        assert.is_truthy(r.headers["x-request-id"])
      end
    end)

    it("405 with Allow and the nested format for unknown methods", function()
      local r = S.request{ method = "DELETE", path = "/jobs" }
      assert.are.equal(405, r.status)
      assert.are.equal("METHOD_NOT_ALLOWED", r.json.error.code)
      assert.are.equal("GET, HEAD, POST", r.headers["allow"])
      r = S.request{ method = "PATCH", path = "/tenants/me/webhook" }
      assert.are.equal(405, r.status)
      assert.are.equal("DELETE, GET, HEAD, PUT", r.headers["allow"])
      r = S.request{ method = "POST", url = info.origin .. "/static/sample.mp4" }
      assert.are.equal(405, r.status)
      assert.are.equal("METHOD_NOT_ALLOWED", r.json.error.code)
    end)

    it("422 json_invalid for invalid JSON", function()
      local r = S.request{ method = "POST", path = "/jobs", body = '{"product_name": ',
                           headers = { "Content-Type: application/json" } }
      assert.are.equal(422, r.status)
      assert.are.equal("json_invalid", r.json.detail[1].type)
      assert.are.same({ "body", 0 }, r.json.detail[1].loc)
    end)

    it("422 when the JSON body is not an object", function()
      local r = S.request{ method = "POST", path = "/jobs", body = "[1,2]",
                           headers = { "Content-Type: application/json" } }
      assert.are.equal(422, r.status)
      assert.are.equal("dict_type", r.json.detail[1].type)
    end)

    it("415 for a wrong content type", function()
      local r = S.request{ method = "POST", path = "/jobs", body = "product_name=x",
                           headers = { "Content-Type: application/x-www-form-urlencoded" } }
      assert.are.equal(415, r.status)
      assert.are.equal("UNSUPPORTED_MEDIA_TYPE", r.json.error.code)
      r = S.request{ method = "POST", path = "/uploads/product-image", json = { file = "x" } }
      assert.are.equal(415, r.status)
    end)

    it("413 for huge bodies (the sandbox's JSON limit and nginx's own limit)", function()
      local r = S.request{ method = "POST", path = "/jobs", body = '{"x":"' .. ("a"):rep(1100000) .. '"}',
                           headers = { "Content-Type: application/json" } }
      assert.are.equal(413, r.status)
      assert.are.equal("PAYLOAD_TOO_LARGE", r.json.error.code)
      local big = tmpfile("huge.wav", "RIFF\0\0\0\0WAVE" .. ("\0"):rep(23 * 1024 * 1024))
      r = S.request{ method = "POST", path = "/music/custom",
                     form = { { name = "file", file = big, type = "audio/wav" }, { name = "title", value = "x" } } }
      assert.are.equal(413, r.status)
      assert.are.equal("PAYLOAD_TOO_LARGE", r.json.error.code)
      assert.is_truthy(r.headers["x-request-id"])
      -- state is intact afterwards
      assert.are.equal(200, S.request{ path = "/credits/balance" }.status)
    end)
  end)

  describe("robustness", function()
    it("malformed multipart, deep JSON, odd headers and HEAD never break the server", function()
      local r = S.request{ method = "POST", path = "/uploads/product-image", body = "--xyz\r\nbroken",
                           headers = { "Content-Type: multipart/form-data; boundary=xyz" } }
      assert.are.equal(400, r.status)
      assert.are.equal("INVALID_MULTIPART", r.json.error.code)
      r = S.request{ method = "POST", path = "/jobs", body = ("["):rep(5000) .. ("]"):rep(5000),
                     headers = { "Content-Type: application/json" } }
      assert.are.equal(422, r.status)
      r = S.request{ method = "POST", path = "/jobs", body = [[{"product_name": "\u0000\ud83d"}]],
                     headers = { "Content-Type: application/json; charset=utf-8" } }
      assert.are.equal(422, r.status)
      r = S.request{ path = "/credits/balance", headers = { "X-Big: " .. ("a"):rep(20000) } }
      assert.are.equal(400, r.status)
      assert.are.equal("BAD_REQUEST", r.json.error.code)
      r = S.request{ method = "HEAD", path = "/models" }
      assert.are.equal(200, r.status)
      assert.is_nil(r.body:find("{", 1, true)) -- headers only (curl -I writes them as the body)
      assert.are.equal(tonumber(r.headers["content-length"]), #S.request{ path = "/models" }.body)
      r = S.request{ path = "/jobs?unknown=1&page=1" }
      assert.are.equal(200, r.status)
      assert.are.equal(200, S.request{ path = "/credits/balance" }.status)
    end)
  end)

  describe("validation (422 detail list)", function()
    it("missing required fields, with the body as input", function()
      local r = post_job({ product_name = "Mug" })
      assert.are.equal(422, r.status)
      local d = detail(r, "segment_count")
      assert.are.same({ type = "missing", loc = { "body", "segment_count" }, msg = "Field required",
                        input = { product_name = "Mug" } }, d)
      assert.is_table(detail(r, "product_image_url"))
    end)

    it("types, ranges and enums", function()
      local cases = {
        { { segment_count = "3" }, "segment_count", "int_type" },
        { { segment_count = 2.5 }, "segment_count", "int_type" },
        { { segment_count = 0 }, "segment_count", "greater_than_equal" },
        { { segment_count = 11 }, "segment_count", "less_than_equal" },
        { { product_name = 5 }, "product_name", "string_type" },
        { { music_enabled = "yes" }, "music_enabled", "bool_type" },
        { { music_volume = "loud" }, "music_volume", "float_type" },
        { { qai_mode = "extreme" }, "qai_mode", "enum" },
        { { stop_at_stage = "render" }, "stop_at_stage", "enum" },
        { { key_selling_points = "x" }, "key_selling_points", "list_type" },
        { { voice_settings = { 1, 2 } }, "voice_settings", "dict_type" },
        { { max_retries_video = 6 }, "max_retries_video", "less_than_equal" },
      }
      for _, c in ipairs(cases) do
        local body = {}
        for k, v in pairs(JOB) do body[k] = v end
        for k, v in pairs(c[1]) do body[k] = v end
        local r = post_job(body)
        assert.are.equal(422, r.status, c[2])
        local d = detail(r, c[2])
        assert.is_table(d, c[2])
        assert.are.equal(c[3], d.type, c[2])
        assert.are.equal("body", d.loc[1])
        assert.is_string(d.msg)
      end
      local body = { key_selling_points = { "ok", 5 } }
      for k, v in pairs(JOB) do body[k] = v end
      local r = post_job(body)
      assert.are.equal(422, r.status)
      assert.are.same({ "body", "key_selling_points", 1 }, r.json.detail[1].loc)
      assert.are.equal("string_type", r.json.detail[1].type)
      assert.are.equal(5, r.json.detail[1].input)
    end)

    it("model constraints: Veo fixed 8 s, 1:1 only on Kling, jobs-capable models only", function()
      local function with(extra)
        local b = {}
        for k, v in pairs(JOB) do b[k] = v end
        for k, v in pairs(extra) do b[k] = v end
        return post_job(b)
      end
      local r = with{ video_model = "veo3_fast", segment_duration = 6 }
      assert.are.equal(422, r.status)
      assert.are.equal("value_error", detail(r, "segment_duration").type)
      assert.matches("fixed duration of 8", detail(r, "segment_duration").msg)
      assert.are.equal(201, with{ video_model = "veo3_fast", segment_duration = 8 }.status)
      r = with{ video_model = "veo3", aspect_ratio = "1:1" }
      assert.are.equal(422, r.status)
      assert.matches("only available with Kling", detail(r, "aspect_ratio").msg)
      assert.are.equal(201, with{ video_model = "kling3_pro", aspect_ratio = "1:1", segment_duration = 5 }.status)
      assert.are.equal(422, with{ video_model = "sora-2-text-to-video" }.status)
      assert.are.equal(422, with{ video_model = "nope" }.status)
      assert.are.equal(422, with{ persona_id = "00000000-0000-4000-8000-000000000000" }.status)
      assert.are.equal(422, with{ webhook_url = "http://example.com/hook" }.status)
    end)
  end)

  describe("models and playground", function()
    it("lists available and beta models (not coming_soon) as a bare array", function()
      local r = S.request{ path = "/models" }
      assert.are.equal(200, r.status)
      local ids = {}
      for _, m in ipairs(r.json) do
        ids[m.id] = m
        assert.are_not.equal("coming_soon", m.status)
      end
      for _, id in ipairs({ "veo3_fast", "veo3", "kling3_std", "kling3_pro", "kling3_4k", "nano_banana_2",
                            "sora-2-text-to-video" }) do
        assert.is_table(ids[id], id)
      end
      assert.is_nil(ids.kling3_omni)
      assert.are.same({ "9:16", "16:9", "1:1" }, ids.kling3_std.capabilities.supported_aspect_ratios)
    end)

    it("gets one model; 404 for an unknown id", function()
      local r = S.request{ path = "/models/kling3_std" }
      assert.are.equal(200, r.status)
      assert.are.equal("kling3_std", r.json.id)
      assert.are.equal(200, S.request{ path = "/models/kling3_omni" }.status)
      r = S.request{ path = "/models/nope" }
      assert.are.equal(404, r.status)
      assert.are.equal("MODEL_NOT_FOUND", r.json.error.code)
    end)

    it("try returns a task id at once; the task completes with a result url", function()
      local r = S.request{ method = "POST", path = "/models/nano_banana_2/try", json = { prompt = "a red mug" } }
      assert.are.equal(202, r.status)
      local task_id = r.json.task_id
      assert.matches("^%x+%-", task_id)
      assert.are.equal("/api/v1/playground/tasks/" .. task_id, r.json.status_url)
      local t = S.eventually(function()
        local g = S.request{ path = "/playground/tasks/" .. task_id }
        assert.are.equal(200, g.status)
        return g.json.status == "completed" and g.json
      end, 5)
      assert.is_table(t)
      assert.matches("%.png$", t.result_url)
      assert.are.equal(200, S.request{ url = t.result_url }.status)
      -- tenant-scoped, 404 for unknown ids and models, 422 for a coming_soon model
      assert.are.equal(404, S.request{ path = "/playground/tasks/" .. task_id, tenant = "acme" }.status)
      assert.are.equal(404, S.request{ method = "POST", path = "/models/nope/try", json = {} }.status)
      assert.are.equal(422, S.request{ method = "POST", path = "/models/kling3_omni/try", json = {} }.status)
      r = S.request{ method = "POST", path = "/models/veo3/try", json = { prompt = "[fail]" } }
      t = S.eventually(function()
        local g = S.request{ path = "/playground/tasks/" .. r.json.task_id }
        return g.json.status == "failed" and g.json
      end, 5)
      assert.is_string(t.error_message)
    end)
  end)

  describe("tenant profile, avatar and brand kit", function()
    local png = S.read_file(S.info().root .. "/static/image.png")
    local jpg = S.read_file(S.info().root .. "/static/thumbnail.jpg")
    it("GET /tenants/me", function()
      local r = S.request{ path = "/tenants/me" }
      assert.are.equal(200, r.status)
      assert.are.equal(S.tenant.default.id, r.json.id)
      assert.are.equal(require("ugen.json").null, r.json.avatar_url)
      assert.is_table(r.json.brand_kit)
    end)

    it("uploads an avatar (PNG/JPEG/WebP, 2 MB) and shows it on the profile", function()
      local r = S.request{ method = "POST", path = "/tenants/me/avatar",
                           form = { { name = "file", file = tmpfile("a.jpg", jpg), type = "image/jpeg" } } }
      assert.are.equal(200, r.status)
      assert.matches("/files/.+%.jpg$", r.json.avatar_url)
      local p = S.request{ path = "/tenants/me" }
      assert.are.equal(r.json.avatar_url, p.json.avatar_url)
      local got = S.request{ url = r.json.avatar_url }
      assert.are.equal(jpg, got.body)
      r = S.request{ method = "POST", path = "/tenants/me/avatar",
                     form = { { name = "file", file = tmpfile("a.svg", '<svg xmlns="http://www.w3.org/2000/svg"/>'),
                                type = "image/svg+xml" } } }
      assert.are.equal(400, r.status)
      assert.are.equal("UNSUPPORTED_FILE_TYPE", r.json.error.code)
      r = S.request{ method = "POST", path = "/tenants/me/avatar",
                     form = { { name = "file", file = tmpfile("big.png", png .. ("\0"):rep(2 * 1024 * 1024)),
                                type = "image/png" } } }
      assert.are.equal(413, r.status)
      assert.are.equal("FILE_TOO_LARGE", r.json.error.code)
    end)

    it("uploads a brand logo (SVG allowed)", function()
      local r = S.request{ method = "POST", path = "/tenants/me/brand-kit/logo", form = {
        { name = "file", file = tmpfile("l.svg", '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>'),
          type = "image/svg+xml" } } }
      assert.are.equal(200, r.status)
      assert.matches("%.svg$", r.json.logo_url)
      assert.are.equal(r.json.logo_url, S.request{ path = "/tenants/me" }.json.brand_kit.logo_url)
      r = S.request{ method = "POST", path = "/tenants/me/brand-kit/logo",
                     form = { { name = "file", file = tmpfile("l.jpg", jpg), type = "image/jpeg" } } }
      assert.are.equal(400, r.status)
    end)
  end)

  describe("product image upload", function()
    local png = S.read_file(S.info().root .. "/static/image.png")
    it("201 with a url the sandbox serves", function()
      local r = S.request{ method = "POST", path = "/uploads/product-image",
                           form = { { name = "file", file = tmpfile("p.png", png), type = "image/png" } } }
      assert.are.equal(201, r.status)
      assert.matches("^http://127%.0%.0%.1:%d+/files/" .. S.tenant.default.id:gsub("%-", "%%-")
                     .. "/products/[%x-]+%.png$", r.json.url)
      local got = S.request{ url = r.json.url }
      assert.are.equal(200, got.status)
      assert.are.equal("image/png", got.headers["content-type"])
      assert.are.equal(png, got.body)
      -- usable as product_image_url
      local b = { product_image_url = r.json.url }
      for k, v in pairs(JOB) do if k ~= "product_image_url" then b[k] = v end end
      assert.are.equal(201, post_job(b).status)
    end)

    it("400 for an empty file or an unsupported type; 413 over 10 MB; 422 without a file", function()
      local r = S.request{ method = "POST", path = "/uploads/product-image",
                           form = { { name = "file", file = tmpfile("e.png", ""), type = "image/png" } } }
      assert.are.equal(400, r.status)
      assert.are.equal("EMPTY_FILE", r.json.error.code)
      r = S.request{ method = "POST", path = "/uploads/product-image",
                     form = { { name = "file", file = tmpfile("t.txt", "hello"), type = "text/plain" } } }
      assert.are.equal(400, r.status)
      assert.are.equal("UNSUPPORTED_FILE_TYPE", r.json.error.code)
      r = S.request{ method = "POST", path = "/uploads/product-image",
                     form = { { name = "file", file = tmpfile("fake.png", "GIF89a....."), type = "image/png" } } }
      assert.are.equal(400, r.status)
      r = S.request{ method = "POST", path = "/uploads/product-image",
                     form = { { name = "file", file = tmpfile("big.png", png .. ("\0"):rep(10 * 1024 * 1024)),
                                type = "image/png" } } }
      assert.are.equal(413, r.status)
      assert.are.equal("FILE_TOO_LARGE", r.json.error.code)
      assert.are.equal(10 * 1024 * 1024, r.json.error.details.max_bytes)
      r = S.request{ method = "POST", path = "/uploads/product-image", form = { { name = "other", value = "x" } } }
      assert.are.equal(422, r.status)
      assert.are.same({ "body", "file" }, r.json.detail[1].loc)
      assert.are.equal("missing", r.json.detail[1].type)
    end)
  end)

  describe("music", function()
    it("catalog: bare array, mood/tempo filters, limit", function()
      local r = S.request{ path = "/music/catalog" }
      assert.are.equal(200, r.status)
      assert.are.equal(12, #r.json)
      for _, k in ipairs({ "id", "title", "artist", "mood", "tempo", "energy_level", "bpm", "has_vocals", "tags" }) do
        assert.is_not_nil(r.json[1][k], k)
      end
      r = S.request{ path = "/music/catalog?mood=upbeat" }
      assert.is_true(#r.json >= 1)
      for _, t in ipairs(r.json) do assert.are.equal("upbeat", t.mood) end
      assert.are.equal(3, #S.request{ path = "/music/catalog?limit=3" }.json)
      assert.are.equal(422, S.request{ path = "/music/catalog?limit=x" }.status)
      assert.are.same({}, S.request{ path = "/music/catalog?limit=0" }.json)
      local catalog_id = S.request{ path = "/music/catalog" }.json[1].id
      local d = S.request{ method = "DELETE", path = "/music/custom/" .. catalog_id }
      assert.are.equal(403, d.status)
    end)

    it("custom: empty list, upload, list, soft delete, isolation", function()
      local r = S.request{ path = "/music/custom" }
      assert.are.equal(200, r.status)
      assert.are.equal("[]", r.body)
      local wav = tmpfile("s.wav", "RIFF\36\0\0\0WAVEfmt " .. ("\0"):rep(64))
      r = S.request{ method = "POST", path = "/music/custom",
                     form = { { name = "file", file = wav, type = "audio/wav" },
                              { name = "title", value = "Jingle" } } }
      assert.are.equal(201, r.status)
      local id = r.json.id
      assert.are.equal("Jingle", r.json.title)
      assert.is_true(r.json.is_active)
      local mp3 = tmpfile("s.mp3", "ID3\3\0\0\0\0\0\0" .. ("\0"):rep(64))
      local r2 = S.request{ method = "POST", path = "/music/custom",
                            form = { { name = "file", file = mp3, type = "audio/mpeg" },
                                     { name = "title", value = "B" } } }
      assert.are.equal(201, r2.status)
      local list = S.request{ path = "/music/custom" }.json
      assert.are.equal(2, #list)
      assert.are.equal(r2.json.id, list[1].id) -- newest first
      assert.are.equal(422, S.request{ method = "POST", path = "/music/custom",
                                       form = { { name = "file", file = wav, type = "audio/wav" } } }.status)
      assert.are.equal(404, S.request{ method = "DELETE", path = "/music/custom/" .. id, tenant = "acme" }.status)
      local d = S.request{ method = "DELETE", path = "/music/custom/" .. id }
      assert.are.equal(200, d.status)
      assert.is_false(d.json.is_active)
      assert.are.equal(1, #S.request{ path = "/music/custom" }.json)
      assert.are.equal(404, S.request{ method = "DELETE", path = "/music/custom/" .. id }.status)
      -- a deleted track cannot be used on a job, an active one can
      local b = { custom_music_id = id }
      for k, v in pairs(JOB) do b[k] = v end
      assert.are.equal(422, post_job(b).status)
      b.custom_music_id = r2.json.id
      assert.are.equal(201, post_job(b).status)
    end)

    it("accepts uploads up to 20 MB", function()
      local wav = tmpfile("big.wav", "RIFF\0\0\0\0WAVE" .. ("\0"):rep(19 * 1024 * 1024))
      local r = S.request{ method = "POST", path = "/music/custom", tenant = "acme",
                           form = { { name = "file", file = wav, type = "audio/wav" },
                                    { name = "title", value = "Big" } } }
      assert.are.equal(201, r.status)
      assert.are.equal(19 * 1024 * 1024 + 12, r.json.size_bytes)
      local over = tmpfile("over.wav", "RIFF\0\0\0\0WAVE" .. ("\0"):rep(20 * 1024 * 1024))
      r = S.request{ method = "POST", path = "/music/custom", tenant = "acme",
                     form = { { name = "file", file = over, type = "audio/wav" }, { name = "title", value = "Big" } } }
      assert.are.equal(413, r.status)
      assert.are.equal("FILE_TOO_LARGE", r.json.error.code)
    end)
  end)

  describe("templates", function()
    it("creates (201), lists ordered, validates config, caps at 20 (409)", function()
      S.reset("acme")
      assert.are.equal("[]", S.request{ path = "/templates", tenant = "acme" }.body)
      local r = S.request{ method = "POST", path = "/templates", tenant = "acme", json = {
        name = "Beauty - calm", description = "Soft tone, no music",
        config = { video_model = "kling3_std", segment_count = 4, output_aspect_ratio = "9:16",
                   interaction_mode = "holdable", music_enabled = false },
        is_default = true } }
      assert.are.equal(201, r.status)
      assert.is_true(r.json.is_default)
      assert.are.equal(4, r.json.config.segment_count)
      local first = r.json.id
      r = S.request{ method = "POST", path = "/templates", tenant = "acme",
                     json = { name = "Second", config = { segment_count = 2 }, is_default = true } }
      assert.are.equal(201, r.status)
      local list = S.request{ path = "/templates", tenant = "acme" }.json
      assert.are.equal(2, #list)
      assert.are.equal(r.json.id, list[1].id)
      assert.is_true(list[1].is_default)
      assert.is_false(list[2].is_default)
      assert.are.equal(first, list[2].id)
      r = S.request{ method = "POST", path = "/templates", tenant = "acme", json = { name = "Bad",
                     config = { segment_count = 20 } } }
      assert.are.equal(422, r.status)
      assert.are.same({ "body", "config", "segment_count" }, r.json.detail[1].loc)
      assert.are.equal(422, S.request{ method = "POST", path = "/templates", tenant = "acme",
                                       json = { name = "NoConfig" } }.status)
      for i = 3, 20 do
        assert.are.equal(201, S.request{ method = "POST", path = "/templates", tenant = "acme",
                                         json = { name = "T" .. i, config = {} } }.status)
      end
      r = S.request{ method = "POST", path = "/templates", tenant = "acme", json = { name = "T21", config = {} } }
      assert.are.equal(409, r.status)
      assert.are.equal("TEMPLATE_LIMIT_REACHED", r.json.error.code)
      assert.are.equal(5, #S.request{ path = "/templates?limit=5", tenant = "acme" }.json)
      assert.are.equal("[]", S.request{ path = "/templates", tenant = "lowcredit" }.body)
    end)
  end)

  describe("credits", function()
    it("balance = balance - reserved", function()
      local r = S.request{ path = "/credits/balance", tenant = "lowcredit" }
      assert.are.equal(200, r.status)
      assert.are.same({ credit_balance = 50, credit_reserved = 0, available_credits = 50 }, r.json)
    end)

    it("estimate: defaults, model variants, 422 for unknown or non-job models", function()
      local r = S.request{ method = "POST", path = "/credits/estimate", json = {} }
      assert.are.equal(200, r.status)
      assert.are.equal("kling3_std", r.json.model_id)
      assert.are.equal(1, r.json.segment_count)
      local b = r.json.breakdown
      assert.are.equal(b.video + b.keyframes + b.voice + b.music + b.captions + b.post_processing + b.qa_buffer,
                       r.json.total_credits)
      r = S.request{ method = "POST", path = "/credits/estimate",
                     json = { model_id = "kling3_pro", segment_count = 2 } }
      assert.are.equal(2 * 8 * 10, r.json.breakdown.video)
      assert.are.equal(3 * 12, r.json.breakdown.keyframes)
      assert.are.equal(422, S.request{ method = "POST", path = "/credits/estimate", json = { model_id = "x" } }.status)
      assert.are.equal(422, S.request{ method = "POST", path = "/credits/estimate",
                                       json = { model_id = "nano_banana_2" } }.status)
      r = S.request{ method = "POST", path = "/credits/estimate", json = { segment_count = 0 } }
      assert.are.equal(422, r.status)
      assert.are.equal("greater_than_equal", r.json.detail[1].type)
    end)

    it("transactions: paginated ledger, newest first, job_id filter", function()
      -- the job must not finish (adding release/consume entries) while we look,
      -- however slow the machine (valgrind): a clock at 1/1000 speed
      S.speed(0.001)
      finally(function() S.speed() end)
      S.reset("acme")
      local r = S.request{ path = "/credits/transactions", tenant = "acme" }
      assert.are.equal(200, r.status)
      assert.are.equal(1, r.json.total)
      assert.are.equal("purchase", r.json.items[1].type)
      local c = post_job(JOB, { tenant = "acme" })
      assert.are.equal(201, c.status)
      r = S.request{ path = "/credits/transactions?job_id=" .. c.json.job_id, tenant = "acme" }
      assert.are.equal(1, r.json.total)
      local e = r.json.items[1]
      assert.are.equal("reserve", e.type)
      assert.are.equal(-c.json.credits_reserved, e.amount)
      assert.are.equal(10000, e.balance_before)
      assert.are.equal(10000 - c.json.credits_reserved, e.balance_after)
      assert.are.equal(c.json.job_id, e.job_id)
      assert.is_string(e.created_at)
      r = S.request{ path = "/credits/transactions?page_size=1&page=2", tenant = "acme" }
      assert.are.equal(2, r.json.total)
      assert.are.equal(2, r.json.total_pages)
      assert.are.equal("purchase", r.json.items[1].type)
    end)
  end)

  describe("pagination", function()
    it("default 20, max 100, out of range is a 422", function()
      S.reset("acme")
      for _ = 1, 3 do assert.are.equal(201, post_job(JOB, { tenant = "acme" }).status) end
      local r = S.request{ path = "/jobs", tenant = "acme" }
      assert.are.equal(200, r.status)
      assert.are.same({ 3, 1, 20, 1 }, { r.json.total, r.json.page, r.json.page_size, r.json.total_pages })
      assert.are.equal(100, S.request{ path = "/jobs?page_size=100", tenant = "acme" }.json.page_size)
      r = S.request{ path = "/jobs?page_size=2&page=2", tenant = "acme" }
      assert.are.equal(1, #r.json.items)
      assert.are.equal(2, r.json.total_pages)
      r = S.request{ path = "/jobs?page=5", tenant = "acme" }
      assert.are.equal(200, r.status)
      assert.are.equal("[]", r.body:match('"items":(%b[])'))
      for _, q in ipairs({ "page_size=101", "page_size=0", "page=0", "page=abc", "page_size=1.5" }) do
        r = S.request{ path = "/jobs?" .. q, tenant = "acme" }
        assert.are.equal(422, r.status, q)
        assert.are.equal("query", r.json.detail[1].loc[1], q)
      end
      r = S.request{ path = "/credits/transactions?page_size=101", tenant = "acme" }
      assert.are.equal(422, r.status)
      assert.are.equal("less_than_equal", r.json.detail[1].type)
      assert.are.same({ "query", "page_size" }, r.json.detail[1].loc)
    end)
  end)

  describe("tenant isolation", function()
    it("another tenant's job is a 404, never listed", function()
      local c = post_job(JOB)
      assert.are.equal(201, c.status)
      local r = S.request{ path = "/jobs/" .. c.json.job_id, tenant = "acme" }
      assert.are.equal(404, r.status)
      assert.are.equal("JOB_NOT_FOUND", r.json.error.code)
      local list = S.request{ path = "/jobs?page_size=100", tenant = "acme" }.json.items
      for _, j in ipairs(list) do assert.are_not.equal(c.json.job_id, j.job_id) end
      assert.are.equal(0, S.request{ path = "/credits/transactions?job_id=" .. c.json.job_id,
                                     tenant = "acme" }.json.total)
      assert.are.equal(200, S.request{ path = "/jobs/" .. c.json.job_id }.status)
    end)
  end)
end)
