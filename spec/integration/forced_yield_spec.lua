-- client:step under a host that interrupts it (issue 13 item 4). HAProxy's
-- tune.lua.forced-yield yields the Lua coroutine running a service/task every
-- N instructions from a count hook and resumes it later, while other HAProxy
-- tasks run and call client:step themselves. spec/support/forced_yield.c
-- does the same to plain Lua 5.3/5.4 (LuaJIT and 5.1 cannot yield from a
-- hook: listed in spec/allowed_pending.lua).
local S = require "support.sandbox"
local util = require "support.util"
local tools = require "support.tools"
local ugen = require "ugen"
local core = require "ugen.core"

local V = _VERSION:match("%d+%.%d+")
local can_yield_from_hooks = rawget(_G, "jit") == nil and (V == "5.3" or V == "5.4")

-- build the hook module for this interpreter into a private dir
local function forced_yield()
  local dir = S.tmpdir()
  local so = dir .. "/forced_yield.so"
  local cmd = ("%s -std=c99 -Wall -Wextra -Werror -fPIC -shared -I/usr/include/lua%s "
    .. "spec/support/forced_yield.c -o %s"):format(tools.need("cc"), V, util.q(so))
  assert(util.run(cmd), "cannot build spec/support/forced_yield.c: " .. cmd)
  local f = assert(package.loadlib(so, "luaopen_forced_yield"))
  return f()
end

local JOB = { product_image_url = "https://example.com/mug.jpg", segment_count = 1 }

describe("client:step interrupted by the host (forced yields)", function()
  local function twelve_jobs()
    local fy = forced_yield()
    local info = S.info()
    local client = ugen.new{ base_url = info.base_url, api_key = S.tenant.acme.api_key,
                             runtime = ugen.scheduler.new():runtime() }
    local N = 12
    local results, errors_seen = {}, {}
    for i = 1, N do
      client:spawn(function()
        local p = { product_name = "forced yield " .. i }
        for k, v in pairs(JOB) do p[k] = v end
        local job = assert(client.jobs:create(p))
        local done, err = client.jobs:wait(job.job_id, { interval = 0.05, timeout = 30 })
        results[i] = done and done.status or ("error: " .. tostring(err))
      end)
    end
    -- three host tasks, each looping over client:step(0), each force-yielded
    -- every 150 instructions, resumed round-robin like HAProxy's scheduler
    local hosts = {}
    for h = 1, 3 do
      local co = coroutine.create(function()
        while true do
          local ok, err = pcall(client.step, client, 0)
          if not ok then errors_seen[#errors_seen + 1] = tostring(err) end
          coroutine.yield("loop")
        end
      end)
      fy.set(co, 150)
      hosts[h] = co
    end
    local deadline, resumes = core.now() + 60, 0
    local function all_done()
      for i = 1, N do if results[i] == nil then return false end end
      return true
    end
    while not all_done() and core.now() < deadline do
      for h = 1, #hosts do
        local ok, err = coroutine.resume(hosts[h])
        assert(ok, err)
        resumes = resumes + 1
      end
      core.sleep(0.001)
    end
    for h = 1, #hosts do fy.clear(hosts[h]) end
    assert.same({}, errors_seen)
    for i = 1, N do assert.equal("completed", results[i], "job " .. i) end
    assert.is_true(resumes > 3 * N, "the hook really interrupted the steps")
  end

  if can_yield_from_hooks then
    it("completes every job when step is yielded part-way and re-entered from other host tasks", twelve_jobs)
  else
    pending("completes every job when step is yielded part-way and re-entered from other host tasks")
  end
end)
