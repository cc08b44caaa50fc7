-- Neovim 0.7 (Debian neovim: LuaJIT, vim.loop = luv): the SDK inside the real
-- editor, against the sandbox at speed 5 (a job takes ~4 s). nvim --headless
-- runs spec/hosts/nvim_job.lua: ugen.new{} picks the libuv runtime by itself,
-- 10 main jobs (create, wait, final_video_url) start at once with client:spawn
-- and nothing else drives them (no step, no timer of ours); on_progress writes
-- into a buffer with nvim_buf_set_lines (E5560 in a fast luv callback); a 10 ms
-- vim.loop timer measures the editor loop's lateness; at the end one plain
-- call on the main thread (it blocks, and works); the script writes JSON and
-- quits. With the old runtime (UGEN_HOST_RUNTIME=curl) no job ever advances.
local tools = require "support.tools"
local host = require "hosts.luv_host"
local q = require("support.sandbox").q

local N = 10

local function check(res, log)
  assert(res, "nvim wrote no results:\n" .. log)
  return res
end

describe("Neovim 0.7 (vim.loop)", function()
  it("10 jobs with client:spawn complete, driven by the editor's loop, the loop never late over 50 ms", function()
    local nvim = tools.need("nvim")
    finally(host.restore)
    local script = "local ok, e = pcall(dofile, 'spec/hosts/nvim_job.lua') " ..
                   "if not ok then io.stderr:write(tostring(e), '\\n') vim.cmd('cq') end"
    local res = check(host.run{ sub = "luajit", jobs = N,
      cmd = q(nvim) .. " --headless -u NONE -i NONE -c " .. q("lua " .. script) })
    assert.equal("luv", res.runtime)                      -- picked by ugen.new{} in Neovim
    assert.same({}, res.errors)
    assert.equal("done", res.why)
    assert.equal(N, host.completed(res))
    -- every line of the buffer was written by the tasks and their on_progress
    assert.equal(N, #res.buffer)
    for i, line in ipairs(res.buffer) do
      assert.matches(("^%02d done https?://"):format(i), line)
    end
    -- on_progress and task bodies ran where the editor's API may be called
    assert.is_true(res.progress_calls >= N, "on_progress calls: " .. tostring(res.progress_calls))
    assert.equal(0, res.progress_in_fast)
    assert.equal(0, res.body_in_fast)
    -- client:spawn returns at once; the loop stayed responsive while the jobs ran
    assert.is_true(res.spawned_ms < 100, ("spawning took %.1f ms"):format(res.spawned_ms))
    assert.is_true(res.elapsed > 2 and res.elapsed < 20, ("jobs took %.2f s"):format(res.elapsed))
    assert.is_true(res.max_late_ms <= 50, ("observer %.1f ms late"):format(res.max_late_ms))
    assert.is_true(res.ticks >= res.elapsed * 100 * 0.5, ("%d observer ticks in %.2f s"):format(res.ticks, res.elapsed))
    -- no fixed-rate polling: the editor's loop wakes for the SDK's events only
    -- (~100 requests; a 1 ms fixed-rate client:step adds ~4000 iterations in
    -- 4 s) and its CPU time while the jobs ran stays small
    assert.is_true(res.iterations < res.ticks + 1000, ("%d loop iterations, %d observer ticks"):format(
      res.iterations, res.ticks))
    assert.is_true(res.cpu < 0.6, ("%.3f s CPU in %.2f s"):format(res.cpu, res.elapsed))
    -- a plain call on the main thread blocks until it returns, and works
    assert.equal("completed", res.plain_get)
  end)

  it("examples/nvim: :UgenJobs 3 follows 3 jobs in its buffer and fires User UgenJobsDone", function()
    local nvim = tools.need("nvim")
    finally(host.restore)
    local hook = "lua vim.api.nvim_create_autocmd('User', { pattern = 'UgenJobsDone', callback = function() " ..
      "local f = io.open(os.getenv('UGEN_HOST_OUT'), 'w') " ..
      "f:write(vim.fn.json_encode({ lines = vim.api.nvim_buf_get_lines(0, 0, -1, false) })) f:close() " ..
      "vim.cmd('qa!') end }) vim.defer_fn(function() vim.cmd('cq') end, 30000)"
    local res, log = host.run{ sub = "luajit", env = { UGEN_POLL_INTERVAL = "0.5" },
      cmd = q(nvim) .. " --headless -u NONE -i NONE --cmd 'set rtp+=examples/nvim' " ..
            "-c 'runtime plugin/ugen_jobs.lua' -c " .. q(hook) .. " -c 'UgenJobs 3'" }
    check(res, log)
    assert.equal(3, #res.lines)
    for i, line in ipairs(res.lines) do
      assert.matches(("^%02d done +https?://%%S+%%.mp4$"):format(i), line)
    end
  end)
end)
