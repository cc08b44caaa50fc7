-- The sandbox over HTTPS + HTTP/2 (#15 item 3): `sandbox.start{ tls = true }`
-- / `ugen sandbox start --tls` make a private CA and a certificate for
-- 127.0.0.1 and localhost in DIR/tls/, and the SDK (cainfo), curl (--cacert)
-- and the sandbox's own webhook deliveries (to https receivers whose
-- certificate comes from that CA) work over it; bad certificates are kind
-- "tls" errors that are not retried.
-- One TLS sandbox for this file (its own dir, not the shared spec sandbox), one
-- nginx with a TLS port per test certificate (support.tls).
local S = require "support.sandbox"
local N = require "support.nginx"
local T = require "support.tls"
local sandbox = require "ugen.sandbox"
local ugen = require "ugen"
local socket = require "socket"

local q, read_file = S.q, S.read_file
-- time limits scale under ASan / valgrind (scripts/check.sh sets UGEN_TIME_FACTOR)
local SLOW = tonumber(os.getenv("UGEN_TIME_FACTOR")) or 1

local JOB = { product_name = "TLS Mug", product_image_url = "https://example.com/mug.jpg", segment_count = 1 }

local function sh(cmd)
  local p = io.popen("(" .. cmd .. ") 2>&1; echo \"EXIT:$?\"")
  local out = p:read("*a")
  p:close()
  return tonumber(out:match("EXIT:(%d+)%s*$")), (out:gsub("EXIT:%d+%s*$", ""))
end

local info, ca, certs, srv

local function setup_all()
  if info then return end
  local dir = S.tmpdir() .. "/tls-sandbox"
  info = assert(sandbox.start{ dir = dir, tls = true, speed = S.SPEED, seed = S.SEED, owner_pid = N.self_pid() })
  ca = assert(sandbox.tls.ca(dir .. "/tls")) -- the sandbox's own CA (reused, not replaced)
  certs = T.certs(ca)
  srv = T.server{ good = certs.good, wrong_ca = certs.wrong_ca, wrong_host = certs.wrong_host,
                  expired = certs.expired }
end

local function job(extra)
  local p = {}
  for k, v in pairs(JOB) do p[k] = v end
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

local function client(extra)
  local o = { base_url = info.base_url, cainfo = info.cainfo, api_key = info.api_key, rng = function() return 0 end,
              timeout = 15 }
  for k, v in pairs(extra or {}) do o[k] = v end
  if o.cainfo == false then o.cainfo = nil end
  return ugen.new(o)
end

local function curl(args)
  return sh("curl -sS --max-time 10 " .. args)
end

-- the sandbox's delivery log for the default tenant, over TLS with curl
local function deliveries(job_id)
  local code, out = curl("--cacert " .. q(info.cainfo) .. " -H " .. q("X-API-Key: " .. info.api_key) .. " "
                         .. q(info.origin .. "/_sandbox/deliveries?job_id=" .. job_id))
  assert(code == 0, out)
  return require("ugen.json").decode(out)
end

local function settled(job_id)
  return S.eventually(function()
    local d = deliveries(job_id)[1]
    if d and (d.status == "delivered" or d.status == "failed") then return d end
  end, 10)
end

describe("TLS sandbox", function()
  setup(setup_all)
  teardown(function()
    if info then sandbox.stop{ dir = info.dir } end
    if srv then srv.stop() end
  end)

  it("makes a private CA and an EC server certificate for 127.0.0.1 and localhost in DIR/tls", function()
    assert.matches("^https://127%.0%.0%.1:%d+/api/v1$", info.base_url)
    assert.matches("^https://127%.0%.0%.1:%d+$", info.origin)
    assert.is_true(info.tls)
    assert.equal(info.dir .. "/tls/ca.crt", info.cainfo)
    local tdir = info.dir .. "/tls"
    local code, out = sh(("cd %s && openssl verify -CAfile ca.crt -purpose sslserver -verify_ip 127.0.0.1 server.crt"
      .. " && openssl verify -CAfile ca.crt -purpose sslserver -verify_hostname localhost server.crt"):format(q(tdir)))
    assert.equal(0, code, out)
    local _, text = sh("openssl x509 -noout -text -in " .. q(tdir .. "/server.crt"))
    assert.matches("CA:FALSE", text)
    assert.matches("TLS Web Server Authentication", text)
    assert.matches("IP Address:127%.0%.0%.1", text)
    assert.matches("DNS:localhost", text)
    assert.matches("prime256v1", text)
    local _, catext = sh("openssl x509 -noout -text -in " .. q(info.cainfo))
    assert.matches("CA:TRUE", catext)
    assert.matches("Certificate Sign", catext)
    -- valid now, for about 397 days (not a decade)
    local _, dates = sh("openssl x509 -noout -checkend 0 -in " .. q(tdir .. "/server.crt") .. " && openssl x509 "
      .. "-noout -checkend " .. 398 * 86400 .. " -in " .. q(tdir .. "/server.crt"))
    assert.matches("Certificate will not expire\nCertificate will expire", dates)
    -- private keys are the owner's only
    local _, modes = sh("stat -c %a " .. q(tdir .. "/ca.key") .. " " .. q(tdir .. "/server.key"))
    assert.equal("600\n600\n", modes)
    -- status reports the same
    local st = assert(sandbox.status{ dir = info.dir })
    assert.equal(info.base_url, st.base_url)
    assert.equal(info.cainfo, st.cainfo)
  end)

  it("reuses valid TLS files and replaces a server certificate or CA that no longer fits", function()
    local d = S.tmpdir()
    local tdir = d .. "/tls"
    local f = assert(sandbox.tls.server_files(d))
    assert.same({ cainfo = tdir .. "/ca.crt", cert = tdir .. "/server.crt", key = tdir .. "/server.key" }, f)
    local ca_pem, crt_pem = read_file(f.cainfo), read_file(f.cert)
    assert.truthy(sandbox.tls.server_files(d))
    assert.equal(ca_pem, read_file(f.cainfo))
    assert.equal(crt_pem, read_file(f.cert))
    local function fits()
      return sh(("cd %s && openssl verify -CAfile ca.crt -purpose sslserver -verify_ip 127.0.0.1 "
        .. "-verify_hostname localhost server.crt"):format(q(tdir))) == 0
    end
    local c = assert(sandbox.tls.ca(tdir))
    assert.equal(tdir, c.dir)
    assert.equal(ca_pem, read_file(c.cert)) -- found, not remade
    -- misuse raises, naming the argument; nothing reaches a shell unchecked
    assert.has_error(function() sandbox.tls.issue(c, { name = "../x", dns = { "a" } }) end,
      "bad argument to 'tls.issue' (name: letters, digits, '_' or '-' expected, got ../x)")
    assert.has_error(function() sandbox.tls.issue(c, { dns = { "a b; rm -rf /" } }) end,
      "bad argument to 'tls.issue' (dns: host names expected, got a b; rm -rf /)")
    assert.has_error(function() sandbox.tls.issue(c, {}) end,
      "bad argument to 'tls.issue' (dns or ip: at least one name expected)")
    assert.has_error(function() sandbox.tls.issue(c, { ip = { "127.0.0.1" }, not_before = "2020" }) end)
    assert.has_error(function() sandbox.tls.ca(nil) end, "bad argument #1 to 'tls.ca' (string expected, got nil)")
    assert.has_error(function() sandbox.start{ tls = "yes" } end,
      "bad argument #1 to 'start' (tls: boolean expected, got string)")
    -- a certificate for another name, an expired one, a key that is not the certificate's
    local breakers = {
      function() assert(sandbox.tls.issue(c, { name = "server", dns = { "example.test" } })) end,
      function() assert(sandbox.tls.issue(c, { name = "server", dns = { "localhost" }, ip = { "127.0.0.1" },
                                               not_before = "20200101000000Z", not_after = "20200102000000Z" })) end,
      function()
        assert(sandbox.tls.issue(c, { name = "spare", dns = { "localhost" } }))
        assert(os.execute("cp " .. q(tdir .. "/spare.key") .. " " .. q(tdir .. "/server.key")))
      end,
    }
    for i, breaker in ipairs(breakers) do
      breaker()
      if i < 3 then assert.is_false(fits(), "breaker " .. i) end
      local before = read_file(f.cert)
      assert.truthy(sandbox.tls.server_files(d))
      assert.not_equal(before, read_file(f.cert), "breaker " .. i)
      assert.is_true(fits(), "breaker " .. i)
      assert.equal(ca_pem, read_file(f.cainfo), "breaker " .. i)
    end
    -- a CA whose key is gone is replaced, and the server certificate with it
    os.remove(tdir .. "/ca.key")
    local c2 = assert(sandbox.tls.ca(tdir))
    assert.not_equal(ca_pem, read_file(c2.cert))
    assert.is_false(fits())
    assert.truthy(sandbox.tls.server_files(d))
    assert.is_true(fits())
  end)

  it("speaks HTTP/2 to curl --cacert; curl without the CA refuses it", function()
    local code, out = curl("--cacert " .. q(info.cainfo) .. " -o /dev/null -w '%{http_version} %{http_code}' "
                           .. q(info.origin .. "/_sandbox/health"))
    assert.equal(0, code, out)
    assert.equal("2 200", out)
    code, out = curl("--cacert " .. q(info.cainfo) .. " -o /dev/null -w '%{http_version} %{http_code}' "
                     .. q("https://localhost:" .. info.port .. "/_sandbox/health"))
    assert.equal(0, code, out)
    assert.equal("2 200", out)
    code, out = curl("--http1.1 --cacert " .. q(info.cainfo) .. " -o /dev/null -w '%{http_version} %{http_code}' "
                     .. q(info.origin .. "/_sandbox/health"))
    assert.equal(0, code, out)
    assert.equal("1.1 200", out)
    code, out = curl("-o /dev/null " .. q(info.origin .. "/_sandbox/health"))
    assert.equal(60, code, out)
  end)

  it("the SDK with cainfo creates, waits for and downloads a job over HTTPS", function()
    local c = client()
    local j = assert(c.jobs:create(job()))
    local final = assert(c.jobs:wait(j.job_id, { interval = 0.02, timeout = 30 }))
    assert.equal("completed", final.status)
    assert.equal(1, final.final_video_url:find(info.origin .. "/static/videos/", 1, true))
    local path = S.tmpdir() .. "/video.mp4"
    local r, err = c.jobs:download(final, path)
    assert.is_table(r, tostring(err))
    assert.equal(read_file(sandbox.root() .. "/static/sample.mp4"), read_file(path))
  end)

  it("delivers signed webhooks to https receivers with a certificate from the sandbox CA", function()
    local c = client()
    local secret = ugen.webhook.new_secret()
    assert(c.webhooks:set{ webhook_url = srv.https("good", "/hook", "localhost"), webhook_secret = secret })
    finally(function() c.webhooks:delete() end)
    local j1 = assert(c.jobs:create(job()))                                        -- tenant URL: a host name
    local j2 = assert(c.jobs:create(job{ webhook_url = srv.https("good", "/hook") })) -- per job: an IP literal
    for _, j in ipairs({ j1, j2 }) do
      local d = settled(j.job_id)
      assert.equal("delivered", d and d.status, require("ugen.json").encode(d))
      assert.equal(1, #d.attempts)
    end
    local got = srv.received()
    assert.equal(2, #got)
    local seen = {}
    for _, rec in ipairs(got) do
      assert.equal("good", rec.server)
      local event, verr = ugen.webhook.verify(secret, rec.headers, rec.body)
      assert.is_table(event, tostring(verr))
      assert.equal("job.completed", event.event)
      seen[event.job_id] = true
    end
    assert.is_true(seen[j1.job_id] and seen[j2.job_id])
  end)

  it("does not deliver to receivers with a wrong CA, a wrong host name or an expired certificate", function()
    local c = client()
    local before = #srv.received()
    local jobs = {}
    for _, name in ipairs({ "wrong_ca", "wrong_host", "expired" }) do
      jobs[name] = assert(c.jobs:create(job{ webhook_url = srv.https(name, "/hook", "localhost") }))
    end
    for name, j in pairs(jobs) do
      local d = settled(j.job_id)
      assert.equal("failed", d and d.status, name .. ": " .. require("ugen.json").encode(deliveries(j.job_id)))
      assert.equal(4, #d.attempts, name) -- the delivery schedule's retries (1 + 3), each a TLS failure
      for _, a in ipairs(d.attempts) do
        assert.truthy(type(a.error) == "string" and a.error:find("^tls: "), name .. ": " .. tostring(a.error))
        assert.is_not_number(a.response_status)
      end
    end
    assert.equal(before, #srv.received())
  end)

  describe("TLS errors through the SDK are kind tls, after one attempt", function()
    -- c:credits:balance() against base (default: the TLS sandbox)
    local function check(name, opts, base)
      opts.base_url = base or info.base_url
      local c = client(opts)
      local t0 = socket.gettime()
      local res, err = c.credits:balance()
      local elapsed = socket.gettime() - t0
      assert.is_nil(res, name)
      assert.equal("tls", err.kind, name .. ": " .. tostring(err))
      assert.equal(1, err.attempts, name)
      assert.is_not_true(err.retryable, name)
      -- no backoff slept (attempts == 1 says no retry; this says no wait either)
      assert.is_true(elapsed < 2 * SLOW, name .. ": " .. elapsed .. " s")
      assert.is_nil(tostring(err):find(info.api_key, 1, true))
      return err
    end

    it("no cainfo (the system CAs do not know the sandbox CA)", function()
      check("no cainfo", { cainfo = false, max_retries = 2 })
    end)

    it("another CA as cainfo", function()
      check("other CA", { cainfo = certs.other_ca.cert, max_retries = 2 })
    end)

    it("a server certificate from another CA", function()
      check("wrong CA", { max_retries = 2 }, srv.https("wrong_ca", "/api/v1"))
    end)

    it("a certificate for another host name (127.0.0.1 and localhost)", function()
      check("wrong host ip", { max_retries = 2 }, srv.https("wrong_host", "/api/v1"))
      check("wrong host name", { max_retries = 2 }, srv.https("wrong_host", "/api/v1", "localhost"))
    end)

    it("an expired certificate", function()
      local err = check("expired", { max_retries = 2 }, srv.https("expired", "/api/v1"))
      assert.matches("expired", err.message)
    end)

    it("the good certificate on the same test server works (the checks above are about the certificates)", function()
      local res, err = client{ base_url = srv.https("good", "/api/v1") }.credits:balance()
      assert.is_table(res, tostring(err))
      assert.is_true(res.ok)
    end)
  end)

  it("`ugen sandbox start --tls` prints export UGEN_CAINFO, and the exports work in a shell", function()
    local dir = S.tmpdir() .. "/cli sb"
    local code, out = sh("bin/ugen sandbox start --tls --dir " .. q(dir) .. " --speed 5 2>/dev/null")
    finally(function() sandbox.stop{ dir = dir } end)
    assert.equal(0, code, out)
    local url, key, cainfo = out:match("^export UGEN_BASE_URL=(https://127%.0%.0%.1:%d+/api/v1)\n"
      .. "export UGEN_API_KEY=(%S+)\nexport UGEN_CAINFO=('[^\n]+')\n$")
    assert.is_string(url, out)
    assert.equal(q(dir .. "/tls/ca.crt"), cainfo)
    local st = assert(sandbox.status{ dir = dir })
    assert.equal(url, st.base_url)
    assert.equal(key, st.api_key)
    local c2, bal = sh("eval " .. q(out) .. ' && curl -sS --cacert "$UGEN_CAINFO" -H "X-API-Key: $UGEN_API_KEY" '
                       .. '"$UGEN_BASE_URL/credits/balance"')
    assert.equal(0, c2, bal)
    assert.matches('"credit_balance":', bal)
    -- started again on the same dir: the same lines, the same CA (reused, not remade)
    local ca_pem = read_file(dir .. "/tls/ca.crt")
    assert(sandbox.stop{ dir = dir })
    local c3, again = sh("bin/ugen sandbox start --tls --dir " .. q(dir) .. " 2>/dev/null")
    assert.equal(0, c3, again)
    assert.matches("\nexport UGEN_CAINFO=" .. q(dir .. "/tls/ca.crt"):gsub("%p", "%%%0") .. "\n$", again)
    assert.equal(ca_pem, read_file(st.cainfo))
  end)

  it("the CLI and the SDK take the CA from UGEN_CAINFO or --cainfo (the exports are all they need)", function()
    setup_all()
    local exports = sandbox.exports(info)
    assert.matches("export UGEN_CAINFO=", exports)
    -- the CLI: eval the exports, nothing else
    local code, out = sh("eval " .. q(exports) .. " && bin/ugen credits balance --json")
    assert.equal(0, code, out)
    assert.matches('"credit_balance"', out)
    -- without the CA: a tls error, not retried; with --cainfo: fine again
    code, out = sh("eval " .. q(exports) .. " && unset UGEN_CAINFO && bin/ugen credits balance")
    assert.is_not.equal(0, code)
    assert.matches("tls", out)
    code, out = sh("eval " .. q(exports) .. " && unset UGEN_CAINFO && bin/ugen --cainfo " .. q(info.cainfo)
      .. " credits balance --json")
    assert.equal(0, code, out)
    -- the SDK: ugen.new{} with only the environment (a child lua5.4)
    local probe = 'package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path; '
      .. 'local b, e = require("ugen").new{}.credits:balance(); print(b and "ok" or tostring(e))'
    code, out = sh("eval " .. q(exports) .. " && LUA_CPATH='./build/5.4/?.so;;' lua5.4 -e " .. q(probe))
    assert.equal(0, code, out)
    assert.equal("ok\n", out)
  end)
end)
