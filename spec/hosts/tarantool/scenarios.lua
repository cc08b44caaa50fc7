-- Host script of spec/hosts/tarantool_spec.lua (which runs the docs' main job
-- with examples/tarantool/jobs.lua), run by tarantool itself:
--   tarantool spec/hosts/tarantool/scenarios.lua <scenario> [runtime]
-- against the sandbox of UGEN_BASE_URL / UGEN_API_KEY (UGEN_CAINFO for TLS),
-- with LUA_PATH / LUA_CPATH on the checkout's lua/ and build/luajit/. Every
-- scenario runs while an observer fiber with a 10 ms timer measures how late
-- it fires; the last line printed is "RESULT <json>" (the scenario's findings,
-- the client's runtime name, the observer's ticks and max lateness in ms).
-- runtime: passed to ugen.new (nil: the SDK's own choice).
local ugen = require "ugen"
local json = require "ugen.json"
local fiber = require "fiber"
local clock = require "clock"

local scenario, runtime = arg[1], arg[2]
local DELAY = "X-Sandbox-Fault"

local client = ugen.new{ runtime = runtime, user_agent = os.getenv("UGEN_SPEC_MARKER") }
local rt = client.runtime

local JOB = {
  product_name = "Premium Wireless Headphones",
  product_image_url = "https://example.com/headphones.jpg",
  persona_id = "09d3a33a-3eb0-480a-80df-0c64dbf7c98f",
  video_model = "veo3_fast",
  segment_count = 3,
  interaction_mode = "holdable",
  caption_style = "tiktok_karaoke",
  music_enabled = true,
}

local function errinfo(err)
  if err == nil then return nil end
  if type(err) ~= "table" then return { text = tostring(err) } end
  return { kind = err.kind, status = err.status, code = err.code, text = tostring(err) }
end

-- plain fibers, each running fn(i); -> their { ok, ... } in order
local function in_fibers(n, fn)
  local ch = fiber.channel(n)
  for i = 1, n do
    fiber.create(function()
      ch:put({ i = i, r = { pcall(fn, i) } })
    end)
  end
  local out = {}
  for _ = 1, n do
    local m = ch:get()
    out[m.i] = m.r
  end
  return out
end

local S = {}

-- client:spawn + join_any / h:join / cancel, errors in spawned fns, wait_all
function S.spawn()
  local out = {}
  local started = false
  local h1 = client:spawn(function(a, b)
    started = true
    fiber.sleep(0.05)
    local page = assert(client.jobs:list{ page_size = 1 })
    return a + b, page.page_size
  end, 2, 3)
  out.started_at_spawn = started
  local h2 = client:spawn(function() fiber.sleep(0.02); error("boom in a spawned fiber") end)
  local h3 = client:spawn(function() error({ code = 7 }) end)
  -- a request that the server answers only after 3 s, cancelled while in flight
  local h4 = client:spawn(function()
    return client.jobs:list({ page_size = 1 }, { headers = { [DELAY] = "delay=3" } })
  end)
  fiber.sleep(0.3)
  local tr = require "ugen.runtime.tarantool"
  out.pending_before_cancel = tr.stats().pending
  out.cancel_alive = h4:cancel()
  fiber.sleep(0.05)
  out.pending_after_cancel = tr.stats().pending
  out.joined = {}
  local handles = { h1, h2, h3, h4 }
  for _ = 1, 3 do
    local h, ok, a, b = rt.join_any(handles)
    local which = h == h1 and "h1" or h == h2 and "h2" or h == h3 and "h3" or "h4"
    out.joined[which] = { ok = ok, a = type(a) == "table" and a.code or tostring(a), b = b }
  end
  local nothing_ok, nothing_err = pcall(rt.join_any, handles)
  out.fourth_join = { ok = nothing_ok, err = tostring(nothing_err) }
  -- join_any's timeout
  local slow = client:spawn(function() fiber.sleep(0.5); return "slow" end)
  local t0 = clock.monotonic()
  out.timeout_join = rt.join_any({ slow }, 0.1) == nil
  out.timeout_waited = clock.monotonic() - t0
  out.slow_join = { slow:join() }
  -- wait_all (spawns on the runtime) over two jobs
  local ids = {}
  for i = 1, 2 do ids[i] = assert(client.jobs:create(JOB)).job_id end
  local jobs, errs = client.jobs:wait_all(ids, { interval = 0.5 })
  out.wait_all = { first = jobs[1] and jobs[1].final_video_url, second = jobs[2] and jobs[2].final_video_url,
                   errors = errs ~= nil and next(errs) ~= nil }
  return out
end

-- an upload, a job, its download to a file (progress reported; on_progress yields while other
-- fibers make requests), in a fiber
function S.download()
  local dir = assert(os.getenv("UGEN_SPEC_TMP"))
  local r = in_fibers(1, function()
    local png = "\137PNG\r\n\26\n\0\0\0\rIHDR\0\0\0\1\0\0\0\1\8\6\0\0\0\31\21\196\137\0\0\0\rIDATx\156c\248\15"
      .. "\4\0\9\251\3\253\227U\242\156\0\0\0\0IEND\174B`\130"
    local f = assert(io.open(dir .. "/mug.png", "wb"))
    f:write(png)
    f:close()
    local up, uerr = client.uploads:product_image{ file = dir .. "/mug.png" }
    if not up then return { upload_err = errinfo(uerr) } end
    local params = {}
    for k, v in pairs(JOB) do params[k] = v end
    params.product_image_url = up.url
    local job = assert(client.jobs:create(params))
    local final = assert(client.jobs:wait(job.job_id, { interval = 0.5 }))
    -- other fibers make requests meanwhile, while on_progress yields (inside the engine)
    local others = fiber.channel(5)
    for _ = 1, 5 do
      fiber.create(function()
        local n = 0
        for _ = 1, 5 do
          if client.jobs:list{ page_size = 1 } then n = n + 1 end
        end
        others:put(n)
      end)
    end
    local calls, last = 0, nil
    local info, derr = client.jobs:download(final, dir .. "/video.mp4", {
      on_progress = function(done, total)
        calls = calls + 1
        last = { done, total }
        fiber.sleep(0.02)
      end,
    })
    local ok_requests = 0
    for _ = 1, 5 do ok_requests = ok_requests + others:get() end
    return { upload_url = up.url, url = final.final_video_url, info = info, err = not info and errinfo(derr) or nil,
             progress_calls = calls, progress_last = last, other_requests = ok_requests }
  end)[1]
  assert(r[1], r[2])
  return r[2]
end

-- failures inside fibers: 404, a refused connection, a per-call timeout
function S.errors()
  local r = in_fibers(3, function(i)
    if i == 1 then
      local job, err = client.jobs:get("00000000-0000-4000-8000-000000000000")
      return { job = job, err = errinfo(err) }
    elseif i == 2 then
      local dead = ugen.new{ base_url = "http://127.0.0.1:9/api/v1", max_retries = 0 }
      local job, err = dead.jobs:get("00000000-0000-4000-8000-000000000000")
      return { job = job, err = errinfo(err) }
    else
      local t0 = clock.monotonic()
      local page, err = client.jobs:list({ page_size = 1 }, { timeout = 0.3, headers = { [DELAY] = "delay=3" } })
      return { page = page, err = errinfo(err), took = clock.monotonic() - t0 }
    end
  end)
  local out = {}
  for i = 1, 3 do
    assert(r[i][1], r[i][2])
    out[i] = r[i][2]
  end
  out.pending = require("ugen.runtime.tarantool").stats().pending
  return out
end

-- over TLS (the TLS sandbox: HTTP/2): 10 fibers, 3 requests each
function S.tls()
  local r = in_fibers(10, function()
    local n = 0
    for _ = 1, 3 do
      local page, err = client.jobs:list{ page_size = 1 }
      if not page then return nil, errinfo(err) end
      n = n + 1
    end
    return n
  end)
  local out = {}
  for i = 1, 10 do out[i] = r[i][2] end
  return { requests = out }
end

---------------------------------------------------------------------------

local running, ticks, max_late = true, 0, 0
local observer_done = fiber.channel(1)
fiber.create(function()
  while running do
    local t0 = clock.monotonic()
    fiber.sleep(0.010)
    local late = clock.monotonic() - t0 - 0.010
    ticks = ticks + 1
    if late > max_late then max_late = late end
  end
  observer_done:put(true)
end)

local t0 = clock.monotonic()
local ok, res = pcall(assert(S[scenario], "unknown scenario"))
running = false
observer_done:get()
local out = { scenario = scenario, ok = ok, result = ok and res or nil, error = not ok and tostring(res) or nil,
              runtime = rt.name, transport = client.transport_name, ticks = ticks,
              max_late_ms = max_late * 1000, seconds = clock.monotonic() - t0 }
io.stdout:write("RESULT ", assert(json.encode(out)), "\n")
io.stdout:flush()
os.exit(ok and 0 or 1)
