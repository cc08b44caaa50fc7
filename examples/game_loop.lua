-- A host that owns its main loop (a game, an automation tool): a fixed-timestep
-- loop keeps simulating and rendering frames while it follows 50 jobs with
-- progress bars. The SDK never blocks the loop: each frame calls
-- client:step(0), which advances every in-flight request and timer and
-- returns at once; the jobs are created and polled by tasks started with
-- client:spawn.
--
--   eval "$(bin/ugen sandbox start --speed 10)"    # sandbox jobs then take ~2 s
--   lua examples/game_loop.lua [JOBS]              # default 50
--
-- Environment: UGEN_BASE_URL, UGEN_API_KEY (see _setup.lua), UGEN_POLL_INTERVAL
-- (seconds between polls of one job, default 1), UGEN_MAX_SECONDS (give up
-- after, default 600). On a terminal the bars are redrawn in place every frame;
-- otherwise a status line is printed twice a second.
local setup = dofile((arg[0]:match("^(.*)/[^/]+$") or ".") .. "/_setup.lua")
local ugen = require "ugen"

local client = ugen.new(setup.client_options())
local N = math.floor(tonumber(arg[1] or "") or 50)
local INTERVAL = tonumber(os.getenv("UGEN_POLL_INTERVAL") or "") or 1
local MAX_SECONDS = tonumber(os.getenv("UGEN_MAX_SECONDS") or "") or 600
local DT = 1 / 60                         -- fixed simulation step (60 Hz)
local now, sleep = ugen.scheduler.now, ugen.scheduler.sleep
local tty = os.execute("[ -t 1 ]")
tty = tty == true or tty == 0

-- one row per job, written by the tasks, read by the renderer
local rows = {}
for i = 1, N do rows[i] = { state = "creating", stage = "", pct = 0 } end

for i = 1, N do
  client:spawn(function()
    local row = rows[i]
    local job, err = client.jobs:create{
      product_name = ("Game asset #%02d"):format(i),
      product_image_url = "https://example.com/asset.jpg",
      segment_count = 1,
    }
    if not job then
      row.state, row.err = "failed", tostring(err)
      return
    end
    row.id, row.state = job.job_id, "running"
    local final, werr = client.jobs:wait(job.job_id, { interval = INTERVAL, timeout = MAX_SECONDS,
      on_progress = function(j)
        row.stage, row.pct = tostring(j.current_stage or ""), tonumber(j.progress_percent) or 0
      end })
    if final then
      row.state, row.pct, row.stage = "completed", 100, "complete"
    else
      row.state, row.err = "failed", tostring(werr)
    end
  end)
end

-- the "game": a fixed-timestep simulation (a spinner) and a renderer
local world = { ticks = 0, angle = 0 }
local function update(dt)
  world.ticks = world.ticks + 1
  world.angle = (world.angle + dt * 4) % 4
end

local SPIN = { "|", "/", "-", "\\" }
local function bar(pct, width)
  local fill = math.floor(pct / 100 * width + 0.5)
  return ("#"):rep(fill) .. ("."):rep(width - fill)
end

local function counts()
  local done, failed = 0, 0
  for i = 1, N do
    if rows[i].state == "completed" then done = done + 1 elseif rows[i].state == "failed" then failed = failed + 1 end
  end
  return done, failed
end

local frames, worst_step, t_start = 0, 0, now()
local function render(next_in)
  local done, failed = counts()
  local head = ("%s frame %5d  tick %5d  %5.1f s  jobs %d/%d done, %d failed, next in %4.0f ms  worst step(0) %.2f ms")
    :format(SPIN[math.floor(world.angle) + 1], frames, world.ticks, now() - t_start, done, N, failed,
            (next_in or 0) * 1000, worst_step * 1000)
  if tty then
    local out = { "\27[H\27[2J", head, "\n" }
    for i = 1, N do
      local r = rows[i]
      out[#out + 1] = ("%02d [%s] %3d%% %-10s %s\n"):format(i, bar(r.pct, 30), r.pct, r.stage,
        r.state == "failed" and ("FAILED " .. tostring(r.err)) or r.state)
    end
    io.write(table.concat(out))
    io.flush()
  elseif frames % 30 == 0 then
    print(head)
  end
end

-- the loop: pump the SDK, simulate in fixed steps, render, wait for the next frame
local acc, last = 0, now()
local next_in = 0
while next_in ~= nil and now() - t_start < MAX_SECONDS do
  local frame_start = now()
  acc = acc + (frame_start - last)
  last = frame_start

  next_in = client:step(0)                -- never blocks; -> seconds until the SDK next needs
                                          -- to run (a host that can sleep sleeps that long), nil: done
  local spent = now() - frame_start
  if spent > worst_step then worst_step = spent end

  while acc >= DT do
    update(DT)
    acc = acc - DT
  end
  frames = frames + 1
  render(next_in)

  local left = DT - (now() - frame_start)
  if left > 0 then sleep(left) end        -- outside a task this is a plain sleep
end

local done, failed = counts()
local elapsed = now() - t_start
print(("finished: %d/%d completed, %d failed; %d frames in %.1f s (%.0f fps); worst step(0) %.2f ms")
  :format(done, N, failed, frames, elapsed, frames / elapsed, worst_step * 1000))
os.exit(done == N and 0 or 1)
