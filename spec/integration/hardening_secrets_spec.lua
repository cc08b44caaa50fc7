-- Issue #12 item 1: no configured secret ever reaches an error or the CLI's
-- output. A hostile loopback server (spec/support/echo_api_httpd.lua) echoes
-- every credential and body it was ever sent into every field an error can
-- carry (message, code, details at depth and as a key, the 422 `detail` list,
-- X-Request-Id) and, on request, into a success body.
local ugen = require "ugen"
local echo_api = require "support.echo_api"
local util = require "support.util"

local JWT = "eyJhbGciOiJIUzI1NiJ9.hostile-test-jwt.c2lnbmF0dXJlLWp3dA"
local KEY = "ugen_sk_test_hostile_api_key_0123456789"
local HOOK = "whsec_0123456789abcdef0123456789abcdef"
local HOOK2 = "second-webhook-secret-rotated-later"
local OK = { headers = { ["X-Hostile"] = "ok" } }

-- Every string reachable from v (keys too), and tostring(v), in one text.
local function all_text(v)
  local out, seen = {}, {}
  local function walk(x, depth)
    if type(x) == "string" then out[#out + 1] = x
    elseif type(x) == "number" then out[#out + 1] = tostring(x)
    elseif type(x) == "table" and not seen[x] and depth < 40 then
      seen[x] = true
      for k, y in pairs(x) do walk(k, depth + 1); walk(y, depth + 1) end
    end
  end
  walk(v, 0)
  if type(v) == "table" then out[#out + 1] = tostring(v) end
  return table.concat(out, "\n")
end

local function assert_clean(v, secrets, what)
  local text = all_text(v)
  for _, s in ipairs(secrets) do
    assert.is_nil(text:find(s, 1, true), (what or "error") .. " leaks " .. s .. ":\n" .. text)
  end
  return text
end

describe("secrets never reach an error (hostile server echoing credentials)", function()
  -- a fresh server per test: it echoes only what this test's client sent
  local srv
  before_each(function() srv = echo_api.start() end)
  after_each(function() srv.stop() end)

  local function client(o)
    o.base_url = o.base_url or srv.base
    o.max_retries = 0
    return ugen.new(o)
  end

  local CASES = {
    { "jwt only", { jwt = JWT } },
    { "api_key only", { api_key = KEY } },
    { "jwt and api_key", { jwt = JWT, api_key = KEY } },
  }
  for _, case in ipairs(CASES) do
    it(case[1] .. ": message, code, details (nested and as keys), fields, request_id, tostring", function()
      local c = client{ jwt = case[2].jwt, api_key = case[2].api_key }
      local res, err = c.jobs:get("job1")
      assert.is_nil(res)
      -- the server did echo (so the test can fail): the scrubbed places say so
      assert.matches("<redacted>", err.message, 1, true)
      assert.matches("<redacted>", tostring(err.request_id), 1, true)
      assert.is_table(err.details)
      assert_clean(err, { JWT, KEY })
      -- the raw escape hatch goes through the same redaction
      local _, err2 = c:request("GET", "/jobs/{id}", { id = "job2" })
      assert.matches("<redacted>", err2.message, 1, true)
      assert_clean(err2, { JWT, KEY })
    end)
  end

  it("webhook secrets the client has sent are scrubbed from later errors too", function()
    local c = client{ jwt = JWT }
    -- accepted by the server, which remembers the body...
    assert(c.webhooks:set({ webhook_url = "https://example.com/hook", webhook_secret = HOOK }, OK))
    -- ...and echoes it into the error of an unrelated call afterwards
    local _, err = c.jobs:get("job1")
    assert.matches("<redacted>", err.message, 1, true)
    assert_clean(err, { JWT, HOOK })
    -- a rotation: the new secret, refused with the echo at once
    local _, err2 = c.webhooks:set{ webhook_url = "https://example.com/hook", webhook_secret = HOOK2 }
    assert_clean(err2, { JWT, HOOK, HOOK2 })
    -- through client:request as well
    local _, err3 = c:request("PUT", "/tenants/me/webhook",
      { webhook_url = "https://example.com/h", webhook_secret = HOOK2 .. "-raw" })
    assert_clean(err3, { JWT, HOOK, HOOK2, HOOK2 .. "-raw" })
  end)

  it("a job's error_message echoing the JWT (jobs:wait -> job_failed) is scrubbed, err.job included", function()
    local c = client{ jwt = JWT }
    local _, err = c.jobs:get("x")           -- the server now remembers the JWT
    assert_clean(err, { JWT })
    local job, werr = c.jobs:wait("x", { interval = 0.01, timeout = 5, headers = { ["X-Hostile"] = "echo-failed" } })
    assert.is_nil(job)
    assert.equal("job_failed", werr.kind)
    assert.matches("<redacted>", werr.message, 1, true)
    assert.matches("<redacted>", werr.job.error_message, 1, true)
    assert_clean(werr, { JWT })
    job, werr = c.jobs:wait("x", { interval = 0.01, timeout = 0.3, headers = { ["X-Hostile"] = "echo-ok" } })
    -- an echo-ok body is no job: it keeps polling until the deadline, then WAIT_TIMEOUT with err.job
    assert.is_nil(job)
    assert.equal("WAIT_TIMEOUT", werr.code)
    assert.is_table(werr.job)
    assert.matches("<redacted>", werr.job.echo, 1, true)
    assert_clean(werr, { JWT })
  end)

  it("secrets given as the wrong type: never echoed (argument errors, validation errors, server echoes)", function()
    local ok, msg = pcall(ugen.new, { api_key = 123456789012345, base_url = srv.base })
    assert.is_false(ok)
    assert.is_nil(tostring(msg):find("123456789012345", 1, true), msg)
    ok, msg = pcall(ugen.new, { jwt = 987654321098765, base_url = srv.base })
    assert.is_false(ok)
    assert.is_nil(tostring(msg):find("987654321098765", 1, true), msg)

    local c = client{ api_key = KEY }
    -- client-side validation: the field's `input` would be the number
    local res, err = c.webhooks:set{ webhook_url = "https://example.com/h", webhook_secret = 55555555555551 }
    assert.is_nil(res)
    assert.equal("validation", err.kind)
    assert_clean(err, { "55555555555551", KEY })
    -- no client-side validation (raw call): sent as a JSON number and echoed back
    local _, err2 = c:request("PUT", "/tenants/me/webhook",
      { webhook_url = "https://example.com/h", webhook_secret = 44444444444441 })
    assert.matches("<redacted>", err2.message, 1, true)
    assert_clean(err2, { "44444444444441", KEY })
  end)

  it("base_url credentials: never in an argument error, and scrubbed from server echoes", function()
    local PW = "base-url-password-0123"
    for _, bad in ipairs({
      "ftp://user:" .. PW .. "@example.com/api",
      "user:" .. PW .. "@example.com/api",
      "https://user:" .. PW .. "@example.com/api?x=1",
      "https://user:" .. PW .. "@example.com/api#frag",
      "https://user:pa/ss" .. PW .. "@example.com/api?x",
    }) do
      local ok, msg = pcall(ugen.new, { base_url = bad, api_key = KEY })
      assert.is_false(ok, bad)
      assert.is_nil(tostring(msg):find(PW, 1, true), msg)
      assert.is_nil(tostring(msg):find(KEY, 1, true), msg)
    end
    -- a valid base_url with credentials: libcurl sends them as Basic auth,
    -- the server echoes that header; neither form may come back
    local c = ugen.new{ base_url = "http://user:" .. PW .. "@127.0.0.1:" .. srv.port .. "/api/v1", max_retries = 0 }
    local _, err = c.jobs:get("job1")
    assert.matches("<redacted>", err.message, 1, true)
    assert_clean(err, { PW, "dXNlcjpiYXNlLXVybC1wYXNzd29yZC0wMTIz" })   -- base64("user:" .. PW)
    assert.is_nil(tostring(c):find(PW, 1, true))
  end)

  it("credential headers given by the caller are secrets too", function()
    local TOKEN = "Bearer caller-supplied-token-0123456789"
    local c = client{ headers = { Authorization = TOKEN } }
    local _, err = c.jobs:get("job1")
    assert.matches("<redacted>", err.message, 1, true)
    assert_clean(err, { "caller-supplied-token-0123456789" })
    local c2 = client{ api_key = KEY }
    local _, err2 = c2.jobs:get("job1", { headers = { ["X-Api-Key"] = "per-call-key-0123456789" } })
    assert_clean(err2, { "per-call-key-0123456789", KEY })
  end)

  describe("the CLI (bin/ugen as a subprocess)", function()
    local INTERP = (type(jit) == "table") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
    local CLEAN_ENV = "env -u UGEN_API_KEY -u UGEN_BASE_URL -u UGEN_JWT -u UGEN_WEBHOOK_SECRET -u UGEN_TTY"
    local function run(argv, env)
      local parts = { CLEAN_ENV }
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

    for _, case in ipairs({ { "UGEN_JWT", JWT }, { "UGEN_API_KEY", KEY } }) do
      for _, json_flag in ipairs({ false, true }) do
        it(case[1] .. (json_flag and ", --json" or ", plain") .. ": stderr and stdout never show it", function()
          local argv = { "jobs", "get", "job1" }
          if json_flag then argv[#argv + 1] = "--json" end
          local r = run(argv, { [case[1]] = case[2], UGEN_BASE_URL = srv.base })
          assert.equal(1, r.code, r.err)
          assert.matches("<redacted>", r.err, 1, true)
          if json_flag then assert.matches("<redacted>", r.out, 1, true) end
          -- (the server echoes everything it was ever sent; a process can only
          -- scrub what it was configured with)
          assert_clean({ r.out, r.err }, { case[2] }, "CLI output")
        end)
      end
    end

    it("webhooks set --secret: not in the error, plain or --json", function()
      for _, json_flag in ipairs({ false, true }) do
        local argv = { "webhooks", "set", "--url", "https://example.com/h", "--secret", HOOK }
        if json_flag then argv[#argv + 1] = "--json" end
        local r = run(argv, { UGEN_JWT = JWT, UGEN_BASE_URL = srv.base })
        assert.equal(1, r.code, r.err)
        assert.matches("<redacted>", r.err, 1, true)
        assert_clean({ r.out, r.err }, { JWT, HOOK }, "CLI output")
      end
    end)

    it("a success body echoing the credentials is scrubbed too (human and --json)", function()
      for _, json_flag in ipairs({ false, true }) do
        local argv = { "--header", "X-Hostile: echo-ok", "jobs", "get", "job1" }
        if json_flag then argv[#argv + 1] = "--json" end
        local r = run(argv, { UGEN_JWT = JWT, UGEN_BASE_URL = srv.base })
        assert.equal(0, r.code, r.err)
        assert.matches("<redacted>", r.out, 1, true)
        assert_clean({ r.out, r.err }, { JWT }, "CLI output")
      end
    end)

    it("--base-url with credentials and a query: a usage error that does not echo them", function()
      local PW = "cli-base-url-password-99"
      local r = run({ "--base-url", "https://u:" .. PW .. "@example.com/api?token=" .. PW .. "x", "jobs", "get", "j" },
        { UGEN_JWT = JWT })
      assert.equal(2, r.code, r.err)
      assert.matches("query", r.err)
      assert_clean({ r.out, r.err }, { PW, JWT }, "CLI output")
    end)
  end)
end)
