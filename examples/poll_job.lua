-- Workflow 2 of the U-Gen API docs: poll a job until it finishes.
--   lua examples/poll_job.lua [JOB_ID]
-- Default JOB_ID: the docs' example id (the sandbox seeds a job with it).
-- Polls GET /jobs/{id} every UGEN_POLL_INTERVAL seconds (default 10, as the
-- docs recommend), printing current_stage and progress_percent on change.
local setup = dofile((arg[0]:match("^(.*)/[^/]+$") or ".") .. "/_setup.lua")
local ugen = require "ugen"

local client = ugen.new(setup.client_options())
local job_id = arg[1] or "550e8400-e29b-41d4-a716-446655440000"

local job, err = client.jobs:wait(job_id, {
  interval = tonumber(os.getenv("UGEN_POLL_INTERVAL") or "") or 10,
  timeout = 1800,
  on_progress = function(j)
    print(("%s  %-10s %3d%%"):format(j.job_id or job_id, tostring(j.current_stage),
      math.floor(tonumber(j.progress_percent) or 0)))
  end,
})
if not job then
  if err.kind == "job_failed" then
    setup.fail("job " .. job_id, err.job and err.job.error_message or err)
  end
  setup.fail("poll", err)
end
print("completed: " .. tostring(job.final_video_url))
