-- Run by spec/hosts/luv_spec.lua with lua5.4 (and the other Lua versions):
--   UGEN_HOST_OUT=result.json lua5.4 spec/hosts/luv_job.lua
-- (LUA_PATH / LUA_CPATH point at the tree's lua/ and build/<lua>/). A plain
-- libuv program (lua-luv): the docs' main job (create, wait, final_video_url)
-- for UGEN_HOST_JOBS jobs at once with client:spawn on the runtime of
-- require("ugen.runtime.luv").new(uv), then uv.run(), and nothing else drives
-- the SDK. A 10 ms uv timer measures the loop's lateness until the last job
-- ended; uv.run() returns when the SDK holds no handle any more. The results
-- (with the CPU time of uv.run()) go to UGEN_HOST_OUT as JSON.
local uv = require "luv"
local ugen = require "ugen"
local json = require "ugen.json"

local N = tonumber(os.getenv("UGEN_HOST_JOBS") or "") or 10
local OUT = assert(os.getenv("UGEN_HOST_OUT"), "UGEN_HOST_OUT not set")

local res = { lua = (type(jit) == "table" and jit.version) or _VERSION, jobs = {}, errors = {} }

local finished = 0
local t_last_job
local observer = uv.new_timer()

local function ended()
  finished = finished + 1
  if finished == N then
    t_last_job = uv.hrtime()
    observer:stop()
    observer:close()
  end
end

-- (no pcall in the tasks: Lua 5.1 cannot yield across it; a task that raises
-- is reported here)
local client = ugen.new{ runtime = require("ugen.runtime.luv").new(uv, {
                           on_error = function(e, _, tb)
                             res.errors[#res.errors + 1] = tostring(tb or e)
                             ended()
                           end }) }
res.runtime = client.runtime.name
-- the loop drives the client: there is no step to call
local ok, err = pcall(client.step, client, 0)
res.step_error = not ok and tostring(err) or "client:step did not raise"

local ticks, max_late, last = 0, 0, uv.hrtime()
observer:start(10, 10, function()
  local t = uv.hrtime()
  local late = (t - last) / 1e6 - 10
  if late > max_late then max_late = late end
  last = t
  ticks = ticks + 1
end)

local function write_out()
  local f = assert(io.open(OUT, "w"))
  f:write(assert(json.encode(res)))
  f:close()
end

local guard = uv.new_timer()          -- never keeps the loop alive by itself
guard:start(30000, 0, function()
  res.guard, res.finished = true, finished
  write_out()
  os.exit(3)
end)
guard:unref()

local function one(i)
  local r = { i = i }
  res.jobs[i] = r
  local job, cerr = client.jobs:create{
    product_name = ("luv job %02d"):format(i),
    product_image_url = "https://example.com/headphones.jpg",
    persona_id = "09d3a33a-3eb0-480a-80df-0c64dbf7c98f",
    video_model = "veo3_fast",
    segment_count = 3,
    interaction_mode = "holdable",
    caption_style = "tiktok_karaoke",
    music_enabled = true,
  }
  if not job then error(("job %d: %s"):format(i, tostring(cerr)), 0) end
  r.id = job.job_id
  local final, werr = client.jobs:wait(job.job_id, { interval = 0.5, timeout = 60 })
  if not final then error(("job %d: %s"):format(i, tostring(werr)), 0) end
  r.final_video_url = final.final_video_url
  ended()
end

for i = 1, N do
  client:spawn(function() one(i) end)
end

-- libuv loop iterations until the last job ended (a check handle runs once
-- per iteration, after the poll phase; unref'd: it never keeps the loop alive)
local iterations = 0
local check = uv.new_check()
check:start(function() if t_last_job == nil then iterations = iterations + 1 end end)
check:unref()

local t0, cpu0 = uv.hrtime(), os.clock()
uv.run()
res.cpu = os.clock() - cpu0
res.elapsed = (uv.hrtime() - t0) / 1e9
-- how long uv.run() went on after the last job ended (the SDK's handles closing)
res.after_last_ms = t_last_job and (uv.hrtime() - t_last_job) / 1e6 or nil
res.finished, res.max_late_ms, res.ticks, res.iterations = finished, max_late, ticks, iterations
write_out()
