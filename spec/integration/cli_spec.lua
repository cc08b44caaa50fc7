-- The `ugen` command line, run as a subprocess (with the interpreter running
-- this spec) against a real sandbox server (nginx) that this file starts with
-- `ugen sandbox start` in its own directory, and stops at the end.
-- Also runs scripts/demo.sh (what `make demo` runs) and checks its output,
-- its cleanup, and its cleanup after Ctrl-C.

local json = require "ugen.json"
local webhook = require "ugen.webhook"

local INTERP = (type(jit) == "table") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
local LAUNCHER = "spec/support/ugen.lua"
local SPEED = 10 -- sandbox clock: a default job takes about 2 s

local util = require "support.util"
local tools = require "support.tools"
local q, read, write = util.q, util.read_file, util.write_file

local function sh(cmd)
  local r1, _, r3 = os.execute(cmd)
  if type(r1) == "number" then return r1 == 0, r1 end -- 5.1 / LuaJIT without 5.2 compat
  return r1 == true, r3
end

local function sleep(s)
  sh("sleep " .. s)
end

local function now()
  local ok, socket = pcall(require, "socket")
  if ok then return socket.gettime() end
  return os.time()
end

local TMP
local counter = 0
local function tmpfile(name)
  counter = counter + 1
  return TMP .. "/" .. counter .. "-" .. (name or "f")
end

-- Environment for every CLI run: none of the caller's UGEN_* settings leak in.
local CLEAN_ENV = "env -u UGEN_API_KEY -u UGEN_BASE_URL -u UGEN_JWT -u UGEN_WEBHOOK_SECRET -u UGEN_TTY -u UGEN_DEBUG"

local function env_prefix(env)
  local parts = { CLEAN_ENV }
  for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. q(v) end
  return table.concat(parts, " ")
end

local function argv_text(argv)
  local parts = {}
  for i, a in ipairs(argv) do parts[i] = q(a) end
  return table.concat(parts, " ")
end

-- Run `ugen <argv>`; returns {code=, out=, err=}.
local function ugen(argv, opts)
  opts = opts or {}
  local base = tmpfile("run")
  local stdin = "/dev/null"
  if opts.stdin then
    stdin = base .. ".in"
    write(stdin, opts.stdin)
  end
  local cmd = string.format("%s %s %s %s <%s >%s.out 2>%s.err; echo $? >%s.rc",
    env_prefix(opts.env), INTERP, LAUNCHER, argv_text(argv), stdin, base, base, base)
  sh(cmd)
  return { code = tonumber(read(base .. ".rc")), out = read(base .. ".out") or "", err = read(base .. ".err") or "" }
end

-- Start `ugen <argv>` in the background; returns a handle with :wait(timeout) and :kill().
local function ugen_bg(argv, opts)
  opts = opts or {}
  local base = tmpfile("bg")
  local cmd = string.format(
    "(exec %s %s %s %s </dev/null >%s.out 2>%s.err & echo $! >%s.pid; wait $!; echo $? >%s.rc) 2>/dev/null &",
    env_prefix(opts.env), INTERP, LAUNCHER, argv_text(argv), base, base, base, base)
  sh("sh -c " .. q(cmd))
  local h = { base = base }
  function h.out() return read(base .. ".out") or "" end
  function h.err() return read(base .. ".err") or "" end
  function h.pid()
    local deadline = now() + 5
    repeat
      local p = read(base .. ".pid")
      if p and p:match("%d") then return tonumber(p:match("%d+")) end
      sleep(0.05)
    until now() > deadline
  end
  function h.wait(timeout)
    local deadline = now() + (timeout or 10)
    repeat
      local rc = read(base .. ".rc")
      if rc and rc:match("%d") then return tonumber(rc:match("%d+")) end
      sleep(0.05)
    until now() > deadline
    return nil
  end
  function h.kill()
    local pid = h.pid()
    if pid then sh("kill " .. pid .. " 2>/dev/null") end
    h.wait(5)
  end
  function h.wait_for(pattern, timeout)
    local deadline = now() + (timeout or 10)
    repeat
      local m = h.out():match(pattern)
      if m then return m end
      sleep(0.05)
    until now() > deadline
    return nil
  end
  return h
end

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function one_line(s)
  return #lines(s) == 1 and s:sub(-1) == "\n"
end

local function pid_alive(pid)
  return pid ~= nil and sh("kill -0 " .. pid .. " 2>/dev/null")
end

local SB -- the sandbox: {dir, base_url, api_key}
local SB_BASE -- where this file's sandboxes keep their state
local function api_env(extra)
  local e = { UGEN_BASE_URL = SB.base_url, UGEN_API_KEY = SB.api_key }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

local JOB_ARGS = {
  "--product-name", "Premium Wireless Headphones", "--image-url", "https://example.com/headphones.jpg",
  "--persona-id", "09d3a33a-3eb0-480a-80df-0c64dbf7c98f", "--segments", "3", "--model", "veo3_fast",
  "--interaction-mode", "holdable", "--caption-style", "tiktok_karaoke", "--music-enabled",
}
local function job_args(...)
  local t = {}
  for _, a in ipairs({ ... }) do t[#t + 1] = a end
  for _, a in ipairs(JOB_ARGS) do t[#t + 1] = a end
  return t
end
local function with(t, ...)
  local out = {}
  for _, a in ipairs(t) do out[#out + 1] = a end
  for _, a in ipairs({ ... }) do out[#out + 1] = a end
  return out
end

describe("ugen CLI", function()
  setup(function()
    TMP = os.tmpname()
    os.remove(TMP)
    assert(sh("mkdir -p " .. q(TMP)))
    -- under scripts/test.sh's sandbox dir when set: it stops whatever a crashed run left
    local base = os.getenv("UGEN_SANDBOX_SPEC_DIR")
    SB_BASE = (base and base ~= "") and (base .. "/cli-" .. TMP:match("[^/]+$")) or TMP
    local r = ugen({ "sandbox", "start", "--port", "0", "--dir", SB_BASE .. "/sandbox", "--speed", tostring(SPEED) })
    assert(r.code == 0, "sandbox start failed: " .. r.err)
    SB = { dir = SB_BASE .. "/sandbox" }
    SB.base_url = r.out:match("export UGEN_BASE_URL=(%S+)")
    SB.api_key = r.out:match("export UGEN_API_KEY=(%S+)")
    assert(SB.base_url and SB.api_key, "unexpected sandbox start output: " .. r.out)
  end)

  teardown(function()
    if SB then ugen({ "sandbox", "stop", "--dir", SB.dir }) end
    if SB_BASE then ugen({ "sandbox", "stop", "--dir", SB_BASE .. "/sb2" }) end
    if SB_BASE and SB_BASE ~= TMP then sh("rm -rf " .. q(SB_BASE)) end
    if TMP then sh("rm -rf " .. q(TMP)) end
  end)

  describe("help and usage errors", function()
    it("ugen help lists every command and every flag of every command", function()
      local r = ugen({ "help" })
      assert.equal(0, r.code)
      assert.equal("", r.err)
      local cli = require "ugen.cli"
      for name, def in pairs(cli.commands) do
        assert.truthy(r.out:find("\n    " .. name, 1, true), "missing command " .. name)
        for _, f in ipairs(def.flags) do
          assert.truthy(r.out:find("--" .. f.name, 1, true), "missing --" .. f.name .. " of " .. name)
        end
      end
      for _, g in ipairs({ "--api-key", "--base-url", "--json", "--jwt", "--header" }) do
        assert.truthy(r.out:find(g, 1, true), g)
      end
    end)

    it("ugen jobs create --help documents every field of POST /jobs with its type", function()
      local r = ugen({ "jobs", "create", "--help" })
      assert.equal(0, r.code)
      local ep = require("ugen.endpoints").by_name["jobs.create"]
      for _, p in ipairs(ep.params) do
        local flag = "--" .. p.name:gsub("_", "-")
        local line = r.out:match("\n  (" .. flag:gsub("%-", "%%-") .. "[^\n]*)")
        assert.truthy(line, "no line for " .. flag)
      end
      assert.truthy(r.out:find("%-%-segment%-count N%s+%(required; integer; 1%.%.10; alias %-%-segments%)"))
      assert.truthy(r.out:find("%-%-qai%-mode TEXT%s+%(string; one of lenient, standard, strict"))
      assert.truthy(r.out:find("--key-selling-points TEXT", 1, true))
      assert.truthy(r.out:find("--voice-settings JSON", 1, true))
      assert.truthy(r.out:find("--wait", 1, true))
      -- `ugen help jobs create` is the same text
      assert.equal(r.out, ugen({ "help", "jobs", "create" }).out)
    end)

    it("every command answers --help with exit 0", function()
      for name in pairs(require("ugen.cli").commands) do
        local argv = {}
        for w in name:gmatch("%S+") do argv[#argv + 1] = w end
        argv[#argv + 1] = "--help"
        local r = ugen(argv)
        assert.equal(0, r.code, name)
        assert.truthy(r.out:find("^Usage: ugen " .. name:gsub("%-", "%%-")), name)
      end
    end)

    local bad = {
      { { "jobs", "create", "--product-nam", "x" },
        "unknown flag %-%-product%-nam %(did you mean %-%-product%-name%?%)" },
      { { "jobs", "create", "--segments", "abc" }, "%-%-segments expects an integer, got 'abc'" },
      { { "jobs", "create", "--segments", "11" }, "%-%-segments must be between 1 and 10, got 11" },
      { { "jobs", "create", "--max-retries-video", "6" }, "%-%-max%-retries%-video must be between 0 and 5, got 6" },
      { { "jobs", "create", "--qai-mode", "loose" }, "%-%-qai%-mode must be one of lenient, standard, strict" },
      { { "jobs", "create", "--voice-settings", "nope" }, "%-%-voice%-settings expects a JSON object" },
      { { "jobs", "create", "--music-enabled=maybe" }, "%-%-music%-enabled expects true or false" },
      { { "jobs", "create", "--product-name" }, "%-%-product%-name needs a value" },
      { { "jobs", "create", "--product-name", "x", "--image-url", "u" },
        "missing %-%-segment%-count %(or %-%-segments%)" },
      { { "jobs", "get" }, "missing JOB_ID" },
      { { "jobs", "get", "a", "b" }, "unexpected argument 'b'" },
      { { "jobs" }, "'ugen jobs' needs a command: create, get, list, wait, download" },
      { { "jobs", "crate" }, "unknown command 'jobs crate' %(did you mean 'jobs create'%?%)" },
      { { "jbos" }, "unknown command 'jbos' %(did you mean 'jobs'%?%)" },
      { { "--nope", "jobs", "list" }, "unknown flag %-%-nope" },
      { { "jobs", "list", "--page", "0" }, "%-%-page must be at least 1, got 0" },
      { { "jobs", "list" }, "missing API key: pass %-%-api%-key or set UGEN_API_KEY" },
      { { "webhook", "verify", "--secret", "s" }, "missing %-%-timestamp" },
      { { "webhook", "listen", "--port", "70000", "--secret", "s" }, "%-%-port must be between 0 and 65535" },
      { { "webhook", "sign" }, "missing %-%-secret %(or env UGEN_WEBHOOK_SECRET%)" },
      { { "--base-url", "ftp://x", "--api-key", "k", "credits", "balance" }, "base_url must be an http" },
      { { "--api-key", "k", "--header", "nocolon", "credits", "balance" }, "%-%-header expects 'Name: value'" },
    }
    for _, case in ipairs(bad) do
      it("exit 2 and one line on stderr: ugen " .. table.concat(case[1], " "), function()
        local r = ugen(case[1])
        assert.equal(2, r.code)
        assert.equal("", r.out)
        assert.truthy(one_line(r.err), "not one line: " .. r.err)
        assert.truthy(r.err:find("^ugen[^:]*: "), r.err)
        assert.truthy(r.err:find(case[2]), r.err)
      end)
    end

    it("ugen with no command prints the help on stderr and exits 2", function()
      local r = ugen({})
      assert.equal(2, r.code)
      assert.equal("", r.out)
      assert.truthy(r.err:find("missing command", 1, true))
    end)

    it("version", function()
      local r = ugen({ "version" })
      assert.equal(0, r.code)
      assert.truthy(r.out:find("^ugen %d+%.%d+%.%d+\n$"))
      assert.equal(r.out, ugen({ "--version" }).out)
    end)

    it("version --json prints one JSON document (either flag order); other arguments are a usage error", function()
      local r = ugen({ "version", "--json" })
      assert.equal(0, r.code, r.err)
      assert.truthy(one_line(r.out), r.out)
      local v = json.decode(r.out)
      assert.same({ name = "ugen", version = ugen({ "version" }).out:match("^ugen (%S+)\n$"),
        lua = type(jit) == "table" and jit.version or _VERSION }, v)
      assert.same(v, json.decode(ugen({ "--json", "version" }).out))
      local extra = ugen({ "version", "--jsn" })
      assert.equal(2, extra.code)
      assert.equal("", extra.out)
    end)
  end)

  describe("webhook sign / verify / new-secret (local, no server)", function()
    local body = '{"event":"job.completed","job_id":"7c2e51b0-4a9d-4f3e-8b61-0d93a7c4e215",'
      .. '"status":"completed","final_video_url":"https://cdn.example/v.mp4","credits_consumed":140}'

    it("new-secret prints 64 hex characters, a new one each time", function()
      local a, b = ugen({ "webhook", "new-secret" }), ugen({ "webhook", "new-secret" })
      assert.equal(0, a.code)
      assert.truthy(a.out:match("^%x+\n$"))
      assert.equal(65, #a.out)
      assert.not_equal(a.out, b.out)
      local j = json.decode(ugen({ "webhook", "new-secret", "--json" }).out)
      assert.equal(64, #j.secret)
    end)

    it("sign prints the two headers; the signature is HMAC-SHA256 of timestamp.body", function()
      local secret = string.rep("ab", 32)
      local r = ugen({ "webhook", "sign", "--secret", secret, "--timestamp", "1778000000" }, { stdin = body })
      assert.equal(0, r.code)
      local sig = r.out:match("X%-UGen%-Signature: (%x+)\n")
      assert.equal("X-UGen-Timestamp: 1778000000\nX-UGen-Signature: " .. sig .. "\n", r.out)
      assert.equal(webhook.sign(secret, "1778000000", body), sig)
      -- independent check with the openssl command
      tools.need("openssl")
      local f = tmpfile("body")
      write(f, "1778000000." .. body)
      local o = tmpfile("openssl")
      assert.is_true(sh("openssl dgst -sha256 -hmac " .. q(secret) .. " <" .. f .. " >" .. o .. " 2>/dev/null"))
      assert.equal(sig, read(o):match("(%x+)%s*$"))
      -- the secret never appears in the output
      assert.falsy(r.out:find(secret, 1, true))
      assert.falsy(r.err:find(secret, 1, true))
    end)

    it("sign then verify round trip (secret from the env), then tampering fails with kind signature", function()
      local secret = webhook.new_secret()
      local env = { UGEN_WEBHOOK_SECRET = secret }
      local s = json.decode(ugen({ "webhook", "sign", "--json" }, { stdin = body, env = env }).out)
      assert.truthy(s.timestamp:match("^%d+$"))
      local ok = ugen({ "webhook", "verify", "--timestamp", s.timestamp, "--signature", s.signature },
        { stdin = body, env = env })
      assert.equal(0, ok.code)
      assert.truthy(ok.out:find("^verified: job.completed for job 7c2e51b0%-4a9d%-4f3e%-8b61%-0d93a7c4e215\n"))
      assert.truthy(ok.out:find("final_video_url: https://cdn.example/v.mp4", 1, true))
      local j = ugen({ "webhook", "verify", "--json", "--timestamp", s.timestamp, "--signature", s.signature },
        { stdin = body, env = env })
      assert.equal(0, j.code)
      local doc = json.decode(j.out)
      assert.is_true(doc.verified)
      assert.equal("job.completed", doc.event.event)
      assert.equal(140, doc.event.credits_consumed)

      local bad = ugen({ "webhook", "verify", "--timestamp", s.timestamp, "--signature", s.signature },
        { stdin = body:gsub("140", "141"), env = env })
      assert.equal(1, bad.code)
      assert.equal("", bad.out)
      assert.truthy(one_line(bad.err))
      assert.truthy(bad.err:find("^error: signature: .*SIGNATURE_MISMATCH"))
      local wrong = ugen({ "webhook", "verify", "--secret", secret .. "x", "--timestamp", s.timestamp,
        "--signature", s.signature, "--json" }, { stdin = body })
      assert.equal(1, wrong.code)
      assert.equal("signature", json.decode(wrong.out).error.kind)
      assert.falsy(wrong.err:find(secret, 1, true))
    end)

    it("verify checks the timestamp's age unless --ignore-timestamp", function()
      local secret = webhook.new_secret()
      local sig = webhook.sign(secret, "1700000000", body)
      local args = { "webhook", "verify", "--secret", secret, "--timestamp", "1700000000", "--signature", sig }
      local r = ugen(args, { stdin = body })
      assert.equal(1, r.code)
      assert.truthy(r.err:find("^error: signature: .*TIMESTAMP_OUT_OF_TOLERANCE"))
      assert.equal(0, ugen(with(args, "--ignore-timestamp"), { stdin = body }).code)
      assert.equal(0, ugen(with(args, "--tolerance", "1e10"), { stdin = body }).code)
    end)
  end)

  describe("against the sandbox", function()
    local function run(argv, opts)
      opts = opts or {}
      opts.env = api_env(opts.env)
      return ugen(argv, opts)
    end

    it("sandbox status says running, and a second start on the same dir is a clear error", function()
      local st = ugen({ "sandbox", "status", "--dir", SB.dir })
      assert.equal(0, st.code)
      assert.truthy(st.out:find("running", 1, true))
      local again = ugen({ "sandbox", "start", "--port", "0", "--dir", SB.dir })
      assert.equal(1, again.code)
      assert.equal("", again.out)
      assert.truthy(one_line(again.err))
      assert.truthy(again.err:find("^error: "))
    end)

    it("jobs create prints the job id only; jobs get shows it; --json is the job object", function()
      local r = run(job_args("jobs", "create"))
      assert.equal(0, r.code, r.err)
      local id = r.out:match("^(%S+)\n$")
      assert.truthy(id, r.out)
      local g = run({ "jobs", "get", id })
      assert.equal(0, g.code)
      assert.truthy(g.out:find("^job_id: " .. id:gsub("%-", "%%-") .. "\nstatus: "))
      assert.truthy(g.out:find("\ncurrent_stage: ", 1, true))
      local j = json.decode(run({ "jobs", "get", id, "--json" }).out)
      assert.equal(id, j.job_id)
      local c = run(with(job_args("jobs", "create"), "--json"))
      assert.equal(0, c.code)
      assert.truthy(json.decode(c.out).job_id)
      -- --json documents print "/" as "/", not "\/" (one encoder for every --json output)
      assert.truthy(c.out:find('"https://example.com/headphones.jpg"', 1, true), c.out)
      assert.falsy(c.out:find("\\/", 1, true), c.out)
    end)

    it("list flags (repeated or a JSON array) and object flags (JSON) reach the API", function()
      local r = run({ "jobs", "create", "--product-name", "Mug", "--image-url", "https://example.com/mug.jpg",
        "--segments", "2", "--key-selling-points", "keeps coffee hot", "--key-selling-points", "dishwasher safe",
        "--voice-settings", '{"voice_id":"custom-voice-1"}', "--cta-text", "Buy now", "--no-music-enabled", "--json" })
      assert.equal(0, r.code, r.err)
      local job = json.decode(r.out)
      assert.is_false(job.music_enabled)
      assert.equal(20, job.credit_breakdown.voice) -- a custom voice costs 20 credits instead of 15
      local a = run({ "jobs", "create", "--product-name", "Mug", "--image-url", "https://example.com/mug.jpg",
        "--segments", "2", "--key-selling-points", '["a","b"]', "--custom-caption-options", "{}" })
      assert.equal(0, a.code, a.err)
    end)

    it("--idempotency-key makes a repeated create return the same job", function()
      local key = "cli-spec-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e9))
      local a = run(with(job_args("jobs", "create"), "--idempotency-key", key))
      local b = run(with(job_args("jobs", "create"), "--idempotency-key", key))
      assert.equal(0, a.code, a.err)
      assert.equal(a.out, b.out)
      local c = run({ "jobs", "create", "--product-name", "Other", "--image-url", "https://example.com/o.jpg",
        "--segments", "1", "--idempotency-key", key })
      assert.equal(1, c.code)
      assert.truthy(c.err:find("^error: conflict: "), c.err)
    end)

    it("jobs create --max-credits N: over budget is exit 4 and no job; within budget creates it", function()
      local tag = tostring(os.time()) .. "-" .. tostring(math.random(1e9))
      local est = run({ "credits", "estimate", "--segments", "2", "--model", "kling3_std", "--json" })
      assert.equal(0, est.code, est.err)
      local price = json.decode(est.out).total_credits
      local function create(name, ...)
        return run(with({ "jobs", "create", "--product-name", name, "--image-url", "https://example.com/b.jpg",
          "--segments", "2", "--model", "kling3_std" }, ...))
      end
      local function count(name)
        local n = 0
        for _, j in ipairs(json.decode(run({ "jobs", "list", "--all", "--json" }).out)) do
          if j.product_name == name then n = n + 1 end
        end
        return n
      end
      local over = create("budget " .. tag, "--max-credits", tostring(price - 1))
      assert.equal(4, over.code, over.err)
      assert.equal("", over.out)
      assert.truthy(one_line(over.err))
      assert.truthy(over.err:find(("^error: budget: the job is estimated at %d credits, over the budget of %d")
        :format(price, price - 1)), over.err)
      assert.truthy(over.err:find("no job was created", 1, true), over.err)
      local oj = create("budget " .. tag, "--max-credits", "0", "--json")
      assert.equal(4, oj.code)
      local doc = json.decode(oj.out)
      assert.equal("budget", doc.error.kind)
      assert.equal("OVER_BUDGET", doc.error.code)
      assert.equal(0, count("budget " .. tag))
      local ok = create("budget " .. tag, "--max-credits", tostring(price))
      assert.equal(0, ok.code, ok.err)
      assert.truthy(ok.out:match("^%S+\n$"), ok.out)
      assert.equal(1, count("budget " .. tag))
      for _, bad in ipairs({ "-1", "lots" }) do
        local u = create("budget " .. tag, "--max-credits", bad)
        assert.equal(2, u.code, u.err)
        assert.truthy(u.err:find("max%-credits"), u.err)
      end
      assert.equal(1, count("budget " .. tag))
      assert.truthy(run({ "jobs", "create", "--help" }).out:find("--max-credits N", 1, true))
    end)

    it("jobs create --wait, not on a terminal: one plain line per change, then the final video URL", function()
      local r = run(with(job_args("jobs", "create"), "--wait", "--interval", "0.05"))
      assert.equal(0, r.code, r.err)
      local out = lines(r.out)
      assert.equal(2, #out, r.out)
      local id, url = out[1], out[2]
      assert.truthy(url:match("^https?://"), url)
      assert.falsy(r.err:find("\r", 1, true))
      assert.falsy(r.err:find("\27", 1, true))
      local err = lines(r.err)
      assert.equal("created job " .. id .. "; waiting for it", err[1])
      local seen, prev = {}, nil
      for i = 2, #err - 1 do
        local el, stage, pct = err[i]:match("^%[(%d+:%d%d)%] (%a+) %(%d/8%)%s+(%d+)%% %S+$")
        assert.truthy(el, "unexpected progress line: " .. err[i])
        seen[stage] = true
        assert.not_equal(prev, err[i]:sub(8)) -- one line per change
        prev = err[i]:sub(8)
        assert.truthy(tonumber(pct) <= 100)
      end
      assert.truthy(seen.complete or seen.captions, r.err)
      assert.truthy(err[#err]:find("^job " .. id:gsub("%-", "%%-") .. " completed in %d+:%d%d$"), err[#err])
      -- the same URL through jobs get --json
      local j = json.decode(run({ "jobs", "get", id, "--json" }).out)
      assert.equal("completed", j.status)
      assert.equal(url, j.final_video_url)
    end)

    it("jobs create --wait on a terminal: one line rewritten in place with a bar", function()
      local r = run(with(job_args("jobs", "create"), "--wait", "--interval", "0.05"), { env = { UGEN_TTY = "1" } })
      assert.equal(0, r.code, r.err)
      assert.truthy(r.err:find("\r\27[K", 1, true))
      assert.truthy(r.err:find("%[#+%-*%]"))
      assert.truthy(r.err:find("complete %(8/8%)%s+%[########################%] 100%%"))
      -- every update rewrites the same line: only the created/completed lines and the end of the bar line
      assert.equal(3, #lines(r.err), r.err)
    end)

    it("detects a real terminal (a pty from script(1)) without UGEN_TTY", function()
      tools.need("script")    -- util-linux's script(1), from bsdutils: missing is a failure
      local base = tmpfile("pty")
      local inner = string.format("%s %s %s %s", env_prefix(api_env()), INTERP, LAUNCHER,
        argv_text(with(job_args("jobs", "create"), "--wait", "--interval", "0.05")))
      sh(string.format("script -qec %s /dev/null >%s.out 2>&1 </dev/null; echo $? >%s.rc", q(inner), base, base))
      local out = read(base .. ".out")
      assert.equal(0, tonumber(read(base .. ".rc")), out)
      assert.truthy(out:find("\r\27[Kcomplete (8/8)", 1, true), out)
      -- on a terminal and not: the same progress comes out plain when stderr is a file
      local r = run(with(job_args("jobs", "create"), "--wait", "--interval", "0.05"))
      assert.falsy(r.err:find("\27[K", 1, true))
    end)

    it("the progress line fits the terminal (40 and 120 columns, a real pty): no wrap, no repeated lines", function()
      tools.need("script")
      for _, cols in ipairs({ 40, 120 }) do
        local base = tmpfile("pty" .. cols)
        -- stty sets the pty's size (what `ugen` reads from its stderr); COLUMNS unset
        local inner = string.format("stty cols %d rows 24 && env -u COLUMNS %s %s %s %s", cols,
          env_prefix(api_env()), INTERP, LAUNCHER, argv_text(with(job_args("jobs", "create"), "--wait",
          "--interval", "0.05")))
        sh(string.format("script -qec %s /dev/null >%s.out 2>&1 </dev/null; echo $? >%s.rc", q(inner), base, base))
        local out = read(base .. ".out")
        assert.equal(0, tonumber(read(base .. ".rc")), out)
        out = out:gsub("\r\n", "\n")
        local bars, last = 0, nil
        for _, l in ipairs(lines(out)) do
          if l:find("\27[K", 1, true) then
            -- every rewrite of the line is shorter than the terminal: nothing wraps onto a line that
            -- the next "\r\27[K" cannot erase
            for piece in (l .. "\r\27[K"):gmatch("(.-)\r\27%[K") do
              assert.truthy(#piece <= cols - 1, cols .. " columns: a " .. #piece .. "-column line: " .. piece)
              if piece ~= "" then last = piece end
            end
            bars = bars + 1
          end
        end
        assert.equal(1, bars, out) -- one progress line, rewritten in place
        assert.truthy(last:find("^complete %(8/8%)"), last)
        assert.truthy(last:find("100%", 1, true), last)
        if cols >= 80 then
          assert.truthy(last:find("[########################]", 1, true), last) -- wide: the whole bar
        end
        assert.equal(5, #lines(out), out) -- job id, created, the progress line, completed, URL
      end
    end)

    it("--wait --json prints the final job as one JSON document; --quiet prints no progress", function()
      local r = run(with(job_args("jobs", "create"), "--wait", "--interval", "0.05", "--json", "--quiet"))
      assert.equal(0, r.code, r.err)
      assert.equal("", r.err)
      local j = json.decode(r.out)
      assert.equal("completed", j.status)
      assert.truthy(j.final_video_url)
    end)

    it("jobs wait follows an existing job; jobs wait --timeout ends with kind timeout", function()
      local id = run(job_args("jobs", "create")).out:match("^(%S+)")
      local short = run({ "jobs", "wait", id, "--interval", "0.05", "--timeout", "0.1" })
      assert.equal(1, short.code)
      assert.truthy(short.err:find("\nerror: timeout: ", 1, true) or short.err:find("^error: timeout: "), short.err)
      local r = run({ "jobs", "wait", id, "--interval", "0.05" })
      assert.equal(0, r.code, r.err)
      assert.truthy(r.out:match("^https?://%S+\n$"), r.out)
    end)

    it("jobs create says each retry on stderr (429: 'rate limited, retrying in N s'), same key: one job", function()
      local tag = tostring(os.time()) .. "-" .. tostring(math.random(1e9))
      local rl = run({ "jobs", "create", "--product-name", "rl " .. tag, "--image-url", "https://example.com/a.jpg",
        "--segments", "1", "--header", "X-Sandbox-Fault: status=429;retry_after=1;count=1;key=rl-" .. tag })
      assert.equal(0, rl.code, rl.err)
      assert.truthy(rl.out:match("^%S+\n$"), rl.out)
      assert.equal("rate limited, retrying in 1 s (retry 1 of 2)\n", rl.err)
      -- the first attempt created the job, then the connection broke: the retry (same
      -- idempotency key) gets that job, no second one
      local name = "reset " .. tag
      local rs = run({ "jobs", "create", "--product-name", name, "--image-url", "https://example.com/a.jpg",
        "--segments", "1", "--header", "X-Sandbox-Fault: reset_after;count=1;key=rs-" .. tag })
      assert.equal(0, rs.code, rs.err)
      assert.truthy(rs.err:find("^network: .*, retrying in [%d.]+ s %(retry 1 of 2%)\n$"), rs.err)
      local all = json.decode(run({ "jobs", "list", "--all", "--json" }).out)
      local same = 0
      for _, j in ipairs(all) do
        if j.product_name == name then same = same + 1; assert.equal(rs.out, j.job_id .. "\n") end
      end
      assert.equal(1, same)
      -- --max-retries 0: no retry, no message but the error
      local none = run({ "--max-retries", "0", "jobs", "create", "--product-name", "rl0 " .. tag, "--image-url",
        "https://example.com/a.jpg", "--segments", "1", "--header", "X-Sandbox-Fault: status=429;retry_after=1" })
      assert.equal(1, none.code)
      assert.truthy(none.err:find("^error: rate_limit: [^\n]*\n$"), none.err)
    end)

    it("jobs wait A B ...: each job printed as it ends; exit 3 when one failed; --json: one array", function()
      local ok1 = run(job_args("jobs", "create")).out:match("^(%S+)")
      local ok2 = run(job_args("jobs", "create")).out:match("^(%S+)")
      local bad = run({ "jobs", "create", "--product-name", "Headphones [fail]", "--image-url",
        "https://example.com/headphones.jpg", "--segments", "1" }).out:match("^(%S+)")
      assert.truthy(ok1 and ok2 and bad)
      local both = run({ "jobs", "wait", ok1, ok2, "--interval", "0.05" })
      assert.equal(0, both.code, both.err)
      local got = {}
      for _, l in ipairs(lines(both.out)) do
        local id, url = l:match("^(%S+) completed (https?://%S+)$")
        assert.truthy(id, l)
        got[id] = url
      end
      assert.truthy(got[ok1] and got[ok2], both.out)
      assert.equal(2, #lines(both.out))
      assert.truthy(both.err:find("^waiting for 2 jobs\n"), both.err)
      local mixed = run({ "jobs", "wait", ok1, bad, "--interval", "0.05", "-q" })
      assert.equal(3, mixed.code, mixed.err)
      assert.equal(ok1 .. " completed " .. got[ok1] .. "\n", mixed.out)
      assert.truthy(mixed.err:find("^error: job_failed: job " .. bad:gsub("%-", "%%-") .. " failed"), mixed.err)
      local j = run({ "jobs", "wait", ok1, bad, "00000000-0000-4000-8000-000000000000", "--interval", "0.05",
        "--json", "-q" })
      assert.equal(3, j.code, j.err)
      local doc = json.decode(j.out)
      assert.equal(3, #doc)
      assert.equal("completed", doc[1].status)
      assert.equal(bad, doc[2].job_id)
      assert.equal("job_failed", doc[2].error.kind)
      assert.equal("not_found", doc[3].error.kind)
      local nf = run({ "jobs", "wait", ok1, "00000000-0000-4000-8000-000000000000", "--interval", "0.05", "-q" })
      assert.equal(1, nf.code, nf.err)
    end)

    it("a failing job exits 3 with error kind job_failed", function()
      local r = run({ "jobs", "create", "--product-name", "Headphones [fail]", "--image-url",
        "https://example.com/headphones.jpg", "--segments", "1", "--wait", "--interval", "0.05" })
      assert.equal(3, r.code, r.out .. r.err)
      assert.truthy(r.err:find("\nerror: job_failed: job %S+ failed"), r.err)
      local j = run({ "jobs", "create", "--product-name", "Headphones [fail]", "--image-url",
        "https://example.com/headphones.jpg", "--segments", "1", "--wait", "--interval", "0.05", "--json", "-q" })
      assert.equal(3, j.code)
      local doc = json.decode(j.out)
      assert.equal("job_failed", doc.error.kind)
      assert.equal("failed", doc.error.job.status)
    end)

    it("API errors exit 1 and name the kind; the API key never shows", function()
      local auth = ugen({ "credits", "balance" }, { env = { UGEN_BASE_URL = SB.base_url,
        UGEN_API_KEY = "ugen_sk_wrong_key_1234567890" } })
      assert.equal(1, auth.code)
      assert.truthy(one_line(auth.err))
      assert.truthy(auth.err:find("^error: auth: .*HTTP 401"), auth.err)
      assert.falsy(auth.err:find("ugen_sk_wrong_key_1234567890", 1, true))
      local nf = run({ "jobs", "get", "00000000-0000-4000-8000-000000000000" })
      assert.equal(1, nf.code)
      assert.truthy(nf.err:find("^error: not_found: .*HTTP 404"), nf.err)
      local rl = run(with(job_args("--max-retries", "0", "--header", "X-Sandbox-Fault: status=429;retry_after=3",
        "jobs", "create")))
      assert.equal(1, rl.code)
      assert.truthy(rl.err:find("^error: rate_limit: .*HTTP 429.*retry after 3s"), rl.err)
      assert.truthy(one_line(rl.err), rl.err) -- a 429 created nothing: no retry hint
      -- a 5xx may hide a created job: the hint gives the idempotency key to retry with
      local five = run(job_args("--max-retries", "0", "--header", "X-Sandbox-Fault: status=503", "jobs", "create"))
      assert.equal(1, five.code)
      assert.truthy(five.err:find("^error: api: .*HTTP 503"), five.err)
      local key = five.err:match("\nhint: the job may exist already; retry with %-%-idempotency%-key (%S+) ")
      assert.truthy(key, five.err)
      local again = run(with(job_args("jobs", "create"), "--idempotency-key", key))
      assert.equal(0, again.code, again.err)
      local v = run({ "jobs", "create", "--product-name", "x", "--image-url", "https://example.com/x.jpg",
        "--segments", "2", "--model", "veo3_fast", "--segment-duration", "5", "--json" })
      assert.equal(1, v.code)
      assert.truthy(v.err:find("^error: validation: "), v.err)
      local doc = json.decode(v.out)
      assert.equal("validation", doc.error.kind)
      assert.equal(422, doc.error.status)
      for _, r in ipairs({ auth, nf, rl, v }) do
        assert.falsy((r.out .. r.err):find(SB.api_key, 1, true))
      end
    end)

    it("a network failure exits 1 with kind network", function()
      local r = ugen({ "--max-retries", "0", "credits", "balance" },
        { env = { UGEN_BASE_URL = "http://127.0.0.1:9/api/v1", UGEN_API_KEY = "k" } })
      assert.equal(1, r.code)
      assert.truthy(r.err:find("^error: network: "), r.err)
    end)

    it("flags beat the environment", function()
      local r = ugen({ "--base-url", SB.base_url, "--api-key", SB.api_key, "credits", "balance" },
        { env = { UGEN_BASE_URL = "http://127.0.0.1:9/api/v1", UGEN_API_KEY = "wrong" } })
      assert.equal(0, r.code, r.err)
      assert.truthy(r.out:find("available_credits: %d+"))
    end)

    it("credits estimate (the docs' values), balance and transactions", function()
      local r = run({ "credits", "estimate", "--segments", "3", "--model", "veo3_fast", "--variant", "i2v",
        "--music-enabled", "--voice-enabled" })
      assert.equal(0, r.code, r.err)
      local j = json.decode(run({ "credits", "estimate", "--segments", "3", "--model", "veo3_fast", "--variant",
        "i2v", "--music-enabled", "--voice-enabled", "--json" }).out)
      assert.equal("table", type(j))
      for k, v in pairs(j) do
        if type(v) == "number" then
          assert.truthy(r.out:find("\n?" .. k .. ": " .. string.format("%d", v)), k)
        end
      end
      local b = json.decode(run({ "credits", "balance", "--json" }).out)
      assert.equal(b.credit_balance - b.credit_reserved, b.available_credits)
      local t = run({ "credits", "transactions", "--page-size", "2" })
      assert.equal(0, t.code, t.err)
      assert.truthy(t.out:find("^TYPE%s+AMOUNT"))
      assert.truthy(t.err:find("^page 1 of %d+"))
      local all = json.decode(run({ "credits", "transactions", "--all", "--json" }).out)
      local first = json.decode(run({ "credits", "transactions", "--json" }).out)
      assert.equal(first.total, #all)
    end)

    it("jobs list: a table of one page, --json the envelope, --all every job", function()
      local r = run({ "jobs", "list", "--page-size", "2" })
      assert.equal(0, r.code, r.err)
      local rows = lines(r.out)
      assert.truthy(rows[1]:find("^JOB_ID%s+STATUS%s+STAGE%s+PROGRESS"))
      assert.equal(3, #rows)
      local env = json.decode(run({ "jobs", "list", "--json", "--page-size", "2" }).out)
      assert.equal(2, #env.items)
      assert.equal(1, env.page)
      local all = json.decode(run({ "jobs", "list", "--all", "--json" }).out)
      assert.equal(env.total, #all)
    end)

    it("jobs download saves the final video (refusing to overwrite without --force)", function()
      local id = run(with(job_args("jobs", "create"), "--wait", "--interval", "0.05", "-q")).out:match("^(%S+)")
      local path = tmpfile("video.mp4")
      local r = run({ "jobs", "download", id, "-o", path })
      assert.equal(0, r.code, r.err)
      assert.equal(path .. "\n", r.out)
      local data = read(path)
      assert.truthy(#data > 8)
      assert.equal("ftyp", data:sub(5, 8))
      local again = run({ "jobs", "download", id, "-o", path })
      assert.equal(1, again.code)
      assert.truthy(again.err:find("^error: io: .*%-%-force.*FILE_EXISTS"), again.err)
      local j = run({ "jobs", "download", id, "-o", path, "--force", "--json" })
      assert.equal(0, j.code)
      assert.equal(#data, json.decode(j.out).size)
      assert.falsy(j.err:find("\27", 1, true)) -- not a terminal: no progress line
      -- on a terminal: a bar that ends at 100 %
      local t = run({ "jobs", "download", id, "-o", path, "--force" }, { env = { UGEN_TTY = "1" } })
      assert.equal(0, t.code, t.err)
      assert.truthy(t.err:find("\r\27[K[########################] 100%", 1, true), t.err)
      assert.truthy(t.err:find("\nsaved %d+%.%d kB to "), t.err)
      -- a job without a video yet
      local pending = run(job_args("jobs", "create")).out:match("^(%S+)")
      local none = run({ "jobs", "download", pending, "-o", tmpfile("none.mp4") })
      assert.equal(1, none.code)
      assert.truthy(none.err:find("\nerror: validation: .*NO_VIDEO"), none.err)
    end)

    it("webhooks set / get / delete; the secret is never printed", function()
      local secret = webhook.new_secret()
      local s = run({ "webhooks", "set", "--url", "http://127.0.0.1:9/hook", "--secret", secret })
      assert.equal(0, s.code, s.err)
      assert.equal("webhook set: http://127.0.0.1:9/hook (deliveries signed)\n", s.out)
      local g = run({ "webhooks", "get" })
      assert.equal(0, g.code)
      assert.truthy(g.out:find("webhook_url: http://127.0.0.1:9/hook", 1, true))
      local gj = json.decode(run({ "webhooks", "get", "--json" }).out)
      assert.is_true(gj.webhook_configured)
      for _, r in ipairs({ s, g }) do assert.falsy((r.out .. r.err):find(secret, 1, true)) end
      local d = run({ "webhooks", "delete" })
      assert.equal(0, d.code, d.err)
      assert.equal("webhook removed\n", d.out)
      assert.is_false(json.decode(run({ "webhooks", "get", "--json" }).out).webhook_configured)
    end)

    -- The account may have other jobs that deliver too: wait for this job's event.
    local function wait_event(l, id, timeout)
      local head = "received job.completed for job " .. id .. " (signature verified"
      local deadline = now() + timeout
      while now() < deadline do
        if l.out():find(head, 1, true) then return true end
        sleep(0.05)
      end
      return false
    end

    it("webhook listen receives and verifies the sandbox's signed job.completed delivery", function()
      local secret = webhook.new_secret()
      local l = ugen_bg({ "webhook", "listen", "--port", "0", "--timeout", "30" },
        { env = { UGEN_WEBHOOK_SECRET = secret } })
      local url = l.wait_for("listening on (http://127%.0%.0%.1:%d+/)\n", 10)
      assert.truthy(url, l.out() .. l.err())
      assert.equal(0, run({ "webhooks", "set", "--url", url }, { env = { UGEN_WEBHOOK_SECRET = secret } }).code)
      local r = run(with(job_args("jobs", "create"), "--wait", "--interval", "0.05", "-q"))
      assert.equal(0, r.code, r.err)
      local id = r.out:match("^(%S+)")
      local got = wait_event(l, id, 20)
      run({ "webhooks", "delete" })
      l.kill()
      local out = l.out()
      assert.truthy(got, out .. l.err())
      local block = out:match("received job%.completed for job " .. id:gsub("%-", "%%-")
        .. " %(signature verified%)\n(.-)\n[^ ]") or out:match("received job%.completed for job "
        .. id:gsub("%-", "%%-") .. " %(signature verified%)\n(.*)$")
      assert.truthy(block, out)
      assert.truthy(block:find("  status: completed\n", 1, true))
      assert.truthy(block:find("  final_video_url: http", 1, true))
      assert.falsy((out .. l.err()):find(secret, 1, true))
    end)

    it("a per-job --webhook-url gets the delivery; --fail-first makes the sandbox retry it", function()
      local secret = webhook.new_secret()
      -- the account's secret signs the deliveries; its URL is a dead one
      assert.equal(0, run({ "webhooks", "set", "--url", "http://127.0.0.1:9/unused", "--secret", secret }).code)
      local l = ugen_bg({ "webhook", "listen", "--secret", secret, "--fail-first", "1", "--count", "1",
        "--timeout", "30" })
      local url = l.wait_for("listening on (http://127%.0%.0%.1:%d+/)\n", 10)
      assert.truthy(url, l.out() .. l.err())
      local r = run(with(job_args("jobs", "create"), "--webhook-url", url, "--wait", "--interval", "0.05", "-q"))
      assert.equal(0, r.code, r.err)
      local id = r.out:match("^(%S+)")
      local code = l.wait(20)
      run({ "webhooks", "delete" })
      assert.equal(0, code, l.out() .. l.err())
      assert.truthy(l.err():find("answered 503 to a verified job.completed delivery for job " .. id, 1, true),
        l.err())
      assert.truthy(l.out():find("received job.completed for job " .. id .. " (signature verified)", 1, true),
        l.out())
    end)

    it("webhook listen answers 401 to a bad signature, 405/404 to other requests, 200 to a good one", function()
      local secret = webhook.new_secret()
      local l = ugen_bg({ "webhook", "listen", "--secret", secret, "--count", "1", "--timeout", "20", "--json" })
      local url = l.wait_for('"listening":"(http:[^"]+)"', 10)
      assert.truthy(url, l.out() .. l.err())
      url = url:gsub("\\/", "/")
      local body = '{"event":"job.failed","job_id":"j-1","status":"failed","error_message":"QA"}'
      local bf = tmpfile("body")
      write(bf, body)
      local function curl(args)
        local o = tmpfile("curl")
        sh("curl -s -o /dev/null -w '%{http_code}' " .. args .. " >" .. o)
        return tonumber(read(o))
      end
      local ts = tostring(os.time())
      local good = webhook.sign(secret, ts, body)
      local bad = webhook.sign(secret .. "x", ts, body)
      assert.equal(401, curl("-H 'X-UGen-Timestamp: " .. ts .. "' -H 'X-UGen-Signature: " .. bad
        .. "' --data-binary @" .. bf .. " " .. url))
      assert.equal(401, curl("--data-binary @" .. bf .. " " .. url))
      assert.equal(405, curl(url))
      assert.equal(404, curl("-H 'X-UGen-Timestamp: " .. ts .. "' -H 'X-UGen-Signature: " .. good
        .. "' --data-binary @" .. bf .. " " .. url .. "elsewhere"))
      assert.equal(200, curl("-H 'X-UGen-Timestamp: " .. ts .. "' -H 'X-UGen-Signature: " .. good
        .. "' --data-binary @" .. bf .. " " .. url))
      assert.equal(0, l.wait(10))
      local events = lines(l.out())
      assert.equal(2, #events, l.out())
      local ev = json.decode(events[2])
      assert.is_true(ev.verified)
      assert.equal("job.failed", ev.event.event)
      assert.truthy(l.err():find("rejected delivery from 127.0.0.1: signature: .*answered 401"))
    end)

    it("webhook listen --count with --timeout exits 1 (kind timeout) when nothing arrives", function()
      local r = ugen({ "webhook", "listen", "--secret", "s3cr3t-value", "--count", "1", "--timeout", "0.3" })
      assert.equal(1, r.code)
      assert.truthy(r.out:find("^listening on http://127%.0%.0%.1:%d+/\n$"))
      assert.truthy(r.err:find("^error: timeout: received 0 of 1 event"), r.err)
    end)

    it("--json gives one JSON document on stdout for every argument-free command", function()
      for _, argv in ipairs({
        { "credits", "balance" }, { "credits", "transactions" }, { "jobs", "list" }, { "webhooks", "get" },
        { "models", "list" }, { "tenant", "get" }, { "music", "list" }, { "music", "catalog" },
        { "templates", "list" }, { "sandbox", "status", "--dir", SB.dir },
      }) do
        local r = run(with(argv, "--json"))
        local name = table.concat(argv, " ")
        assert.equal(0, r.code, name .. ": " .. r.err)
        assert.truthy(one_line(r.out), name)
        assert.equal("table", type(json.decode(r.out)), name)
      end
      -- bare arrays stay arrays, even when empty
      assert.truthy(run({ "music", "list", "--json" }).out:match("^%["))
    end)

    it("generated commands reach the other endpoints (models, templates, music, tenant, uploads)", function()
      local m = run({ "models", "list", "--json" })
      assert.equal(0, m.code, m.err)
      local models = json.decode(m.out)
      assert.truthy(#models > 0)
      local id = models[1].id or models[1].model_id
      if id then assert.equal(0, run({ "models", "get", id }).code) end
      local t = run({ "templates", "create", "--name", "cli spec", "--config", '{"segment_count":3}', "--json" })
      assert.equal(0, t.code, t.err)
      assert.equal(0, run({ "templates", "list" }).code)
      assert.equal(0, run({ "music", "catalog", "--mood", "upbeat", "--limit", "2" }).code)
      assert.equal(0, run({ "tenant", "get" }).code)
      local up = run({ "uploads", "product-image", "--file", "sandbox/static/image.png", "--json" })
      assert.equal(0, up.code, up.err)
      assert.truthy(json.decode(up.out).url)
      local missing = run({ "uploads", "product-image", "--file", TMP .. "/nope.png" })
      assert.equal(1, missing.code)
      assert.truthy(missing.err:find("^error: validation: "), missing.err)
    end)
  end)

  describe("sandbox start / stop / status", function()
    it("prints the two export lines, stops, and reports not running", function()
      local dir = SB_BASE .. "/sb2"
      local r = ugen({ "sandbox", "start", "--port", "0", "--dir", dir })
      assert.equal(0, r.code, r.err)
      local out = lines(r.out)
      assert.equal(2, #out)
      assert.truthy(out[1]:match("^export UGEN_BASE_URL=http://127%.0%.0%.1:%d+/api/v1$"), out[1])
      assert.truthy(out[2]:match("^export UGEN_API_KEY=%S+$"), out[2])
      local raw = ugen({ "sandbox", "status", "--dir", dir, "--json" }).out
      local st = json.decode(raw)
      assert.is_true(st.running)
      -- "/" is not escaped in --json output (JSON does not require it): the URL is greppable as is
      assert.truthy(raw:find('"' .. st.base_url .. '"', 1, true), raw)
      assert.truthy(st.base_url:find("^http://127%.0%.0%.1:%d+/api/v1$"), raw)
      assert.falsy(raw:find("\\/", 1, true), raw)
      local s = ugen({ "sandbox", "stop", "--dir", dir })
      assert.equal(0, s.code, s.err)
      local after = ugen({ "sandbox", "status", "--dir", dir })
      assert.equal(1, after.code)
      assert.truthy(after.out:find("not running", 1, true))
    end)
  end)

  describe("make demo (scripts/demo.sh)", function()
    -- The demo makes its temp dir (sandbox state, listener output) under
    -- TMPDIR: a dir of this spec, so leftovers can be checked precisely.
    local function demo_env(tmpdir)
      return string.format("%s TMPDIR=%s LUA=%s UGEN_CLI=%s", CLEAN_ENV, q(tmpdir), INTERP,
        q(INTERP .. " " .. LAUNCHER))
    end
    local function leftovers(tmpdir)
      -- processes whose command line names the dir (the sandbox's nginx does: -p DIR)
      local procs = {}
      local p = io.popen("ls /proc")
      for pid in p:read("*a"):gmatch("%d+") do
        local cmdline = read("/proc/" .. pid .. "/cmdline")
        if cmdline and cmdline:find(tmpdir, 1, true) then procs[#procs + 1] = pid .. " " .. cmdline end
      end
      p:close()
      procs = table.concat(procs, "\n")
      local l = tmpfile("ls")
      sh("ls -A " .. q(tmpdir) .. " >" .. l .. " 2>/dev/null")
      return procs, read(l) or ""
    end
    local function new_tmpdir()
      local d = tmpfile("demo-tmp")
      assert(sh("mkdir -p " .. q(d)))
      return d
    end

    it("runs the docs' main job end to end in under a minute on its own sandbox and cleans up", function()
      local dtmp = new_tmpdir()
      local base = tmpfile("demo")
      local t0 = now()
      -- a stale sandbox's exports in the caller's shell: the demo ignores them, says so, and
      -- runs on its own sandbox (nothing listens on port 9)
      local stale_key = "ugen_sk_test_stale_0123456789abcdef"
      sh(string.format("%s UGEN_BASE_URL=http://127.0.0.1:9/api/v1 UGEN_API_KEY=%s UGEN_DEMO_SPEED=4"
        .. " UGEN_DEMO_INTERVAL=0.1 sh scripts/demo.sh >%s.out 2>%s.err; echo $? >%s.rc",
        demo_env(dtmp), stale_key, base, base, base))
      local elapsed = now() - t0
      local out, err = read(base .. ".out"), read(base .. ".err")
      assert.equal(0, tonumber(read(base .. ".rc")),
        "demo failed:\n" .. out:sub(-2500) .. "\n--- stderr:\n" .. err:sub(-2500))
      assert.truthy(elapsed < 60, "demo took " .. elapsed .. " s")
      assert.truthy(out:find("^lua%-ugen demo: [^\n]*%(mode: sandbox%)\n"), out)
      assert.truthy(err:find("^demo: ignoring UGEN_BASE_URL/UGEN_API_KEY/UGEN_JWT from the environment "
        .. "%(UGEN_BASE_URL=http://127%.0%.0%.1:9/api/v1%): the demo starts its own sandbox"), err)
      assert.falsy((out .. err):find(stale_key, 1, true))
      for i = 1, 7 do assert.truthy(out:find("\n== " .. i .. "/7 ", 1, true), "step " .. i) end
      local id = out:match("\n   job id:%s+(%S+)\n")
      local url = out:match("\n   final video URL: (https?://%S+)\n")
      assert.truthy(id and url, out)
      -- progress through every stage (plain lines: not a terminal)
      for _, stage in ipairs(require("ugen.endpoints").stages) do
        assert.truthy(err:find("%] " .. stage .. " %(%d/8%)"), "stage " .. stage .. " not shown:\n" .. err)
      end
      assert.truthy(out:find("   received job.completed for job " .. id:gsub("%-", "%%-")
        .. " %(signature verified%)\n"), out)
      assert.truthy(out:find("\n     final_video_url: " .. url:gsub("%p", "%%%0") .. "\n"), out)
      assert.truthy(out:find("\n   total_credits: %d+\n") or out:find("\n   [%w_]*total[%w_]*: %d+\n"), out)
      assert.truthy(out:find("\ndemo OK in %d+ s: job " .. id:gsub("%-", "%%-") .. " completed"), out)
      local procs, files = leftovers(dtmp)
      assert.equal("", procs, "processes of the demo are still running")
      assert.equal("", files, "the demo left files behind")
    end)

    it("a failing step ends it with a clear line and a non-zero status", function()
      local dtmp = new_tmpdir()
      local base = tmpfile("demo-fail")
      sh(string.format("%s UGEN_SANDBOX_ROOT=%s sh scripts/demo.sh >%s.out 2>%s.err; echo $? >%s.rc",
        demo_env(dtmp), q(dtmp .. "/no-such-sandbox"), base, base, base))
      assert.equal(1, tonumber(read(base .. ".rc")))
      local err = read(base .. ".err")
      assert.truthy(err:find("error: sandbox: sandbox files not found", 1, true), err)
      assert.truthy(err:find("\ndemo FAILED at step: 1/7 starting the local sandbox", 1, true), err)
      local procs, files = leftovers(dtmp)
      assert.equal("", procs)
      assert.equal("", files)
    end)

    it("cleans up the sandbox and the listener on Ctrl-C", function()
      local dtmp = new_tmpdir()
      local base = tmpfile("demo-int")
      -- own process group, like a terminal's foreground job
      sh(string.format("setsid sh -c %s &",
        q(string.format("echo $$ >%s.pid; exec %s UGEN_DEMO_SPEED=0.5 sh scripts/demo.sh >%s.out 2>%s.err",
          base, demo_env(dtmp), base, base))))
      local deadline = now() + 30
      local pid
      repeat
        pid = tonumber((read(base .. ".pid") or ""):match("%d+"))
        local out = read(base .. ".out") or ""
        if pid and out:find("== 4/7", 1, true) and (read(base .. ".err") or ""):find("%] agents") then break end
        sleep(0.1)
      until now() > deadline
      assert.truthy(pid)
      local out = read(base .. ".out") or ""
      local listen = out:match("listening on http://127%.0%.0%.1:(%d+)/")
      assert.truthy(listen, out)
      sh("kill -INT -" .. pid)
      deadline = now() + 20
      while pid_alive(pid) and now() < deadline do sleep(0.1) end
      assert.falsy(pid_alive(pid), "demo still running after Ctrl-C")
      local err = read(base .. ".err") or ""
      assert.truthy(err:find("demo FAILED at step: 4/7", 1, true), err)
      -- the listener's port is closed and no sandbox of the demo is left
      assert.falsy(sh("curl -s -o /dev/null --max-time 2 http://127.0.0.1:" .. listen .. "/"))
      local procs, files = leftovers(dtmp)
      assert.equal("", procs, "processes of the demo are still running")
      assert.equal("", files, "the demo left files behind")
    end)
  end)
end)
