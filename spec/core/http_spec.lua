-- ugen.core engine: real HTTP over loopback against spec/support/httpd.lua.
-- Timing bounds are multiplied by UGEN_TIME_FACTOR (scripts/check.sh sets it
-- for the sanitizer and valgrind runs).
local SLOW = tonumber(os.getenv("UGEN_TIME_FACTOR")) or 1
local core = require "ugen.core"
local httpd = require "support.httpd_ctl"
local cjson = require("cjson.safe").new()

-- same byte pattern as httpd.lua: byte i (0-based) is (i * 7 + 3) % 251
local function pattern(n, offset)
  offset = offset or 0
  local base = {}
  for i = 0, 250 do base[#base + 1] = string.char((i * 7 + 3) % 251) end
  base = table.concat(base)
  local s = base:sub(offset % 251 + 1) .. base:rep(math.ceil((n + 251) / 251))
  return s:sub(1, n)
end

local function header(res, name)
  local found = {}
  for i = 1, #res.headers, 2 do
    if res.headers[i] == name then found[#found + 1] = res.headers[i + 1] end
  end
  return found[1], found
end

local util = require "support.util"
local read_file, write_file = util.read_file, util.write_file

describe("ugen.core HTTP over loopback", function()
  local srv, e

  lazy_setup(function()
    srv = httpd.start()
    e = core.engine()
  end)
  lazy_teardown(function()
    if e then e:close() end
    if srv then srv.stop() end
  end)

  local function echo(req)
    req.url = req.url or srv.base .. "/echo"
    local res, err = e:request(req)
    assert.is_nil(err)
    assert.equal(200, res.status)
    local doc = assert(cjson.decode(res.body))
    local hs = {}
    for _, h in ipairs(doc.headers) do hs[h[1]:lower()] = h[2] end
    doc.h = hs
    return doc, res
  end

  it("GET with headers: status, body, lowercased headers, timing (only when req.timing)", function()
    local doc, res = echo { url = srv.base .. "/echo?a=1&b=2", headers = { "X-Custom: Hello", "Accept: text/x" },
                            timing = true }
    assert.equal("GET", doc.method)
    assert.equal("a=1&b=2", doc.query)
    assert.equal("Hello", doc.h["x-custom"])
    assert.equal("text/x", doc.h["accept"])
    assert.equal("1.1", res.http_version)
    assert.equal("application/json", header(res, "content-type"))
    assert.equal(tostring(#res.body), header(res, "content-length"))
    assert.equal(#res.body, res.size)
    assert.equal(srv.base .. "/echo?a=1&b=2", res.url)
    for _, k in ipairs({ "namelookup", "connect", "appconnect", "pretransfer", "starttransfer", "total" }) do
      assert.equal("number", type(res.timing[k]), k)
      assert.is_true(res.timing[k] >= 0 and res.timing[k] < 10, k)
    end
    assert.is_true(res.timing.total >= res.timing.starttransfer)
    assert.equal("boolean", type(res.timing.reused))
    local _, plain = echo { url = srv.base .. "/echo" }
    assert.is_nil(plain.timing)
    assert.error_matches(function() e:request { url = srv.base .. "/echo", timing = 1 } end,
      "req.timing: boolean expected, got number")
  end)

  it("POST, PUT, PATCH and DELETE send the method and the exact body", function()
    local body = "binary\0body\255" .. string.rep("x", 1000)
    for _, m in ipairs({ "POST", "PUT", "PATCH", "DELETE" }) do
      local doc = echo { method = m, body = body, headers = { "Content-Type: application/octet-stream" } }
      assert.equal(m, doc.method)
      assert.equal(body, doc.body)
      assert.equal(tostring(#body), doc.h["content-length"])
    end
    -- a body without a method is a POST; POST/PUT without a body send Content-Length: 0
    assert.equal("POST", echo { body = "x" }.method)
    local doc = echo { method = "PUT" }
    assert.equal("0", doc.h["content-length"])
    doc = echo { method = "DELETE" }
    assert.equal("DELETE", doc.method)
    assert.equal("", doc.body)
  end)

  it("HEAD returns headers only", function()
    local res = assert(e:request { method = "HEAD", url = srv.base .. "/bytes?n=500" })
    assert.equal(200, res.status)
    assert.equal("500", header(res, "content-length"))
    assert.equal("", res.body)
  end)

  it("non-2xx statuses are responses, not errors", function()
    for _, code in ipairs({ 201, 204, 400, 404, 500, 503 }) do
      local res, err = e:request { url = srv.base .. "/status/" .. code }
      assert.is_nil(err)
      assert.equal(code, res.status)
    end
  end)

  it("keeps repeated headers in order and unfolds continuation lines", function()
    local res = assert(e:request { url = srv.base .. "/headers" })
    local _, cookies = header(res, "set-cookie")
    assert.same({ "a=1", "b=2" }, cookies)
    assert.equal("Value With  Spaces", header(res, "x-mixed-case"))
    assert.equal("first second", header(res, "x-folded"))
    assert.equal("set-cookie", res.headers[1])
    assert.is_nil(res.header_map)  -- a repeated name: only the list
  end)

  it("gives header_map when every name is unique and needs no normalizing", function()
    local res = assert(e:request { url = srv.base .. "/echo" })
    local n = 0
    assert.is_table(res.header_map)
    for i = 1, #res.headers, 2 do
      assert.equal(res.headers[i + 1], res.header_map[res.headers[i]])
      n = n + 1
    end
    for _ in pairs(res.header_map) do n = n - 1 end
    assert.equal(0, n)
    res = assert(e:request { url = srv.base .. "/headers?variant=unique" })
    assert.same({ ["set-cookie"] = "a=1", ["x-mixed-case"] = "Value With  Spaces", ["x-folded"] = "first second",
                  ["content-length"] = "2" }, res.header_map)
    res = assert(e:request { url = srv.base .. "/headers?variant=underscore" })
    assert.is_nil(res.header_map)   -- "x_under_score" would be "x-under-score" in ugen.headers
    assert.equal("u", header(res, "x_under_score"))
  end)

  it("collects only the final response's headers (redirects, 100-continue)", function()
    local res = assert(e:request { url = srv.base .. "/redirect?n=2&to=/echo", follow = true })
    assert.equal(200, res.status)
    assert.is_nil(header(res, "x-hop"))
    assert.is_nil(header(res, "location"))
    assert.equal(srv.base .. "/echo", res.url)
    -- a body over 1 MiB makes libcurl send Expect: 100-continue
    local big = string.rep("z", 1100000)
    res = assert(e:request { url = srv.base .. "/continue-status", method = "POST", body = big })
    assert.equal(201, res.status)
    assert.equal("got " .. #big, res.body)
    assert.equal("yes", header(res, "x-final"))
  end)

  it("does not follow redirects unless asked, and stops after 5", function()
    local res = assert(e:request { url = srv.base .. "/redirect?to=/echo" })
    assert.equal(302, res.status)
    assert.equal("/echo", header(res, "location"))
    local err
    res, err = e:request { url = srv.base .. "/redirect?n=7&to=/echo", follow = true }
    assert.is_nil(res)
    assert.equal("network", err.kind)
    assert.equal(47, err.curl_code)
  end)

  it("receives a 5 MB body intact, plain and chunked", function()
    local n = 5 * 1024 * 1024
    local want = core.hmac_sha256("k", pattern(n))
    local res = assert(e:request { url = srv.base .. "/bytes?n=" .. n })
    assert.equal(n, #res.body)
    assert.equal(n, res.size)
    assert.equal(want, core.hmac_sha256("k", res.body))
    res = assert(e:request { url = srv.base .. "/chunked?n=300000" })
    assert.equal(pattern(300000), res.body)
    assert.equal("1", header(res, "x-before"))
  end)

  it("max_body: too_large with and without Content-Length", function()
    local res, err = e:request { url = srv.base .. "/bytes?n=100000", max_body = 1000 }
    assert.is_nil(res)
    assert.equal("too_large", err.kind)
    assert.is_true(err.sent)
    res, err = e:request { url = srv.base .. "/chunked?n=100000", max_body = 50000 }
    assert.is_nil(res)
    assert.equal("too_large", err.kind)
    res = assert(e:request { url = srv.base .. "/bytes?n=1000", max_body = 1000 })
    assert.equal(1000, #res.body)
  end)

  it("times out with kind 'timeout' within the timeout", function()
    local t0 = core.now()
    local res, err = e:request { url = srv.base .. "/slow?ms=5000", timeout = 0.4 }
    local dt = core.now() - t0
    assert.is_nil(res)
    assert.equal("timeout", err.kind)
    assert.equal(28, err.curl_code)
    assert.is_true(err.sent)
    assert.is_true(dt >= 0.35 and dt < 1.5 * SLOW, "took " .. dt)
    -- low_speed_time: the server stalls mid-body
    t0 = core.now()
    res, err = e:request { url = srv.base .. "/stall?ms=4000", low_speed_time = 1 }
    assert.is_nil(res)
    assert.equal("timeout", err.kind)
    assert.is_true(core.now() - t0 < 3.5 * SLOW)
  end)

  it("a dead port fails fast with kind 'network' and sent = false", function()
    local t0 = core.now()
    local res, err = e:request { url = "http://127.0.0.1:1/", connect_timeout = 2 }
    assert.is_nil(res)
    assert.equal("network", err.kind)
    assert.equal(7, err.curl_code)
    assert.is_false(err.sent)
    assert.equal("string", type(err.message))
    assert.is_true(core.now() - t0 < 1 * SLOW)
  end)

  it("a connection reset after the request is 'network' with sent = true", function()
    local res, err = e:request {
      url = srv.base .. "/reset", method = "POST", body = "secret-body-xyz",
      headers = { "X-API-Key: secret-key-abc" },
    }
    assert.is_nil(res)
    assert.equal("network", err.kind)
    assert.is_true(err.sent)
    assert.is_nil(err.message:find("secret", 1, true))
  end)

  it("a TLS handshake failure is kind 'tls'", function()
    -- https against the plain-HTTP server: the handshake fails
    local res, err = e:request { url = srv.base:gsub("^http:", "https:") .. "/echo", timeout = 3 }
    assert.is_nil(res)
    assert.equal("tls", err.kind)
    assert.equal(35, err.curl_code)
    assert.is_false(err.sent)
  end)

  it("rejects non-HTTP protocols", function()
    local res, err = e:request { url = "file:///etc/passwd" }
    assert.is_nil(res)
    assert.equal("network", err.kind)
    assert.equal(1, err.curl_code) -- CURLE_UNSUPPORTED_PROTOCOL
  end)

  describe("output to a file", function()
    local path
    before_each(function() path = os.tmpname() end)
    after_each(function() os.remove(path) end)

    it("streams the body to the file", function()
      local res = assert(e:request { url = srv.base .. "/bytes?n=200000", output = path })
      assert.equal(200, res.status)
      assert.is_nil(res.body)
      assert.equal(200000, res.size)
      assert.equal(pattern(200000), read_file(path))
    end)

    it("resumes from an offset with Range", function()
      write_file(path, pattern(40000) .. "garbage past the offset")
      local res = assert(e:request { url = srv.base .. "/range?n=100000", output = path, resume_from = 40000 })
      assert.equal(206, res.status)
      assert.equal(60000, res.size)
      assert.equal(pattern(100000), read_file(path))
    end)

    it("fails with kind 'io' when the file is shorter than resume_from", function()
      write_file(path, "short")
      local res, err = e:request { url = srv.base .. "/range?n=100000", output = path, resume_from = 40000 }
      assert.is_nil(res)
      assert.equal("io", err.kind)
      assert.equal("short", read_file(path))
    end)

    it("keeps an error body in memory and leaves the file alone", function()
      write_file(path, "previous")
      local res = assert(e:request { url = srv.base .. "/status/404", output = path })
      assert.equal(404, res.status)
      assert.equal("status 404", res.body)
      assert.equal("previous", read_file(path))
    end)

    it("creates the file for an empty 2xx body", function()
      os.remove(path)
      local res = assert(e:request { url = srv.base .. "/bytes?n=0", output = path })
      assert.equal(200, res.status)
      assert.equal("", read_file(path))
    end)

    it("reports an unwritable path as kind 'io'", function()
      local res, err = e:request { url = srv.base .. "/bytes?n=10", output = "/nonexistent-dir/x" }
      assert.is_nil(res)
      assert.equal("io", err.kind)
      assert.matches("nonexistent%-dir", err.message)
    end)
  end)

  describe("multipart uploads", function()
    it("sends parts from data and from a file path", function()
      local path = os.tmpname()
      write_file(path, "PNGDATA\0\1\2")
      local doc = echo {
        mime = {
          { name = "file", path = path, filename = "x.png", type = "image/png" },
          { name = "title", data = "hello world" },
          { name = "blob", data = "a\0b", filename = "b.bin" },
        },
      }
      os.remove(path)
      assert.equal("POST", doc.method)
      assert.matches("^multipart/form%-data; boundary=", doc.h["content-type"])
      local b = doc.body
      assert.truthy(b:find('Content-Disposition: form-data; name="file"; filename="x.png"', 1, true))
      assert.truthy(b:find("Content-Type: image/png\r\n\r\nPNGDATA\0\1\2\r\n", 1, true))
      assert.truthy(b:find('Content-Disposition: form-data; name="title"\r\n\r\nhello world\r\n', 1, true))
      assert.truthy(b:find('name="blob"; filename="b.bin"', 1, true))
      assert.truthy(b:find("\r\n\r\na\0b\r\n", 1, true))
    end)

    it("uses the method given", function()
      local doc = echo { method = "PUT", mime = { { name = "a", data = "b" } } }
      assert.equal("PUT", doc.method)
    end)

    it("a missing file is kind 'io' and nothing is sent", function()
      local res, err = e:request { url = srv.base .. "/echo", mime = { { name = "f", path = "/nonexistent/f.png" } } }
      assert.is_nil(res)
      assert.equal("io", err.kind)
      assert.is_false(err.sent)
      local t = e:submit { url = srv.base .. "/echo", mime = { { name = "f", path = "/nonexistent/f.png" } } }
      assert.is_true(t:done())
      local done = e:run(0)
      assert.equal(t, done[1])
      local _, err2 = t:result()
      assert.equal("io", err2.kind)
    end)
  end)

  describe("concurrency", function()
    it("runs 50 transfers at once", function()
      local e2 = core.engine()
      local ts = {}
      local t0 = core.now()
      for i = 1, 50 do ts[i] = e2:submit { url = srv.base .. "/slow?ms=200" } end
      local finished, deadline = {}, core.now() + 8 * SLOW
      while #finished < 50 and core.now() < deadline do
        local done = e2:run(1)
        for _, t in ipairs(done) do finished[#finished + 1] = t end
      end
      local dt = core.now() - t0
      assert.equal(50, #finished)
      assert.is_true(dt < 3 * SLOW, "took " .. dt)
      for i = 1, 50 do
        assert.is_true(ts[i]:done())
        assert.equal("slow", ts[i]:result().body)
      end
      assert.equal(0, e2:running())
      e2:close()
    end)

    it("runs more concurrent uploads than the handle pool holds", function()
      local e2 = core.engine()
      local ts = {}
      for i = 1, 40 do
        ts[i] = e2:submit {
          url = srv.base .. "/echo", method = "POST",
          mime = { { name = "n", data = "part " .. i } }, headers = { "X-N: " .. i },
        }
      end
      local n, deadline = 0, core.now() + 10 * SLOW
      while n < 40 and core.now() < deadline do n = n + #(e2:run(1)) end
      assert.equal(40, n)
      for i = 1, 40 do
        local doc = cjson.decode(ts[i]:result().body)
        assert.truthy(doc.body:find("part " .. i .. "\r\n", 1, true))
      end
      for i = 1, 40 do ts[i]:close() end
      e2:close()
    end)

    it("queues beyond max_host_connections", function()
      local e2 = core.engine { max_host_connections = 2 }
      local t0 = core.now()
      local ts = {}
      for i = 1, 6 do ts[i] = e2:submit { url = srv.base .. "/slow?ms=200", timeout = 10 } end
      local n, deadline = 0, core.now() + 8 * SLOW
      while n < 6 and core.now() < deadline do n = n + #(e2:run(1)) end
      local dt = core.now() - t0
      assert.equal(6, n)
      assert.is_true(dt >= 0.55, "not queued: " .. dt)
      for i = 1, 6 do assert.equal(200, ts[i]:result().status) end
      e2:close()
    end)

    it("e:request drives other transfers, which the next run reports", function()
      local t = e:submit { url = srv.base .. "/slow?ms=50" }
      local res = assert(e:request { url = srv.base .. "/slow?ms=300" })
      assert.equal(200, res.status)
      assert.is_true(t:done())
      local done, running = e:run(0)
      assert.equal(t, done[1])
      assert.equal(0, running)
    end)

    it("reuses connections across sequential requests", function()
      local e2 = core.engine()
      local first = assert(e2:request { url = srv.base .. "/echo", timing = true })
      assert.is_false(first.timing.reused)
      local res = assert(e2:request { url = srv.base .. "/echo", timing = true })
      -- a reused connection has no connect phase
      assert.equal(0, res.timing.connect)
      assert.is_true(res.timing.reused)
      local t0 = core.now()
      for _ = 1, 200 do assert(e2:request { url = srv.base .. "/status/200" }) end
      assert.is_true(core.now() - t0 < 5 * SLOW)
      e2:close()
    end)
  end)
end)

-- TLS verification against `openssl s_server` with a throwaway self-signed
-- certificate for "localhost": verification is always on; cainfo only says
-- which CA to trust; the host name is checked too. Without openssl (installed
-- by scripts/deps.sh) the setup fails, and so does the run.
describe("ugen.core TLS verification", function()
  local dir, pid, port, e

  local function sh(cmd)
    local p = io.popen(cmd)
    local out = p:read("*a")
    p:close()
    return out
  end

  lazy_setup(function()
    require("support.tools").need("openssl")
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    sh(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      .. "-addext subjectAltName=DNS:localhost -keyout %s/key.pem -out %s/cert.pem 2>/dev/null")
      :format(dir, dir))
    e = core.engine()
    -- find a free port: s_server exits at once when the bind fails
    for _ = 1, 20 do
      port = 20000 + math.random(0, 30000)
      pid = tonumber(sh(("env -u LD_PRELOAD openssl s_server -quiet -www -accept 127.0.0.1:%d "
        .. "-cert %s/cert.pem -key %s/key.pem >/dev/null 2>&1 & echo $!"):format(port, dir, dir)))
      local deadline = core.now() + 3
      local up = false
      while core.now() < deadline do
        local _, err = e:request { url = ("http://127.0.0.1:%d/"):format(port), timeout = 1 }
        -- anything but "connection refused" means the server is listening
        if not (err and err.curl_code == 7) then up = true; break end
        core.sleep(0.05)
      end
      if up then break end
      os.execute("kill " .. pid .. " 2>/dev/null")
      pid = nil
    end
    assert(pid, "openssl s_server did not start")
  end)

  lazy_teardown(function()
    if e then e:close() end
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    if dir then os.execute("rm -rf " .. dir) end
  end)

  it("rejects a certificate from an unknown CA", function()
    local res, err = e:request { url = ("https://localhost:%d/"):format(port), timeout = 5 }
    assert.is_nil(res)
    assert.equal("tls", err.kind)
    assert.equal(60, err.curl_code) -- CURLE_PEER_FAILED_VERIFICATION
  end)

  it("accepts it when cainfo names its CA", function()
    local res, err = e:request {
      url = ("https://localhost:%d/"):format(port), cainfo = dir .. "/cert.pem", timeout = 5, timing = true,
    }
    assert.is_nil(err)
    assert.equal(200, res.status)
    assert.is_true(res.timing.appconnect > 0)
  end)

  it("still checks the host name with a trusted CA", function()
    local res, err = e:request {
      url = ("https://127.0.0.1:%d/"):format(port), cainfo = dir .. "/cert.pem", timeout = 5,
    }
    assert.is_nil(res)
    assert.equal("tls", err.kind)
    assert.equal(60, err.curl_code)
  end)

  it("a missing CA bundle is kind 'tls'", function()
    local res, err = e:request {
      url = ("https://localhost:%d/"):format(port), cainfo = dir .. "/missing.pem", timeout = 5,
    }
    assert.is_nil(res)
    assert.equal("tls", err.kind)
  end)
end)
