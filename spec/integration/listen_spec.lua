-- `ugen webhook listen` (lua/ugen/cli/listen.lua), run as a subprocess, with
-- real loopback connections: a half-open connection (connected, silent or half a
-- request) must not delay the next delivery (issue #12 item 14).
local socket = require "socket"
local json = require "ugen.json"
local webhook = require "ugen.webhook"
local S = require "support.sandbox"
local util = require "support.util"

local q, read = util.q, util.read_file

local INTERP = (type(jit) == "table") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
local LAUNCHER = "spec/support/ugen.lua"
local CLEAN_ENV = "env -u UGEN_API_KEY -u UGEN_BASE_URL -u UGEN_JWT -u UGEN_WEBHOOK_SECRET -u UGEN_TTY -u UGEN_DEBUG"

-- Start `ugen <argv>` in the background: out(), err(), wait(timeout) -> exit code, kill().
local function ugen_bg(argv)
  local base = S.tmpdir() .. "/listen"
  local parts = {}
  for i, a in ipairs(argv) do parts[i] = q(a) end
  local cmd = ("(exec %s %s %s %s </dev/null >%s.out 2>%s.err & echo $! >%s.pid; wait $!; echo $? >%s.rc) "
    .. "2>/dev/null &"):format(CLEAN_ENV, INTERP, LAUNCHER, table.concat(parts, " "), base, base, base, base)
  assert(util.run("sh -c " .. q(cmd)))
  local h = {}
  function h.out() return read(base .. ".out") or "" end
  function h.err() return read(base .. ".err") or "" end
  function h.wait(timeout)
    local deadline = socket.gettime() + (timeout or 10)
    repeat
      local rc = read(base .. ".rc")
      if rc and rc:match("%d") then return tonumber(rc:match("%d+")) end
      socket.sleep(0.02)
    until socket.gettime() > deadline
    return nil
  end
  function h.kill()
    local pid = (read(base .. ".pid") or ""):match("%d+")
    if pid then util.run("kill " .. pid .. " 2>/dev/null") end
    h.wait(5)
  end
  function h.url(timeout)
    local deadline = socket.gettime() + (timeout or 10)
    repeat
      local u = h.out():match('"listening":"(http:[^"]+)"')
      if u then return (u:gsub("\\/", "/")) end
      socket.sleep(0.02)
    until socket.gettime() > deadline
  end
  return h
end

-- POST a signed event to url over a fresh connection -> status, seconds taken.
local function deliver(url, secret, event, timeout)
  local port, path = url:match("^http://127%.0%.0%.1:(%d+)(/.*)$")
  local body = json.encode(event)
  local ts = tostring(os.time())
  local started = socket.gettime()
  local c = assert(socket.connect("127.0.0.1", tonumber(port)))
  c:settimeout(timeout or 3)
  c:send(("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-UGen-Timestamp: %s\r\n"
    .. "X-UGen-Signature: %s\r\nContent-Length: %d\r\n\r\n%s"):format(path, ts, webhook.sign(secret, ts, body),
    #body, body))
  local line = c:receive("*l")
  c:close()
  return tonumber(line and line:match("^HTTP/1%.1 (%d+)")), socket.gettime() - started
end

describe("ugen webhook listen: concurrent connections (#12 item 14)", function()
  local l, held
  before_each(function() held = {} end)
  after_each(function()
    for _, c in ipairs(held) do c:close() end
    if l then l.kill(); l = nil end
  end)

  local function hold(port, data)
    local c = assert(socket.connect("127.0.0.1", port))
    if data then assert(c:send(data)) end
    held[#held + 1] = c
    return c
  end

  it("a silent and a half-sent connection do not delay a signed delivery", function()
    local secret = webhook.new_secret()
    l = ugen_bg({ "webhook", "listen", "--secret", secret, "--count", "2", "--timeout", "20", "--json" })
    local url = assert(l.url(10), l.out() .. l.err())
    local port = tonumber(url:match(":(%d+)/"))
    hold(port)                                                       -- connects, sends nothing
    hold(port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"event\"")  -- half a request
    hold(port, "POST / HT")                                          -- half a request line
    socket.sleep(0.1) -- the listener has accepted them (and would now be stuck in the first)
    local status, took = deliver(url, secret, { event = "job.completed", job_id = "j-1", status = "completed" })
    assert.are.equal(200, status, l.err())
    assert.is_true(took < 0.5, ("delivery took %.2f s"):format(took))
    -- and again, with the half-open ones still held
    status, took = deliver(url, secret, { event = "job.failed", job_id = "j-2", status = "failed" })
    assert.are.equal(200, status, l.err())
    assert.is_true(took < 0.5, ("delivery took %.2f s"):format(took))
    -- --count 2 reached: the listener exits at once, not after the held connections' deadline
    local t0 = socket.gettime()
    assert.are.equal(0, l.wait(5), l.err())
    assert.is_true(socket.gettime() - t0 < 2)
    local lines = {}
    for line in l.out():gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal(3, #lines, l.out())
    assert.are.equal("j-1", json.decode(lines[2]).event.job_id)
    assert.are.equal("j-2", json.decode(lines[3]).event.job_id)
  end)

  it("many idle connections at once do not block deliveries either", function()
    local secret = webhook.new_secret()
    l = ugen_bg({ "webhook", "listen", "--secret", secret, "--count", "1", "--timeout", "20", "--json" })
    local url = assert(l.url(10), l.out() .. l.err())
    local port = tonumber(url:match(":(%d+)/"))
    for _ = 1, 25 do hold(port) end -- (luasocket's listen backlog is 32)
    socket.sleep(0.1)
    local status, took = deliver(url, secret, { event = "job.completed", job_id = "j-3", status = "completed" })
    assert.are.equal(200, status, l.err())
    assert.is_true(took < 0.5, ("delivery took %.2f s"):format(took))
    assert.are.equal(0, l.wait(5), l.err())
  end)

  it("a connection that trickles a request byte by byte is served when it completes", function()
    local secret = webhook.new_secret()
    l = ugen_bg({ "webhook", "listen", "--secret", secret, "--count", "2", "--timeout", "20", "--json" })
    local url = assert(l.url(10), l.out() .. l.err())
    local port = tonumber(url:match(":(%d+)/"))
    local body = json.encode({ event = "job.completed", job_id = "j-4", status = "completed" })
    local ts = tostring(os.time())
    local req = ("POST / HTTP/1.1\r\nHost: x\r\nX-UGen-Timestamp: %s\r\nX-UGen-Signature: %s\r\n"
      .. "Content-Length: %d\r\n\r\n%s"):format(ts, webhook.sign(secret, ts, body), #body, body)
    local slow = hold(port)
    slow:settimeout(3)
    -- the first bytes slowly, while another delivery goes through at full speed
    for i = 1, 20 do slow:send(req:sub(i, i)); socket.sleep(0.005) end
    local status, took = deliver(url, secret, { event = "job.failed", job_id = "j-5", status = "failed" })
    assert.are.equal(200, status)
    assert.is_true(took < 0.5, ("delivery took %.2f s"):format(took))
    -- the rest, in a few pieces: the slow one is answered too
    for i = 21, #req, 50 do slow:send(req:sub(i, i + 49)); socket.sleep(0.005) end
    local line = slow:receive("*l")
    assert.are.equal("HTTP/1.1 200 OK", line)
    assert.are.equal(0, l.wait(5), l.err())
    assert.truthy(l.out():find('"j-4"', 1, true), l.out())
    assert.truthy(l.out():find('"j-5"', 1, true), l.out())
  end)
end)
