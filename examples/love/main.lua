-- A LÖVE 11 game (LuaJIT) that runs U-Gen jobs while it keeps drawing frames: a spinning
-- square, a progress bar per job and, when a job completes, its final_video_url. The jobs
-- run in tasks started with client:spawn; love.update calls client:step(0) once a frame,
-- which advances every request and timer of the SDK and returns at once. A plain SDK call
-- (client.jobs:wait) in love.update or love.draw would freeze the game for the whole job:
-- LÖVE's main thread has no way to wait without blocking. The jobs start once the first
-- frame is on screen (that frame is slow on its own: LÖVE builds its font atlas and GL state).
--
--   eval "$(bin/ugen sandbox start --speed 5)"   # or UGEN_BASE_URL / UGEN_API_KEY of your account
--   love examples/love                           # from a clone, after `make build`
--
-- Environment: UGEN_BASE_URL, UGEN_API_KEY (or UGEN_JWT); UGEN_LOVE_JOBS (jobs to run, default
-- 6), UGEN_LOVE_RESULTS (a file: a JSON summary is written there when every job has ended),
-- UGEN_LOVE_QUIT=1 (quit then). The summary includes the game's frame times, measured in
-- love.update with love.timer.getTime.
--
-- From a clone the game puts the clone's lua/ and build/luajit/ on the module paths (LÖVE
-- runs LuaJIT); with the rock installed for Lua 5.1 (luarocks --lua-version 5.1) no paths
-- are needed.
-- luacheck: globals love
do
  local src = love.filesystem.getSource()               -- this directory, absolute
  local root = src and src:match("^(.*)/examples/love/?$")
  local f = root and io.open(root .. "/lua/ugen/init.lua", "r")
  if f then
    f:close()
    package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
    package.cpath = root .. "/build/luajit/?.so;" .. package.cpath
  end
end

local ugen = require "ugen"
local json = require "ugen.json"

local N = math.floor(tonumber(os.getenv("UGEN_LOVE_JOBS") or "") or 6)
local RESULTS = os.getenv("UGEN_LOVE_RESULTS")
local QUIT = os.getenv("UGEN_LOVE_QUIT") == "1"
local FRAME = 1 / 60                                     -- the frame budget (see love.draw)

local client
local rows = {}                                          -- one per job: written by its task, drawn
local stats = { frames = 0, max_frame = 0, max_step = 0, slow_frames = 0, last_step = 0, last_work = 0,
                max_frame_step = 0, max_frame_work = 0 }
local getTime = love.timer.getTime
local t_start, frame_start, last_update, spin, finished, updates = 0, 0, 0, 0, false, 0

local function start_jobs()
  t_start = getTime()
  for i = 1, N do
    rows[i] = { state = "creating", stage = "", pct = 0 }
    client:spawn(function()
      local row, t0 = rows[i], getTime()
      local job, err = client.jobs:create{
        product_name = ("Level %02d trailer"):format(i),
        product_image_url = "https://example.com/headphones.jpg",
        segment_count = 1,
      }
      if not job then
        row.state, row.err = "failed", tostring(err)
        return
      end
      row.id, row.state = job.job_id, "running"
      local final, werr = client.jobs:wait(job.job_id, { interval = 1, timeout = 600,
        on_progress = function(j)
          row.stage, row.pct = tostring(j.current_stage or ""), tonumber(j.progress_percent) or 0
        end })
      if final then
        row.state, row.pct, row.url, row.seconds = "completed", 100, final.final_video_url, getTime() - t0
      else
        row.state, row.err = "failed", tostring(werr)
      end
    end)
  end
end

function love.load()
  client = ugen.new{}                                    -- UGEN_BASE_URL, UGEN_API_KEY from the environment
  for i = 1, N do rows[i] = { state = "waiting", stage = "", pct = 0 } end
end

local function finish()
  finished = true
  local part = getTime() - frame_start                   -- the frame in progress counts too
  if part > stats.max_frame then
    stats.max_frame, stats.max_frame_step, stats.max_frame_work = part, stats.last_step, part
  end
  local out = { jobs = {}, completed = 0, frames = stats.frames, max_frame_ms = stats.max_frame * 1000,
                max_step_ms = stats.max_step * 1000, slow_frames = stats.slow_frames,
                first_frame_ms = (stats.first_frame or 0) * 1000,
                max_frame_step_ms = stats.max_frame_step * 1000, max_frame_work_ms = stats.max_frame_work * 1000,
                seconds = getTime() - t_start, lua = jit and jit.version or _VERSION }
  for i = 1, N do
    local r = rows[i]
    if r.state == "completed" then out.completed = out.completed + 1 end
    out.jobs[i] = { id = r.id or json.null, state = r.state, final_video_url = r.url or json.null,
                    seconds = r.seconds or json.null, error = r.err or json.null }
  end
  print(("%d/%d jobs completed in %.1f s; %d frames, longest %.1f ms, longest step(0) %.2f ms")
    :format(out.completed, N, out.seconds, out.frames, out.max_frame_ms, out.max_step_ms))
  if RESULTS and RESULTS ~= "" then
    local f = assert(io.open(RESULTS, "w"))
    f:write(assert(json.encode(out)), "\n")
    f:close()
  end
  if QUIT then love.event.quit(out.completed == N and 0 or 1) end
end

function love.update(dt)
  frame_start = getTime()
  updates = updates + 1
  if updates == 2 then
    -- the frame that just ended drew the window for the first time (LÖVE builds its font atlas
    -- and GL state there: 75-190 ms measured without the SDK loaded at all). It is kept apart;
    -- the jobs start now, so the SDK's first steps fall in measured frames.
    stats.first_frame = frame_start - last_update
    start_jobs()
  elseif updates > 2 then                                -- the frame that just ended: update to update
    local frame = frame_start - last_update
    if frame > stats.max_frame then       -- and what the game did in it: step(0), update + draw
      stats.max_frame, stats.max_frame_step, stats.max_frame_work = frame, stats.last_step, stats.last_work
    end
    if frame > 0.05 then stats.slow_frames = stats.slow_frames + 1 end
    stats.frames = stats.frames + 1
  end
  last_update = frame_start

  spin = (spin + dt * 2) % (2 * math.pi)                 -- the "game"
  if updates >= 2 and not finished then
    local next_in = client:step(0)                       -- never blocks; nil: every task has ended
    local spent = getTime() - frame_start
    stats.last_step = spent
    if spent > stats.max_step then stats.max_step = spent end
    if next_in == nil then finish() end
  end
end

function love.draw()
  local g = love.graphics
  g.clear(0.08, 0.08, 0.1)
  g.push()
  g.translate(g.getWidth() - 40, 30)
  g.rotate(spin)
  g.setColor(0.9, 0.6, 0.2)
  g.rectangle("fill", -15, -15, 30, 30)
  g.pop()
  g.setColor(1, 1, 1)
  local done = 0
  for i = 1, N do if rows[i].state == "completed" then done = done + 1 end end
  g.print(("U-Gen jobs: %d/%d done   %.1f s   frames %d, longest %.1f ms, longest step(0) %.2f ms")
    :format(done, N, getTime() - t_start, stats.frames, stats.max_frame * 1000, stats.max_step * 1000), 20, 16)
  local rowh = math.max(14, math.min(40, math.floor((g.getHeight() - 60) / math.max(N, 1))))
  for i = 1, N do
    local r, y = rows[i], 48 + (i - 1) * rowh
    g.setColor(0.25, 0.25, 0.3)
    g.rectangle("fill", 20, y, 300, rowh - 4)
    g.setColor(r.state == "failed" and 0.9 or 0.3, r.state == "failed" and 0.3 or 0.8, 0.4)
    g.rectangle("fill", 20, y, 300 * r.pct / 100, rowh - 4)
    g.setColor(1, 1, 1)
    local label = r.url or (r.state == "failed" and ("failed: " .. tostring(r.err)))
      or ("%3d%% %s"):format(r.pct, r.stage)
    g.print(("%02d  %s"):format(i, label), 330, y)
  end
  -- a frame budget of 1/60 s: stands in for vsync, which a virtual display (Xvfb) does not
  -- have, so the game does not spin the CPU
  stats.last_work = getTime() - frame_start
  local left = FRAME - stats.last_work
  if left > 0 then love.timer.sleep(left) end
end
