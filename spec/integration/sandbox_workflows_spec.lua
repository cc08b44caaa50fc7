-- The five documented workflows of UGEN-API.md section 15, as plain cURL
-- calls with the docs' own values (only the base URL differs), against the
-- real sandbox on real nginx.
local S = require "support.sandbox"
local crypto = require "ugen.crypto"

describe("sandbox: documented workflows (UGEN-API.md section 15)", function()
  setup(function()
    S.reset(true)
  end)

  it("1. creates a video job with the docs' values", function()
    local r = S.request{ method = "POST", path = "/jobs", json = {
      product_name = "Premium Wireless Headphones",
      product_image_url = "https://example.com/headphones.jpg",
      persona_id = "09d3a33a-3eb0-480a-80df-0c64dbf7c98f",
      video_model = "veo3_fast",
      segment_count = 3,
      interaction_mode = "holdable",
      caption_style = "tiktok_karaoke",
      music_enabled = true,
    } }
    assert.are.equal(201, r.status)
    assert.is_truthy(r.headers["x-request-id"])
    local job = r.json
    assert.matches("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$", job.job_id)
    assert.are.equal("queued", job.status)
    assert.are.equal("prepare", job.current_stage)
    assert.are.equal(0, job.progress_percent)
    assert.are.equal("veo3_fast", job.video_model)
    assert.are.equal(8, job.segment_duration)
    assert.are.equal(181, job.credits_reserved)
    assert.are.equal("/api/v1/jobs/" .. job.job_id, r.headers["location"])
  end)

  it("2. polls the docs' example job id through every stage to final_video_url", function()
    local id = "550e8400-e29b-41d4-a716-446655440000"
    -- a slower clock (a 2 s job) so that polling sees the stages even on a busy machine;
    -- resetting the tenant restarts the example job
    S.speed(10)
    finally(function() S.speed() end)
    S.reset("default")
    local seen, last = {}, nil
    local done = S.eventually(function()
      local r = S.request{ path = "/jobs/" .. id }
      assert.are.equal(200, r.status)
      local j = r.json
      seen[j.current_stage] = true
      assert.is_true(j.progress_percent >= 0 and j.progress_percent <= 100)
      if last then assert.is_true(j.progress_percent >= last) end
      last = j.progress_percent
      return j.status == "completed" and j
    end, 15, 0.05)
    assert.is_table(done)
    assert.are.equal("complete", done.current_stage)
    assert.are.equal(100, done.progress_percent)
    assert.matches("^http://127%.0%.0%.1:%d+/static/videos/" .. id:gsub("%-", "%%-") .. "%.mp4$", done.final_video_url)
    assert.is_string(done.thumbnail_url)
    assert.are.equal(162, done.credits_consumed)
    -- sandbox_jobs_spec walks every stage deterministically
    local n = 0
    for _ in pairs(seen) do n = n + 1 end
    assert.is_true(n >= 3, "saw only " .. n .. " stages")
    -- the final video is a real MP4 served by the sandbox
    local v = S.request{ url = done.final_video_url }
    assert.are.equal(200, v.status)
    assert.are.equal("video/mp4", v.headers["content-type"])
    assert.is_truthy(v.headers["x-request-id"])
    assert.are.equal("ftyp", v.body:sub(5, 8))
    assert.are.equal(#S.read_file(S.info().root .. "/static/sample.mp4"), #v.body)
  end)

  it("3. configures the webhook with the docs' URL and a 64-hex secret", function()
    local secret = crypto.new_secret()
    assert.matches("^" .. ("%x"):rep(64) .. "$", secret)
    local r = S.request{ method = "PUT", path = "/tenants/me/webhook", json = {
      webhook_url = "https://your-server.com/webhooks/ugen", webhook_secret = secret } }
    assert.are.equal(200, r.status)
    assert.are.same(true, r.json.webhook_configured)
    assert.are.equal("https://your-server.com/webhooks/ugen", r.json.webhook_url)
    assert.is_nil(r.body:find(secret, 1, true))
    local g = S.request{ path = "/tenants/me/webhook" }
    assert.are.equal(200, g.status)
    assert.are.equal("https://your-server.com/webhooks/ugen", g.json.webhook_url)
    assert.is_nil(g.body:find(secret, 1, true))
  end)

  it("4. handles webhook events: a signed delivery verifies with HMAC-SHA256(secret, ts.body)", function()
    local secret = crypto.new_secret()
    local rx = S.receiver()
    finally(function() rx.close() end)
    assert.are.equal(200, S.request{ method = "PUT", path = "/tenants/me/webhook",
      json = { webhook_url = rx.url, webhook_secret = secret } }.status)
    local c = S.request{ method = "POST", path = "/jobs", json = {
      product_name = "Premium Wireless Headphones", product_image_url = "https://example.com/headphones.jpg",
      video_model = "veo3_fast", segment_count = 3 } }
    assert.are.equal(201, c.status)
    -- earlier jobs may complete (and be delivered) first: find this job's event
    local req = S.eventually(function()
      rx.wait(#rx.requests + 1, 0.2)
      for _, q in ipairs(rx.requests) do
        if q.body:find(c.json.job_id, 1, true) then return q end
      end
    end, 10, 0)
    assert.is_table(req)
    local ts, sig = req.headers["x-ugen-timestamp"], req.headers["x-ugen-signature"]
    assert.matches("^%d+$", ts)
    assert.is_true(math.abs(tonumber(ts) - os.time()) < 60)
    assert.is_true(crypto.consteq(crypto.hmac_sha256(secret, ts .. "." .. req.body), sig))
    assert.is_false(crypto.consteq(crypto.hmac_sha256(secret, ts .. "." .. req.body .. " "), sig))
    local ev = require("ugen.json").decode(req.body)
    assert.are.equal("job.completed", ev.event)
    assert.are.equal(c.json.job_id, ev.job_id)
    assert.are.equal("completed", ev.status)
    assert.is_string(ev.final_video_url)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", ev.timestamp)
    S.request{ method = "DELETE", path = "/tenants/me/webhook" }
  end)

  it("5. estimates credits with a per-component breakdown", function()
    local r = S.request{ method = "POST", path = "/credits/estimate", json = {
      segment_count = 3, model_id = "veo3_fast", variant = "i2v", music_enabled = true, voice_enabled = true } }
    assert.are.equal(200, r.status)
    assert.are.equal(181, r.json.total_credits)
    assert.are.same({ video = 90, keyframes = 32, voice = 15, music = 15, captions = 0,
                      post_processing = 10, qa_buffer = 19 }, r.json.breakdown)
    local sum = 0
    for _, li in ipairs(r.json.line_items) do sum = sum + li.credits end
    assert.are.equal(181, sum)
  end)
end)
