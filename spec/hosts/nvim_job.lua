-- Run inside Neovim by spec/hosts/nvim_spec.lua:
--   nvim --headless -u NONE -i NONE -c "lua dofile('spec/hosts/nvim_job.lua')"
-- (LUA_PATH / LUA_CPATH point at the tree's lua/ and build/luajit/). The
-- docs' main job (create, wait, final_video_url) for UGEN_HOST_JOBS jobs at
-- once with client:spawn on the runtime ugen.new picks in Neovim; on_progress
-- writes each job's line into a buffer with nvim_buf_set_lines. A 10 ms
-- vim.loop timer measures how late the editor's loop runs it. Then one plain
-- call on the main thread (blocking), the results as JSON to UGEN_HOST_OUT,
-- and :qa!. UGEN_HOST_RUNTIME = "curl" forces the old runtime (for checking
-- that the spec fails there).
-- luacheck: read globals vim
local uv = vim.loop
local ugen = require "ugen"
local json = require "ugen.json"

local N = tonumber(os.getenv("UGEN_HOST_JOBS") or "") or 10
local OUT = assert(os.getenv("UGEN_HOST_OUT"), "UGEN_HOST_OUT not set")
local forced = os.getenv("UGEN_HOST_RUNTIME")
local GUARD_MS = 30000

local res = { jobs = {}, progress_calls = 0, progress_in_fast = 0, body_in_fast = 0, errors = {} }
local t0, cpu0 = uv.hrtime(), os.clock()

-- UGEN_API_KEY and UGEN_BASE_URL from the environment, as a user's plugin would
local client = ugen.new{ runtime = forced ~= "" and forced or nil }
res.runtime = client.runtime.name

local buf = vim.api.nvim_create_buf(false, true)
local lines = {}
for i = 1, N do lines[i] = ("%02d creating"):format(i) end
vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)

-- the observer: a 10 ms timer of the editor's loop
local ticks, max_late, last = 0, 0, uv.hrtime()
local observer = uv.new_timer()
observer:start(10, 10, function()
  local t = uv.hrtime()
  local late = (t - last) / 1e6 - 10
  if late > max_late then max_late = late end
  last = t
  ticks = ticks + 1
end)

-- libuv loop iterations while the jobs run (a check handle runs once per
-- iteration, after the poll phase)
local iterations = 0
local check = uv.new_check()
check:start(function() iterations = iterations + 1 end)

local finished, quitting = 0, false

local function quit(why)
  if quitting then return end
  quitting = true
  observer:stop()
  check:stop()
  res.iterations = iterations
  res.why = why
  res.max_late_ms, res.ticks = max_late, ticks
  res.elapsed = (uv.hrtime() - t0) / 1e9
  res.cpu = os.clock() - cpu0
  -- a plain call on the main thread: it blocks until it returns, and works
  local first = res.jobs[1] and res.jobs[1].id
  if first then
    local b0 = uv.hrtime()
    local job, err = client.jobs:get(first)
    res.plain_get = job and job.status or tostring(err)
    res.plain_get_ms = (uv.hrtime() - b0) / 1e6
  end
  res.buffer = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  local f = assert(io.open(OUT, "w"))
  f:write(assert(json.encode(res)))
  f:close()
  vim.cmd("qa!")
end

local function one(i)
  local r = { i = i }
  res.jobs[i] = r
  if vim.in_fast_event() then res.body_in_fast = res.body_in_fast + 1 end
  local job, err = client.jobs:create{
    product_name = ("Neovim job %02d"):format(i),
    product_image_url = "https://example.com/headphones.jpg",
    persona_id = "09d3a33a-3eb0-480a-80df-0c64dbf7c98f",
    video_model = "veo3_fast",
    segment_count = 3,
    interaction_mode = "holdable",
    caption_style = "tiktok_karaoke",
    music_enabled = true,
  }
  if not job then error(err, 0) end
  r.id = job.job_id
  local final, werr = client.jobs:wait(job.job_id, {
    interval = 0.5, timeout = 60,
    on_progress = function(j)
      res.progress_calls = res.progress_calls + 1
      if vim.in_fast_event() then res.progress_in_fast = res.progress_in_fast + 1 end
      vim.api.nvim_buf_set_lines(buf, i - 1, i, false,
        { ("%02d %-10s %3d%%"):format(i, tostring(j.current_stage), math.floor(j.progress_percent)) })
    end,
  })
  if not final then error(werr, 0) end
  r.final_video_url = final.final_video_url
  vim.api.nvim_buf_set_lines(buf, i - 1, i, false, { ("%02d done %s"):format(i, tostring(final.final_video_url)) })
end

for i = 1, N do
  client:spawn(function()
    local ok, err = pcall(one, i)
    if not ok then res.errors[#res.errors + 1] = ("job %d: %s"):format(i, tostring(err)) end
    finished = finished + 1
    if finished == N then vim.schedule(function() quit("done") end) end
  end)
end
res.spawned_ms = (uv.hrtime() - t0) / 1e6

local guard = uv.new_timer()
guard:start(GUARD_MS, 0, function()
  vim.schedule(function() quit(("guard: %d of %d tasks ended after %d s"):format(finished, N, GUARD_MS / 1000)) end)
end)
