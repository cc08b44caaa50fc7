-- busted helper: ONE sandbox server per busted run, started lazily on first
-- use and stopped at the end of the run (busted's suite end), even when specs
-- fail. As a second line of defence the server gets this process as its
-- owner (it shuts itself down within a second once the process is gone), and
-- scripts/test.sh stops anything left under $UGEN_SANDBOX_SPEC_DIR.
--
--   local S = require "support.sandbox"
--   local info = S.info()          -- sandbox.start{} info (base_url, tenants, ...)
--   local res = S.request{ method =, path = "/jobs", tenant = "acme", json = {...} }
--   -- res = { status =, headers = { lowercased = value }, body =, json =, exit = curl exit code }
--   S.parallel{ req1, req2, ... }  -- the same requests, all curl processes at once
--   S.receiver{ statuses = { 500, 200 } } -- a loopback webhook receiver (luasocket)

local sandbox = require "ugen.sandbox"
local json = require "ugen.json"

local M = {}

M.SPEED = tonumber(os.getenv("UGEN_SANDBOX_SPEC_SPEED") or "") or 50
M.SEED = "spec-seed"

local info, dir

local util = require "support.util"
local sh_quote, read_file, write_file = util.q, util.read_file, util.write_file
M.q, M.read_file, M.write_file = sh_quote, read_file, write_file


local function self_pid()
  local p = io.popen("echo $PPID")
  local s = p:read("*a")
  p:close()
  return tonumber(s:match("%d+"))
end

local tmp_base
--- A fresh private temp directory (removed at the end of the run).
function M.tmpdir()
  if not tmp_base then
    local base = os.getenv("UGEN_SANDBOX_SPEC_DIR")
    if base and base ~= "" then
      tmp_base = base .. "/tmp-" .. tostring(self_pid())
    else
      local name = os.tmpname()
      os.remove(name)
      tmp_base = name .. ".ugen-spec"
    end
    assert(os.execute("mkdir -p " .. sh_quote(tmp_base)))
  end
  M.tmp_count = (M.tmp_count or 0) + 1
  local d = tmp_base .. "/" .. M.tmp_count
  assert(os.execute("mkdir -p " .. sh_quote(d)))
  return d
end

local function cleanup()
  if dir then sandbox.stop{ dir = dir } end
  dir, info = nil, nil
  if tmp_base then
    -- any sandbox a spec started under the temp dir and did not stop
    local p = io.popen("find " .. sh_quote(tmp_base) .. " -name nginx.pid 2>/dev/null")
    for pidfile in p:read("*a"):gmatch("[^\n]+") do sandbox.stop{ dir = pidfile:match("^(.*)/nginx%.pid$") } end
    p:close()
    os.execute("rm -rf " .. sh_quote(tmp_base))
  end
  tmp_base = nil
end

-- Lua 5.1/LuaJIT: a proxy whose __gc stops the server when the state closes.
local guard
local function install_guards()
  local busted = require "busted"
  busted.subscribe({ "suite", "end" }, function()
    cleanup()
    return nil, true
  end, { priority = 1 })
  local newproxy = _G["newproxy"]
  if newproxy then
    guard = newproxy(true)
    getmetatable(guard).__gc = cleanup
  else
    guard = setmetatable({}, { __gc = cleanup })
  end
end

--- The shared sandbox (started on first call).
function M.info()
  if info then return info end
  local base = os.getenv("UGEN_SANDBOX_SPEC_DIR")
  if base and base ~= "" then
    dir = base .. "/" .. (os.getenv("UGEN_SUITE_LABEL") or "busted") .. "-" .. tostring(self_pid())
  else
    dir = M.tmpdir() .. "/sandbox"
  end
  install_guards()
  local err
  info, err = sandbox.start{ port = 0, dir = dir, speed = M.SPEED, seed = M.SEED, owner_pid = self_pid() }
  if not info then error("cannot start the sandbox: " .. tostring(err)) end
  M.tenant = {}
  for _, t in ipairs(info.tenants) do M.tenant[t.slug] = t end
  return info
end

--- Change the shared sandbox's clock rate (nil: back to M.SPEED). Jobs keep
-- their progress; use with finally(function() S.speed() end).
function M.speed(x)
  local r = M.request{ method = "POST", url = M.info().origin .. "/_sandbox/clock", json = { speed = x or M.SPEED } }
  assert(r.status == 200, r.body)
  return r.json
end

--- Restore tenants to their seeded state (all = true: every tenant and the clock).
function M.reset(slug)
  M.info()
  if slug == true then
    return M.request{ method = "POST", url = info.origin .. "/_sandbox/reset?all=true" }
  end
  return M.request{ method = "POST", url = info.origin .. "/_sandbox/reset", tenant = slug or "default" }
end

-- Build the curl command line for one request; outputs go to prefix.*
local function curl_cmd(o, prefix)
  M.info()
  local args = { "curl", "-sS", "-o", sh_quote(prefix .. ".body"), "-D", sh_quote(prefix .. ".hdr"),
                 "-w", sh_quote("%{http_code}"), "--max-time", tostring(o.timeout or 20) }
  if o.method == "HEAD" then
    args[#args + 1] = "-I" -- (-X HEAD would wait for a body)
  else
    args[#args + 1] = "-X " .. sh_quote(o.method or "GET")
  end
  local headers = {}
  local t = o.tenant ~= false and M.tenant[o.tenant or "default"] or nil
  if o.api_key ~= nil then
    if o.api_key then headers[#headers + 1] = "X-API-Key: " .. o.api_key end
  elseif t and not o.jwt and not o.no_auth then
    headers[#headers + 1] = "X-API-Key: " .. t.api_key
  end
  if o.jwt then headers[#headers + 1] = "Authorization: Bearer " .. o.jwt end
  if o.fault then headers[#headers + 1] = "X-Sandbox-Fault: " .. o.fault end
  if o.json ~= nil then
    write_file(prefix .. ".req", assert(json.encode(o.json)))
    headers[#headers + 1] = "Content-Type: application/json"
    args[#args + 1] = "--data-binary @" .. sh_quote(prefix .. ".req")
  elseif o.body ~= nil then
    write_file(prefix .. ".req", o.body)
    args[#args + 1] = "--data-binary @" .. sh_quote(prefix .. ".req")
  end
  for _, h in ipairs(o.headers or {}) do headers[#headers + 1] = h end
  for _, h in ipairs(headers) do args[#args + 1] = "-H " .. sh_quote(h) end
  for _, f in ipairs(o.form or {}) do
    if f.file then
      local spec = f.name .. "=@" .. f.file
      if f.type then spec = spec .. ";type=" .. f.type end
      if f.filename then spec = spec .. ";filename=" .. f.filename end
      args[#args + 1] = "-F " .. sh_quote(spec)
    else
      args[#args + 1] = "--form-string " .. sh_quote(f.name .. "=" .. f.value)
    end
  end
  local url = o.url or (info.base_url .. o.path)
  args[#args + 1] = sh_quote(url)
  return table.concat(args, " ") .. " > " .. sh_quote(prefix .. ".code") .. " 2> " .. sh_quote(prefix .. ".err")
    .. "; echo $? > " .. sh_quote(prefix .. ".exit")
end

local function collect(prefix)
  local res = {}
  res.exit = tonumber(read_file(prefix .. ".exit") or "") or -1
  res.status = tonumber(read_file(prefix .. ".code") or "") or 0
  res.stderr = read_file(prefix .. ".err") or ""
  res.body = read_file(prefix .. ".body") or ""
  res.headers = {}
  local raw = read_file(prefix .. ".hdr") or ""
  -- the last header block (after any 100 Continue)
  local last = raw
  for block in raw:gmatch("HTTP/[^\r\n]*\r\n.-\r\n\r\n") do last = block end
  for line in last:gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then res.headers[k:lower()] = v end
  end
  if res.body ~= "" then res.json = json.decode(res.body, true) end
  for _, ext in ipairs({ ".exit", ".code", ".err", ".body", ".hdr", ".req" }) do os.remove(prefix .. ext) end
  return res
end

local seq = 0
local function new_prefix()
  seq = seq + 1
  local d = M.tmpdir_cached or M.tmpdir()
  M.tmpdir_cached = d
  return d .. "/req" .. seq
end

--- One request through a curl subprocess.
function M.request(o)
  local prefix = new_prefix()
  os.execute(curl_cmd(o, prefix))
  return collect(prefix)
end

--- Several requests at once (one curl process each, all started together).
function M.parallel(list)
  local prefixes, cmds = {}, {}
  for i, o in ipairs(list) do
    prefixes[i] = new_prefix()
    cmds[i] = "( " .. curl_cmd(o, prefixes[i]) .. " ) &"
  end
  os.execute(table.concat(cmds, "\n") .. "\nwait")
  local out = {}
  for i, p in ipairs(prefixes) do out[i] = collect(p) end
  return out
end

--- Sleep (luasocket).
function M.sleep(s) require("socket").sleep(s) end

--- Poll fn until it returns a truthy value or timeout (s) passes.
function M.eventually(fn, timeout, interval)
  local socket = require "socket"
  local deadline = socket.gettime() + (timeout or 10)
  repeat
    local v = fn()
    if v then return v end
    socket.sleep(interval or 0.05)
  until socket.gettime() > deadline
  return fn()
end

--- Wait for a job to reach a terminal status -> job table
function M.wait_job(job_id, tenant, timeout)
  return M.eventually(function()
    local r = M.request{ path = "/jobs/" .. job_id, tenant = tenant }
    if r.status == 200 and (r.json.status == "completed" or r.json.status == "failed"
                            or r.json.status == "cancelled") then
      return r.json
    end
  end, timeout or 15)
end

--- A loopback webhook receiver. statuses: the HTTP status to answer for each
-- request in turn (the last one repeats); hang = true: never answer.
function M.receiver(opts)
  local socket = require "socket"
  opts = opts or {}
  local server = assert(socket.bind("127.0.0.1", 0))
  server:settimeout(0.05)
  local _, port = server:getsockname()
  local r = { port = tonumber(port), url = "http://127.0.0.1:" .. port .. (opts.path or "/hooks/ugen"),
              requests = {} }
  local statuses = opts.statuses or { 200 }

  local function handle(c)
    c:settimeout(5)
    local line = c:receive("*l")
    if not line then c:close(); return end
    local req = { line = line, headers = {}, received_at = socket.gettime() }
    req.method, req.path = line:match("^(%S+)%s+(%S+)")
    while true do
      local h = c:receive("*l")
      if not h or h == "" then break end
      local k, v = h:match("^([^:]+):%s*(.-)%s*$")
      if k then req.headers[k:lower()] = v end
    end
    local n = tonumber(req.headers["content-length"] or "0") or 0
    req.body = n > 0 and c:receive(n) or ""
    r.requests[#r.requests + 1] = req
    local st = statuses[math.min(#r.requests, #statuses)]
    if st == "hang" then
      r.hanging = r.hanging or {}
      r.hanging[#r.hanging + 1] = c
      return
    end
    c:send(("HTTP/1.1 %d X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"):format(st))
    c:close()
  end

  --- Accept and answer requests until `count` were received or timeout.
  function r.wait(count, timeout)
    local deadline = socket.gettime() + (timeout or 10)
    while #r.requests < count and socket.gettime() < deadline do
      local c = server:accept()
      if c then handle(c) end
    end
    return #r.requests >= count
  end

  --- Keep serving for `seconds` (to catch unexpected extra deliveries).
  function r.drain(seconds)
    local deadline = socket.gettime() + seconds
    while socket.gettime() < deadline do
      local c = server:accept()
      if c then handle(c) end
    end
  end

  function r.close()
    for _, c in ipairs(r.hanging or {}) do c:close() end
    server:close()
  end
  return r
end

--- Deliveries the sandbox logged for a tenant (optionally one job).
function M.deliveries(tenant, job_id)
  local r = M.request{ url = M.info().origin .. "/_sandbox/deliveries" .. (job_id and ("?job_id=" .. job_id) or ""),
                       tenant = tenant }
  assert(r.status == 200, r.body)
  return r.json
end

return M
