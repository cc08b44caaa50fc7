-- spec/hosts/luv_host.lua: runs a host script of spec/hosts (nvim_job.lua,
-- luv_job.lua) as a subprocess against the shared sandbox at speed 5 (a job
-- takes ~4 s), with LUA_PATH / LUA_CPATH on this tree's lua/ and build/<sub>/,
-- and reads the JSON results it writes.
--   local host = require "hosts.luv_host"
--   local r, log = host.run{ cmd = "nvim ...", sub = "luajit", jobs = 10, env = { K = "v" } }
--   local all = host.run_all{ o1, o2, ... }   -- at once -> { { r, log }, ... }
-- The spec restores the sandbox's speed (finally) and asserts on r.
local S = require "support.sandbox"
local json = require "ugen.json"

local q = S.q
local M = {}

local root
function M.root()
  if not root then
    local p = assert(io.popen("pwd"))
    root = assert(p:read("*l"))
    p:close()
  end
  return root
end

-- the sandbox at speed 5 with a fresh default account; -> info
function M.sandbox()
  local info = S.info()
  S.reset("default")
  S.speed(5)
  return info
end
M.restore = function() S.speed() end

-- o = { cmd = shell words after the environment, sub = build dir (luajit, 5.4, ...),
--       jobs = n, env = { extra variables } } -> shell command, result file, log file
local function command(info, o)
  local dir = S.tmpdir()
  local out, log = dir .. "/result.json", dir .. "/log"
  local r = M.root()
  local env = {
    LUA_PATH = r .. "/lua/?.lua;" .. r .. "/lua/?/init.lua;;",
    LUA_CPATH = r .. "/build/" .. o.sub .. "/?.so;;",
    UGEN_BASE_URL = info.base_url, UGEN_API_KEY = info.api_key,
    UGEN_HOST_OUT = out, UGEN_HOST_JOBS = tostring(o.jobs or 10),
  }
  for k, v in pairs(o.env or {}) do env[k] = v end
  local words = {}
  for k, v in pairs(env) do words[#words + 1] = k .. "=" .. q(v) end
  return ("( cd %s && env %s %s </dev/null >%s 2>&1; echo \"exit $?\" >>%s )")
    :format(q(r), table.concat(words, " "), o.cmd, q(log), q(log)), out, log
end

-- the results table the script wrote (nil when it wrote none), its output
local function collect(out, log)
  local text = S.read_file(out)
  return text and assert(json.decode(text)), S.read_file(log) or ""
end

-- one script -> results, output
function M.run(o)
  local cmd, out, log = command(M.sandbox(), o)
  os.execute(cmd)
  return collect(out, log)
end

-- several scripts at once -> { { results, output }, ... } in the same order
function M.run_all(list)
  local info = M.sandbox()
  local cmds, files = {}, {}
  for i, o in ipairs(list) do
    local cmd, out, log = command(info, o)
    cmds[i], files[i] = cmd .. " &", { out, log }
  end
  os.execute(table.concat(cmds, "\n") .. "\nwait")
  local r = {}
  for i, f in ipairs(files) do r[i] = { collect(f[1], f[2]) } end
  return r
end

-- every job has its final_video_url; -> how many do
function M.completed(res)
  local n = 0
  for _, j in ipairs(res.jobs or {}) do
    if type(j) == "table" and type(j.final_video_url) == "string" and j.final_video_url:match("^https?://") then
      n = n + 1
    end
  end
  return n
end

return M
