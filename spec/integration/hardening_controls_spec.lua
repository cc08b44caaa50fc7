-- Issue #12 item 11: control characters from a server never reach a terminal.
-- tostring(err) is one line with control characters escaped (err.message
-- keeps the server's text); the CLI escapes every string from server data it
-- prints, on errors and on success, in human output and in --json.
local ugen = require "ugen"
local json = require "ugen.json"
local echo_api = require "support.echo_api"
local util = require "support.util"

-- C0 (ESC, BEL, CR, LF, ...), DEL, and UTF-8-encoded C1 controls (U+0080..U+009F)
local function controls(s)
  local list = {}
  for pos, b in s:gmatch("()([%z\1-\31\127])") do list[#list + 1] = ("byte %d at %d"):format(b:byte(), pos) end
  for pos in s:gmatch("()\194[\128-\159]") do list[#list + 1] = ("C1 at %d"):format(pos) end
  return list
end

local function assert_no_controls(s, what, allow_newlines)
  local t = s
  if allow_newlines then t = t:gsub("\n", "") end
  assert.same({}, controls(t), (what or "text") .. ": " .. ("%q"):format(s))
end

describe("control characters from the server", function()
  local srv
  setup(function() srv = echo_api.start() end)
  teardown(function() srv.stop() end)

  it("tostring(err) is one line, every control escaped; err.message keeps the raw text", function()
    local c = ugen.new{ base_url = srv.base, api_key = "k", max_retries = 0 }
    local res, err = c.jobs:get("x", { headers = { ["X-Hostile"] = "ctl-error" } })
    assert.is_nil(res)
    local line = tostring(err)
    assert_no_controls(line, "tostring(err)")
    -- escaped, not dropped
    assert.matches("first line\\n\\r\\x1b[2J\\x1b]0;pwned\\x07\\u009b31m end", line, 1, true)
    assert.matches("BAD\\n", line, 1, true)                       -- err.code
    assert.matches("field\\n", line, 1, true)                     -- a field's location
    assert.matches("problem\\n", line, 1, true)                   -- a field's message
    assert.matches("req\\x1b[2Jid", line, 1, true)                 -- request id
    -- the data itself is the server's
    assert.matches("first line\n\r\27[2J", err.message, 1, true)
    assert.equal("req\27[2Jid", err.request_id)
    -- a failed job's error_message through jobs:wait
    local _, werr = c.jobs:wait("x", { interval = 0.01, timeout = 5, headers = { ["X-Hostile"] = "ctl-failed" } })
    assert.equal("job_failed", werr.kind)
    assert_no_controls(tostring(werr), "tostring(job_failed)")
    assert.matches("boom\\n", tostring(werr), 1, true)
  end)

  describe("the CLI", function()
    local INTERP = (type(jit) == "table") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
    local function run(argv, env)
      local parts = { "env -u UGEN_API_KEY -u UGEN_BASE_URL -u UGEN_JWT -u UGEN_WEBHOOK_SECRET -u UGEN_TTY",
                      "UGEN_API_KEY=k", "UGEN_BASE_URL=" .. util.q(srv.base) }
      for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. util.q(v) end
      local qargs = {}
      for i, a in ipairs(argv) do qargs[i] = util.q(a) end
      local base = os.tmpname()
      util.run(("%s %s bin/ugen %s </dev/null >%s.out 2>%s.err; echo $? >%s.rc"):format(
        table.concat(parts, " "), INTERP, table.concat(qargs, " "), base, base, base))
      local r = { code = tonumber(util.read_file(base .. ".rc")), out = util.read_file(base .. ".out") or "",
                  err = util.read_file(base .. ".err") or "" }
      for _, s in ipairs({ "", ".out", ".err", ".rc" }) do os.remove(base .. s) end
      return r
    end

    it("an error line: one line on stderr, escaped; --json escapes it too", function()
      local r = run({ "--header", "X-Hostile: ctl-error", "jobs", "get", "x" })
      assert.equal(1, r.code, r.err)
      assert.equal("", r.out)
      assert_no_controls(r.err:gsub("\n$", ""), "stderr")
      assert.matches("first line\\n\\r\\x1b[2J", r.err, 1, true)
      r = run({ "--header", "X-Hostile: ctl-error", "jobs", "get", "x", "--json" })
      assert.equal(1, r.code)
      assert_no_controls(r.out, "--json stdout", true)
      assert_no_controls(r.err:gsub("\n$", ""), "--json stderr")
      -- the JSON still carries the server's exact text
      assert.matches("first line\n\r\27[2J\27]0;pwned\7\194\155", json.decode(r.out).error.message, 1, true)
    end)

    it("success output (jobs get): every value and key escaped, human and --json", function()
      local r = run({ "--header", "X-Hostile: ctl-job", "jobs", "get", "x" })
      assert.equal(0, r.code, r.err)
      assert_no_controls(r.out, "stdout", true)
      assert.matches("status: completed\\n\\r\\x1b[2J", r.out, 1, true)
      r = run({ "--header", "X-Hostile: ctl-job", "jobs", "get", "x", "--json" })
      assert.equal(0, r.code, r.err)
      assert_no_controls(r.out, "--json stdout", true)
      assert.equal("completed\n\r\27[2J\27]0;pwned\7\194\155" .. "31m", json.decode(r.out).status)
    end)

    it("webhook listen: a request target and a verified event with ESC sequences are printed escaped", function()
      local socket = require "socket"
      local webhook = require "ugen.webhook"
      local secret = webhook.new_secret()
      local s = assert(socket.bind("127.0.0.1", 0))
      local _, port = s:getsockname()
      s:close()
      local base = os.tmpname()
      util.run(("env -u UGEN_TTY %s bin/ugen webhook listen --port %d --secret %s --count 1 --timeout 20 "
        .. "</dev/null >%s.out 2>%s.err &"):format(INTERP, port, util.q(secret), base, base))
      local deadline = socket.gettime() + 10
      while not (util.read_file(base .. ".out") or ""):find("listening on", 1, true) and socket.gettime() < deadline do
        socket.sleep(0.05)
      end
      local function send(raw)
        local c = assert(socket.connect("127.0.0.1", port))
        c:settimeout(5)
        assert(c:send(raw))
        local status = c:receive("*l")
        c:close()
        return status
      end
      -- an unauthenticated peer: a 404 whose target holds ESC sequences
      assert.matches(" 404 ", send("GET /\27[2J\27]0;pwned\7 HTTP/1.1\r\nHost: x\r\n\r\n"))
      -- a verified delivery whose event and job id hold them
      local body = json.encode({ event = "job.completed\27[2J", job_id = "j\27]0;t\7\194\155" .. "1m" })
      local h = webhook.headers(secret, body)
      local req = "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " .. #body
      for k, v in pairs(h) do req = req .. "\r\n" .. k .. ": " .. v end
      assert.matches(" 200 ", send(req .. "\r\n\r\n" .. body))
      deadline = socket.gettime() + 10
      while not (util.read_file(base .. ".out") or ""):find("received", 1, true) and socket.gettime() < deadline do
        socket.sleep(0.05)
      end
      socket.sleep(0.2)
      local out, err = util.read_file(base .. ".out") or "", util.read_file(base .. ".err") or ""
      for _, sfx in ipairs({ "", ".out", ".err" }) do os.remove(base .. sfx) end
      assert.matches("received job.completed\\x1b[2J for job j\\x1b]0;t\\x07\\u009b1m", out, 1, true)
      assert.matches("/\\x1b[2J", err, 1, true)
      assert_no_controls(out, "listen stdout", true)
      assert_no_controls(err, "listen stderr", true)
    end)

    for _, tty in ipairs({ "0", "1" }) do
      it("jobs wait (UGEN_TTY=" .. tty .. "): progress, final line and URL escaped; a failed job too", function()
        local r = run({ "--header", "X-Hostile: ctl-job", "jobs", "wait", "x", "--interval", "0.05" },
          { UGEN_TTY = tty })
        assert.equal(0, r.code, r.err)
        assert_no_controls(r.out, "stdout", true)
        -- the progress display's own "\r\27[K" on a terminal is the only control left
        assert_no_controls((r.err:gsub("\r\27%[K", "")), "stderr", true)
        assert.matches("/v\\n\\r\\x1b[2J", r.out, 1, true)
        r = run({ "--header", "X-Hostile: ctl-failed", "jobs", "wait", "x", "--interval", "0.05" },
          { UGEN_TTY = tty })
        assert.equal(3, r.code, r.err)
        assert_no_controls((r.err:gsub("\r\27%[K", "")), "stderr", true)
        assert.matches("boom\\n", r.err, 1, true)
      end)
    end
  end)
end)
