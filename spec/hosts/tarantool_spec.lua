-- The SDK inside tarantool 2.6 (#14 item 1), for real: `tarantool` runs
-- examples/tarantool/jobs.lua and spec/hosts/tarantool/scenarios.lua as
-- subprocesses (LUA_PATH / LUA_CPATH on this checkout's lua/ and build/luajit/)
-- against sandboxes of this file (a job takes ~4 s at speed 5; a TLS one for
-- HTTP/2). Inside tarantool the client picks the tarantool runtime by itself
-- and plain SDK calls yield to the other fibers: an observer fiber with a
-- 10 ms timer, running meanwhile, is never more than 50 ms late (best of 3
-- runs of the main job: the machine is shared), and never a second late in
-- the other scenarios (a blocking call there would stall it for seconds).
local S = require "support.sandbox"
local N = require "support.nginx"
local tools = require "support.tools"
local sandbox = require "ugen.sandbox"
local json = require "ugen.json"
local ugen = require "ugen"

local q = S.q
local SPEED = 5   -- the issue's measurement speed: a job takes ~4 s

local REPO = (function()
  local p = io.popen("pwd")
  local d = p:read("*l")
  p:close()
  return d
end)()

local plain, tls, tmp

local function env(info, extra)
  local parts = {
    "env -u UGEN_JWT -u UGEN_CAINFO",
    "LUA_PATH=" .. q(REPO .. "/lua/?.lua;" .. REPO .. "/lua/?/init.lua;;"),
    "LUA_CPATH=" .. q(REPO .. "/build/luajit/?.so;;"),
    "UGEN_BASE_URL=" .. q(info.base_url),
    "UGEN_API_KEY=" .. q(info.api_key),
    "UGEN_SPEC_TMP=" .. q(tmp),
  }
  if info.cainfo then parts[#parts + 1] = "UGEN_CAINFO=" .. q(info.cainfo) end
  for k, v in pairs(extra or {}) do parts[#parts + 1] = k .. "=" .. q(v) end
  return table.concat(parts, " ")
end

-- runs a tarantool command line -> stdout, exit code, stderr
local function tarantool(info, args, extra)
  local errf = tmp .. "/stderr"
  local p = io.popen(("cd %s && %s timeout 120 tarantool %s 2>%s; echo \"rc=$?\""):format(
    q(REPO), env(info, extra), args, q(errf)))
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)\n$"))
  out = out:gsub("rc=%d+\n$", "")
  return out, rc, S.read_file(errf) or ""
end

local function scenario(info, name, extra)
  local out, rc, err = tarantool(info, "spec/hosts/tarantool/scenarios.lua " .. name, extra)
  local line = out:match("RESULT ([^\n]+)")
  assert(line, ("no RESULT from tarantool (exit %s)\nstdout:\n%s\nstderr:\n%s"):format(tostring(rc), out, err))
  local r = assert(json.decode(line))
  assert(r.ok and rc == 0, ("scenario %s failed (exit %s): %s\nstderr:\n%s"):format(name, tostring(rc),
    tostring(r.error), err))
  assert.equal("tarantool", r.runtime)
  assert.equal("curl", r.transport)
  return r.result, r, err
end

-- examples/tarantool/jobs.lua's report -> { runtime =, jobs = { [i] = { id, status, url } }, ticks =,
-- seconds =, late_ms = }
local function run_example(n, runtime)
  local out, rc, err = tarantool(plain, ("examples/tarantool/jobs.lua %d %s"):format(n, runtime or ""),
    { UGEN_POLL_INTERVAL = "0.5" })
  local r = { out = out, rc = rc, err = err, jobs = {} }
  r.runtime = out:match("^runtime: (%S+)\n")
  for i, id, status, url in out:gmatch("\njob (%d+) (%S+) (%S+) (%S+)") do
    r.jobs[tonumber(i)] = { id = id, status = status, url = url }
  end
  local ticks, secs, late = out:match("\nobserver: (%d+) ticks in ([%d.]+) s, max lateness ([%d.]+) ms\n")
  r.ticks, r.seconds, r.late_ms = tonumber(ticks), tonumber(secs), tonumber(late)
  return r
end

describe("tarantool (#14 item 1)", function()
  lazy_setup(function()
    tools.need("tarantool")
    tools.need("curl")
    tmp = S.tmpdir()
    plain = assert(sandbox.start{ port = 0, dir = tmp .. "/sandbox", speed = SPEED, seed = S.SEED,
                                  owner_pid = N.self_pid() })
  end)
  lazy_teardown(function()
    if plain then sandbox.stop{ dir = plain.dir } end
    if tls then sandbox.stop{ dir = tls.dir } end
  end)

  it("the docs' main job in 10 fibers with plain calls: every job completes, the observer is at most 50 ms late",
    function()
    local best
    for attempt = 1, 3 do
      local r = run_example(10)
      assert.equal(0, r.rc, r.out .. r.err)
      assert.equal("tarantool", r.runtime, r.out)
      for i = 1, 10 do
        local j = r.jobs[i]
        assert.is_table(j, "job " .. i .. " missing:\n" .. r.out)
        assert.equal("completed", j.status)
        assert.equal(plain.origin .. "/static/videos/" .. j.id .. ".mp4", j.url)
      end
      -- the jobs ran ~4 s, and the observer ticked all along (at least half its 10 ms ticks)
      assert.is_true(r.seconds >= 3, r.out)
      assert.is_true(r.ticks >= r.seconds / 0.010 / 2, r.out)
      if best == nil or r.late_ms < best then best = r.late_ms end
      if best <= 50 then break end
      print(("tarantool_spec: attempt %d: observer %.1f ms late"):format(attempt, r.late_ms))
    end
    assert.is_true(best <= 50, ("observer max lateness %.1f ms (best of 3)"):format(best))
  end)

  it("the same program with the blocking runtime forced (runtime = \"curl\") stalls every fiber: the observer "
    .. "measures it", function()
    local r = run_example(1, "curl")
    assert.equal(0, r.rc, r.out .. r.err)
    assert.equal("curl", r.runtime)
    assert.equal("completed", r.jobs[1].status)
    assert.is_true(r.late_ms > 1000, r.out)
  end)

  it("client:spawn starts fibers; join_any, h:join, cancel and wait_all work with them; errors are reported, "
    .. "never raised into tarantool", function()
    local res, r, stderr = scenario(plain, "spawn")
    assert.is_false(res.started_at_spawn)               -- a fiber starts at the caller's next yield
    assert.same({ ok = true, a = "5", b = 1 }, res.joined.h1)
    assert.is_false(res.joined.h2.ok)
    assert.matches("boom in a spawned fiber", res.joined.h2.a)
    assert.same({ ok = false, a = 7 }, res.joined.h3)
    -- the cancelled fiber's request was in flight (3 s server delay), is closed, and is never reported
    assert.equal(1, res.pending_before_cancel)
    assert.is_true(res.cancel_alive)
    assert.equal(0, res.pending_after_cancel)
    assert.is_nil(res.joined.h4)
    assert.is_false(res.fourth_join.ok)
    assert.matches("nothing to wait for", res.fourth_join.err)
    assert.is_true(res.timeout_join)
    assert.is_true(res.timeout_waited >= 0.09 and res.timeout_waited < 0.4, tostring(res.timeout_waited))
    assert.same({ true, "slow" }, res.slow_join)
    assert.is_false(res.wait_all.errors)
    assert.matches("/static/videos/[%x-]+%.mp4$", res.wait_all.first)
    assert.matches("/static/videos/[%x-]+%.mp4$", res.wait_all.second)
    assert.not_matches("boom", stderr)
    assert.is_true(r.max_late_ms < 1000, tostring(r.max_late_ms))
  end)

  it("an upload, then a job's video downloaded to a file inside a fiber, its on_progress yielding", function()
    local res, r = scenario(plain, "download")
    assert.is_nil(res.err)
    assert.matches("^" .. plain.origin:gsub("%p", "%%%0") .. "/files/.+%.png$", res.upload_url)
    assert.equal(tmp .. "/video.mp4", res.info.path)
    assert.equal(200, res.info.status)
    local got = assert(S.read_file(tmp .. "/video.mp4"))
    assert.equal(res.info.size, #got)
    assert.is_true(#got > 1000)
    -- the same bytes as the server serves
    assert.is_true(os.execute(("curl -sS -o %s %s"):format(q(tmp .. "/ref.mp4"), q(res.url))))
    assert.is_true(got == S.read_file(tmp .. "/ref.mp4"), "downloaded bytes differ")
    assert.is_true(res.progress_calls >= 1)
    assert.same({ #got, #got }, res.progress_last)
    assert.equal(25, res.other_requests)   -- made while on_progress yielded inside the engine
    assert.is_true(r.max_late_ms < 1000, tostring(r.max_late_ms))
  end)

  it("failures inside fibers are nil, err with a structured error: 404, refused connection, timeout", function()
    local res, r = scenario(plain, "errors")
    local nf = res["1"].err
    assert.equal("not_found", nf.kind)
    assert.equal(404, nf.status)
    assert.equal("JOB_NOT_FOUND", nf.code)
    assert.matches("^ugen: not_found error %(HTTP 404%)", nf.text)
    assert.equal("network", res["2"].err.kind)
    assert.equal("timeout", res["3"].err.kind)
    assert.is_true(res["3"].took >= 0.25 and res["3"].took < 2, tostring(res["3"].took))
    assert.equal(0, res.pending)
    -- the 3 s server delay never stalled tarantool
    assert.is_true(r.max_late_ms < 1000, tostring(r.max_late_ms))
  end)

  it("over TLS with HTTP/2: 10 fibers share one multiplexed connection", function()
    tls = assert(sandbox.start{ port = 0, dir = tmp .. "/tls-sandbox", tls = true, speed = S.SPEED, seed = S.SEED,
                                owner_pid = N.self_pid() })
    local marker = "tarantool-spec-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e9))
    local res = scenario(tls, "tls", { UGEN_SPEC_MARKER = marker })
    for i = 1, 10 do assert.equal(3, res.requests[i]) end
    local lines, conns = {}, {}
    S.eventually(function()
      lines = {}
      for line in (S.read_file(tls.dir .. "/access.log") or ""):gmatch("[^\n]+") do
        if line:find(marker, 1, true) then lines[#lines + 1] = line end
      end
      return #lines >= 30
    end, 5)
    assert.equal(30, #lines)
    for _, line in ipairs(lines) do
      assert.matches('HTTP/2%.0" 200 ', line)
      conns[line:match("conn=(%d+)")] = true
    end
    local n = 0
    for _ in pairs(conns) do n = n + 1 end
    assert.is_true(n <= 8, n .. " connections")
  end)

  it("docs/hosts.md's tarantool snippet is code of examples/tarantool/jobs.lua (what the first test runs)", function()
    local section = assert(assert(S.read_file(REPO .. "/docs/hosts.md")):match("\n## tarantool\n(.-)\n## "))
    local code = assert(section:match("```lua\n(.-)```"))
    local have = {}
    for line in assert(S.read_file(REPO .. "/examples/tarantool/jobs.lua")):gmatch("[^\n]+") do
      have[(line:gsub("%s*%-%-.*$", ""))] = true
    end
    local n = 0
    for line in code:gmatch("[^\n]+") do
      local c = line:gsub("%s*%-%-.*$", "")
      if c:match("%S") then
        assert(have[c], "docs line not in the example: " .. line)
        n = n + 1
      end
    end
    assert.is_true(n >= 25, n .. " lines")
  end)

  it("ugen.new{ runtime = \"tarantool\" } outside tarantool raises at the call site", function()
    local ok, err = pcall(function()
      local c = ugen.new{ api_key = "k", runtime = "tarantool" }
      return c
    end)
    assert.is_false(ok)
    assert.matches("tarantool_spec%.lua:%d+: ugen%.new: option 'runtime' \"tarantool\" needs tarantool", err)
  end)
end)
