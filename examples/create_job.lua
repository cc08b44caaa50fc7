-- Workflow 1 of the U-Gen API docs: create a video job with the docs' values.
--   lua examples/create_job.lua          create and print the job
--   lua examples/create_job.lua --wait   ... then wait for it, with progress
-- Needs UGEN_API_KEY (and UGEN_BASE_URL for the sandbox).
local setup = dofile((arg[0]:match("^(.*)/[^/]+$") or ".") .. "/_setup.lua")
local ugen = require "ugen"

local client = ugen.new(setup.client_options())

local job, err = client.jobs:create{
  product_name = "Premium Wireless Headphones",
  product_image_url = "https://example.com/headphones.jpg",
  persona_id = "09d3a33a-3eb0-480a-80df-0c64dbf7c98f",
  video_model = "veo3_fast",
  segment_count = 3,
  interaction_mode = "holdable",
  caption_style = "tiktok_karaoke",
  music_enabled = true,
}
if not job then
  if err.kind == "insufficient_credits" then
    io.stderr:write(("not enough credits: %s required, %s available\n"):format(
      tostring(err.details and err.details.required), tostring(err.details and err.details.available)))
  elseif err.kind == "validation" then
    for _, f in ipairs(err.fields) do io.stderr:write(table.concat(f.loc, "."), ": ", f.msg, "\n") end
  end
  setup.fail("create", err)
end
print(("created job %s (status %s, stage %s)"):format(job.job_id, tostring(job.status), tostring(job.current_stage)))

if arg[1] == "--wait" then
  local final, werr = client.jobs:wait(job.job_id, {
    interval = tonumber(os.getenv("UGEN_POLL_INTERVAL") or "") or 10,
    on_progress = function(j)
      print(("  %-10s %3d%%"):format(tostring(j.current_stage), math.floor(tonumber(j.progress_percent) or 0)))
    end,
  })
  if not final then setup.fail("wait", werr) end
  print("final video: " .. tostring(final.final_video_url))
end
