-- The docs' main job (create a job, wait for it, print its video URL) in N
-- fibers of tarantool at once, with plain SDK calls: inside tarantool the SDK
-- picks its tarantool runtime by itself, so every call yields to the other
-- fibers. An observer fiber with a 10 ms timer shows that tarantool never
-- stalls: it reports how late its timer ever fired.
--   tarantool examples/tarantool/jobs.lua [N [runtime]]
-- N jobs (default 10); runtime "curl" forces the blocking runtime, to see
-- what it does to the other fibers. Needs UGEN_API_KEY and UGEN_BASE_URL
-- (the sandbox: eval "$(bin/ugen sandbox start)"); UGEN_POLL_INTERVAL is the
-- jobs:wait interval in seconds (default 10).
local setup = dofile((arg[0]:match("^(.*)/[^/]+$") or ".") .. "/../_setup.lua")
local ugen = require "ugen"
local fiber = require "fiber"
local clock = require "clock"

local N = tonumber(arg[1]) or 10
local opts = setup.client_options()
opts.runtime = arg[2]
local client = ugen.new(opts)
print("runtime: " .. client.runtime.name)

local interval = tonumber(os.getenv("UGEN_POLL_INTERVAL") or "") or 10

-- the docs' main job, as plain calls
local function main_job()
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
  if not job then return nil, err end
  local final, werr = client.jobs:wait(job.job_id, { interval = interval })
  if not final then return nil, werr end
  return final
end

-- the observer: a 10 ms timer, and how late it fired at worst (started
-- first, so that a stall of any job fiber delays one of its sleeps)
local running, ticks, max_late = true, 0, 0
local observer = fiber.create(function()
  fiber.self():set_joinable(true)
  while running do
    local t0 = clock.monotonic()
    fiber.sleep(0.010)
    local late = clock.monotonic() - t0 - 0.010
    ticks = ticks + 1
    if late > max_late then max_late = late end
  end
end)

local results = fiber.channel(N)
local t0 = clock.monotonic()
for i = 1, N do
  fiber.create(function()
    local job, err = main_job()
    results:put({ i = i, job = job, err = err })
  end)
end

local failed = 0
for _ = 1, N do
  local r = results:get()
  if r.job then
    print(("job %d %s %s %s"):format(r.i, r.job.job_id, r.job.status, tostring(r.job.final_video_url)))
  else
    failed = failed + 1
    print(("job %d failed: %s"):format(r.i, tostring(r.err)))
  end
end
running = false
observer:join()
print(("observer: %d ticks in %.1f s, max lateness %.1f ms"):format(ticks, clock.monotonic() - t0, max_late * 1000))
os.exit(failed == 0 and 0 or 1)
