-- The ngx transport inside a real nginx (worker_processes 1): non-blocking
-- concurrency, HTTP/1.1 framing, keepalive, TLS verification, timeouts,
-- err.sent, uploads/downloads, and the phase errors.
local N = require "support.nginx"
local json = require "ugen.json"

local function app() return N.app() end

local function header(res, name)
  for i = 1, #res.headers, 2 do
    if res.headers[i] == name then return res.headers[i + 1] end
  end
end

describe("ngx transport (nginx, one worker)", function()
  local srv, base
  setup(function()
    srv = app()
    base = srv.url("")
  end)

  describe("concurrency", function()
    it("10 SDK calls in light threads of one request, to a 1 s endpoint on the same worker, take ~1 s", function()
      local r = srv.request{ path = "/fanout?n=10&delay=1" }
      assert.equal(200, r.status, r.body)
      assert.equal(10, #r.json.results)
      for _, x in ipairs(r.json.results) do
        assert.is_true(x.ok); assert.equal(100, x.credits, tostring(x.err))
      end
      -- serialized would be >= 10 s; a blocking transport would deadlock the worker
      assert.is_true(r.json.elapsed >= 0.99 and r.json.elapsed < 1.6, tostring(r.json.elapsed))
      print(("\n  [nginx] 10 concurrent SDK calls (light threads) vs one 1 s delay: %.3f s"):format(r.json.elapsed))
    end)

    it("10 requests at once from outside, each one SDK call to the same worker's 1 s endpoint, take ~1 s", function()
      local list = {}
      for i = 1, 10 do list[i] = { url = srv.url("/one?delay=1&n=" .. i) } end
      local out, wall = N.parallel(list)
      local first, last = math.huge, 0
      for _, x in ipairs(out) do
        assert.equal(200, x.status, x.body)
        assert.is_true(x.json.ok, x.body)
        assert.is_true(x.json.elapsed >= 0.99 and x.json.elapsed < 1.6, tostring(x.json.elapsed))
        first = math.min(first, x.json.started)
        last = math.max(last, x.json.started + x.json.elapsed)
      end
      -- server clock: from the first call's start to the last call's end
      assert.is_true(last - first < 1.6, tostring(last - first))
      assert.is_true(wall < 3, tostring(wall))      -- includes starting 10 curl processes
      print(("\n  [nginx] 10 concurrent requests x 1 SDK call vs one 1 s delay: %.3f s (server), %.3f s wall")
        :format(last - first, wall))
    end)

    it("sched.sleep yields to nginx (ngx.sleep): 10 x 0.5 s sleeps overlap", function()
      local list = {}
      for i = 1, 10 do list[i] = { url = srv.url("/sleep_probe?s=0.5&n=" .. i) } end
      local out, wall = N.parallel(list)
      for _, x in ipairs(out) do
        assert.equal(200, x.status)
        assert.is_true(x.json.elapsed >= 0.49, tostring(x.json.elapsed))
      end
      assert.is_true(wall < 1.4, tostring(wall))
    end)

    it("retry backoff sleeps do not block the worker either (10 calls, each retried once after 503)", function()
      local list = {}
      local tag = tostring(os.time()) .. tostring(math.random(1e6))
      for i = 1, 10 do list[i] = { url = srv.url("/one?delay=0.2&fail_once=" .. tag .. "-" .. i) } end
      local out, wall = N.parallel(list)
      for _, x in ipairs(out) do
        assert.equal(200, x.status, x.body)
        assert.is_true(x.json.ok, x.body)
        assert.is_true(x.json.elapsed >= 0.44, tostring(x.json.elapsed))   -- 0.25 s backoff + 0.2 s delay
      end
      assert.is_true(wall < 1.5, tostring(wall))
    end)
  end)

  describe("HTTP/1.1 framing", function()
    it("Content-Length body, headers as a flat lowercase list", function()
      local res, err = N.transport{ url = base .. "/api/v1/x" }
      assert.is_nil(err)
      assert.equal(200, res.status)
      assert.equal("1.1", res.http_version)
      assert.equal("application/json", header(res, "content-type"))
      assert.equal(100, json.decode(res.body).available_credits)
      assert.equal(#res.body, res.size)
    end)

    it("chunked bodies from nginx itself (several flushes)", function()
      local res = assert(N.transport{ url = base .. "/chunked" })
      assert.equal("chunked", header(res, "transfer-encoding"))
      local j = json.decode(res.body)
      assert.equal(5, #j.parts)
      assert.equal(3000, #j.parts[1])
    end)

    it("chunked with extensions and trailers; body until close; HTTP/1.0; 100 Continue + folded headers", function()
      local res = assert(N.transport{ url = base .. "/raw?case=chunked" })
      assert.same({ a = "chunked", b = { 1, 2 } }, json.decode(res.body))
      res = assert(N.transport{ url = base .. "/raw?case=close" })
      assert.same({ ["until"] = "close" }, json.decode(res.body))
      res = assert(N.transport{ url = base .. "/raw?case=http10" })
      assert.equal("1.0", res.http_version)
      assert.same({ v = "1.0" }, json.decode(res.body))
      res = assert(N.transport{ url = base .. "/raw?case=continue" })
      assert.equal(201, res.status)
      assert.equal("one two", header(res, "x-folded"))
      assert.equal('{"ok":true}', res.body)
    end)

    it("HEAD, 204 and 304 have no body even when Content-Length says otherwise", function()
      for _, case in ipairs({ "h204", "h304", "head" }) do
        local method = case == "head" and "HEAD" or "GET"
        local res, err, elapsed = N.transport{ method = method, url = base .. "/raw?case=" .. case, timeout = 1.5 }
        assert.is_table(res, case .. ": " .. tostring(err and err.message))
        assert.equal("", res.body)
        assert.is_true(elapsed < 1, case .. " " .. tostring(elapsed))
      end
      local res = assert(N.transport{ url = base .. "/nobody?status=204" })
      assert.equal(204, res.status)
      res = assert(N.transport{ method = "HEAD", url = base .. "/api/v1/x" })
      assert.equal(200, res.status); assert.equal("", res.body)
    end)

    it("a response line over 100 KiB is refused as soon as it passes the limit (BAD_RESPONSE)", function()
      for _, case in ipairs({ "long_header", "long_chunk_ext" }) do
        local res, err = N.transport{ url = base .. "/raw?case=" .. case }
        assert.is_nil(res, case)
        assert.equal("network", err.kind, case); assert.equal("BAD_RESPONSE", err.code, case .. ": " .. err.message)
        assert.truthy(err.message:find("longer than 102400 bytes", 1, true), err.message)
        assert.is_true(err.sent)
      end
      -- a header line that never ends: refused without waiting for its end
      local res, err, elapsed = N.transport{ url = base .. "/raw?case=endless_header", timeout = 5 }
      assert.is_nil(res)
      assert.equal("BAD_RESPONSE", err.code, err.message)
      assert.is_true(elapsed < 1, tostring(elapsed))
      -- a long line under the limit is still read whole
      res = assert(N.transport{ url = base .. "/raw?case=big_header" })
      assert.equal(string.rep("b", 90 * 1024), header(res, "x-big"))
      assert.equal("{}", res.body)
    end)

    it("a body cut short is kind network (PARTIAL_BODY), sent = true", function()
      for _, case in ipairs({ "length_cut", "chunked_cut" }) do
        local res, err = N.transport{ url = base .. "/raw?case=" .. case }
        assert.is_nil(res)
        assert.equal("network", err.kind); assert.equal("PARTIAL_BODY", err.code, err.message)
        assert.is_true(err.sent)
      end
    end)

    it("garbage, an empty answer and a bad Content-Length are kind network, sent = true", function()
      for case, code in pairs({ garbage = "BAD_RESPONSE", nothing = "RECV_FAILED", bad_length = "BAD_RESPONSE" }) do
        local res, err = N.transport{ url = base .. "/raw?case=" .. case }
        assert.is_nil(res)
        assert.equal("network", err.kind, case); assert.equal(code, err.code, case .. ": " .. err.message)
        assert.is_true(err.sent)
      end
    end)
  end)

  describe("connections", function()
    it("keepalive: the next request reuses the pooled connection", function()
      local a = assert(N.transport{ url = base .. "/api/v1/keepalive" })
      local b = assert(N.transport{ url = base .. "/api/v1/keepalive" })
      local ja, jb = json.decode(a.body), json.decode(b.body)
      assert.equal(ja.connection, jb.connection)
      assert.is_true(jb.connection_requests > ja.connection_requests)
    end)

    it("a dead port is kind network with sent = false (never reached the server)", function()
      local dead = N.free_port()
      local res, err, elapsed = N.transport{ url = "http://127.0.0.1:" .. dead .. "/x" }
      assert.is_nil(res)
      assert.equal("network", err.kind); assert.equal("CONNECT_FAILED", err.code)
      assert.is_false(err.sent)
      assert.is_true(elapsed < 1)
    end)

    it("a response slower than the timeout is kind timeout, sent = true, on time", function()
      local res, err, elapsed = N.transport{ url = base .. "/raw?case=hang", timeout = 0.5 }
      assert.is_nil(res)
      assert.equal("timeout", err.kind); assert.equal("RECV_TIMEOUT", err.code)
      assert.is_true(err.sent)
      assert.is_true(elapsed >= 0.45 and elapsed < 1.2, tostring(elapsed))
    end)

    it("a URL that is not http(s) is refused before sending", function()
      local res, err = N.transport{ url = "ftp://127.0.0.1/x" }
      assert.is_nil(res)
      assert.equal("network", err.kind); assert.equal("BAD_URL", err.code); assert.is_false(err.sent)
    end)
  end)

  describe("TLS (verification always on)", function()
    it("a server whose certificate is in lua_ssl_trusted_certificate works", function()
      local res, err = N.transport{ url = "https://127.0.0.1:" .. srv.port(2) .. "/api/v1/tls" }
      assert.is_table(res, err and err.message)
      assert.equal(200, res.status)
      assert.equal(100, json.decode(res.body).available_credits)
    end)

    it("an untrusted certificate is kind tls, sent = false; the SDK does not retry it", function()
      local res, err = N.transport{ url = "https://127.0.0.1:" .. srv.port(3) .. "/api/v1/tls" }
      assert.is_nil(res)
      assert.equal("tls", err.kind); assert.equal("TLS_HANDSHAKE", err.code); assert.is_false(err.sent)
      assert.truthy(err.message:find("lua_ssl_trusted_certificate", 1, true))
      local j = N.run{ call = "credits.balance", base_url = "https://127.0.0.1:" .. srv.port(3) .. "/api/v1" }
      assert.is_false(j.ok)
      assert.equal("tls", j.err.kind); assert.equal(1, j.err.attempts); assert.is_false(j.err.retryable)
    end)

    it("the host name is verified too: a trusted certificate for another name is refused", function()
      -- port 4 serves a certificate from the trusted bundle that names other.example only
      local res, err = N.transport{ url = "https://127.0.0.1:" .. srv.port(4) .. "/api/v1/tls" }
      assert.is_nil(res)
      assert.equal("tls", err.kind, err.message)
      assert.truthy(err.message:find("host mismatch", 1, true), err.message)
    end)

    it("cainfo/capath cannot be applied per request in nginx: an explicit tls error", function()
      local res, err = N.transport{ url = "https://127.0.0.1:" .. srv.port(2) .. "/x", cainfo = "/etc/ssl/x.pem" }
      assert.is_nil(res)
      assert.equal("tls", err.kind); assert.equal("CAINFO_UNSUPPORTED", err.code); assert.is_false(err.sent)
    end)
  end)

  describe("bodies to and from files", function()
    it("multipart upload from memory and from a file", function()
      local d = N.tmpdir()
      N.write_file(d .. "/pic.png", "\137PNG\r\n\26\nDATA")
      local res = assert(N.transport{ method = "POST", url = base .. "/echo", mime = {
        { name = "title", data = 'a "quoted" title' },
        { name = "file", path = d .. "/pic.png", type = "image/png" },
      } })
      local j = json.decode(res.body)
      assert.equal("POST", j.method)
      local ctype = j.headers["content-type"]
      local boundary = ctype:match("^multipart/form%-data; boundary=(.+)$")
      assert.truthy(boundary, ctype)
      assert.equal(tostring(#j.body), j.headers["content-length"])
      assert.truthy(j.body:find('name="title"\r\n\r\na "quoted" title\r\n', 1, true))
      assert.truthy(j.body:find('name="file"; filename="pic.png"\r\nContent-Type: image/png\r\n\r\n' ..
        '\137PNG\r\n\26\nDATA\r\n', 1, true))
      assert.truthy(j.body:find("--" .. boundary .. "--\r\n", 1, true))
    end)

    it("output streams a 2xx body to a file; a non-2xx body stays in memory", function()
      local d = N.tmpdir()
      local res = assert(N.transport{ url = base .. "/chunked", output = d .. "/out.json" })
      assert.is_nil(res.body)
      local data = N.read_file(d .. "/out.json")
      assert.equal(#data, res.size)
      assert.equal(5, #json.decode(data).parts)
      res = assert(N.transport{ url = base .. "/nobody?status=404", output = d .. "/missing.json" })
      assert.equal(404, res.status); assert.is_string(res.body)
      assert.is_nil(N.read_file(d .. "/missing.json"))
    end)

    it("sends the SDK's headers, Host and Content-Length", function()
      local j = N.run{ call = "raw", method = "POST", base_url = base, path = "/echo", params = { a = 1 },
                       api_key = "key-for-echo-123" }
      assert.is_true(j.ok, j.err and j.err.message)
      local echo = j.result
      assert.equal("127.0.0.1:" .. srv.port(1), echo.headers.host)
      assert.equal("key-for-echo-123", echo.headers["x-api-key"])
      assert.equal("application/json", echo.headers["content-type"])
      assert.truthy(echo.headers["user-agent"]:find("lua-ugen/", 1, true))
      assert.same({ a = 1 }, json.decode(echo.body))
    end)
  end)

  describe("downloads: redirects, resume, progress, stalls", function()
    it("follow = true follows redirects (max 5); without it the 3xx is the answer", function()
      local res = assert(N.transport{ url = base .. "/redir?n=3", follow = true })
      assert.equal(200, res.status)
      assert.equal("/api/v1/redirected", json.decode(res.body).path)
      res = assert(N.transport{ url = base .. "/redir?n=1" })
      assert.equal(302, res.status)
      local r2, err = N.transport{ url = base .. "/redir?n=6", follow = true }
      assert.is_nil(r2)
      assert.equal("network", err.kind); assert.equal("TOO_MANY_REDIRECTS", err.code)
    end)

    it("303 turns a POST into a GET; credentials do not follow to another origin", function()
      local res = assert(N.transport{ method = "POST", body = "x", url = base .. "/redir?n=1&status=303&to=/echo",
                                      follow = true, headers = { ["X-API-Key"] = "k-123456789" } })
      local echo = json.decode(res.body)
      assert.equal("GET", echo.method); assert.equal("", echo.body)
      assert.equal("k-123456789", echo.headers["x-api-key"])          -- same origin: kept
      local other = "https://127.0.0.1:" .. srv.port(2) .. "/echo"
      res = assert(N.transport{ url = base .. "/redir?n=1&to=" .. other:gsub(":", "%%3A"):gsub("/", "%%2F"),
                                follow = true, headers = { ["X-API-Key"] = "k-123456789", ["X-Other"] = "o" } })
      echo = json.decode(res.body)
      assert.is_nil(echo.headers["x-api-key"])                         -- other origin: dropped
      assert.equal("o", echo.headers["x-other"])
    end)

    it("relative Locations resolve as RFC 3986 says: '?query' keeps the path, dot segments go", function()
      -- "Location: ?n=1" from /redir is /redir?n=1 (which then redirects to /api/v1/redirected), not /?n=1
      local res = assert(N.transport{ url = base .. "/redir?n=1&to=%3Fn%3D1", follow = true })
      assert.equal(200, res.status)
      assert.equal("/api/v1/redirected", json.decode(res.body).path)
      -- "Location: ../api/v1/dotted" from /redir is /api/v1/dotted, not /../api/v1/dotted
      res = assert(N.transport{ url = base .. "/redir?n=1&to=..%2Fapi%2Fv1%2Fdotted", follow = true })
      assert.equal(200, res.status, res.body)
      assert.equal("/api/v1/dotted", json.decode(res.body).path)
      -- a Location with a line break or a space is refused, never sent on
      local r2, err = N.transport{ url = base .. "/redir?n=1&to=%2Fa%20b", follow = true }
      assert.is_nil(r2)
      assert.equal("network", err.kind); assert.equal("BAD_URL", err.code)
    end)

    it("resume_from appends the rest (Range, 206) when the file holds exactly that many bytes", function()
      local d = N.tmpdir()
      local whole = N.read_file(srv.dir .. "/static/blob.bin")
      N.write_file(d .. "/part", whole:sub(1, 1000))
      local res = assert(N.transport{ url = base .. "/static/blob.bin", output = d .. "/part", resume_from = 1000 })
      assert.equal(206, res.status)
      assert.equal(#whole - 1000, res.size)
      assert.equal(whole, N.read_file(d .. "/part"))
      -- a file of another size: the whole body from byte 0, no Range
      N.write_file(d .. "/part2", "garbage")
      res = assert(N.transport{ url = base .. "/static/blob.bin", output = d .. "/part2", resume_from = 1000 })
      assert.equal(200, res.status)
      assert.equal(whole, N.read_file(d .. "/part2"))
    end)

    it("on_progress is called as bytes arrive; returning false aborts (network, ABORTED)", function()
      local j = N.run{ call = "transport", url = base .. "/static/blob.bin", progress = true }
      assert.equal(200, j.res.status)
      assert.is_true(j.progress_calls >= 2, tostring(j.progress_calls))
      j = N.run{ call = "transport", url = base .. "/static/blob.bin", progress = true, abort_after = 1 }
      assert.is_nil(j.res)
      assert.equal("network", j.err.kind); assert.equal("ABORTED", j.err.code); assert.is_true(j.err.sent)
    end)

    it("low_speed_time: a body that stalls is a timeout (LOW_SPEED) long before the deadline", function()
      local res, err, elapsed = N.transport{ url = base .. "/raw?case=slowbody", timeout = 5, low_speed_time = 0.5 }
      assert.is_nil(res)
      assert.equal("timeout", err.kind); assert.equal("LOW_SPEED", err.code)
      assert.is_true(elapsed < 1.5, tostring(elapsed))
    end)
  end)

  describe("automatic choice", function()
    it("a client made without `transport` inside nginx uses ngx (also one made in init_by_lua)", function()
      local j = N.run{ call = "raw", method = "GET", base_url = base, path = "/echo" }
      assert.equal("ngx", j.transport)
      assert.truthy(j.result.headers["user-agent"]:find("ngx_lua", 1, true))
      assert.is_nil(j.result.headers["user-agent"]:find("libcurl", 1, true))
      assert.equal("ngx", srv.request{ path = "/phase" }.json.init_transport)
    end)

    it("outside nginx the default stays curl", function()
      local c = require("ugen").new{ api_key = "k" }
      assert.equal("curl", c.transport_name)
    end)
  end)

  describe("phases", function()
    it("a call in init_worker fails naming the phase and the ngx.timer.at way out; the timer works", function()
      local p = srv.request{ path = "/phase" }.json
      assert.truthy(p.init_worker:find("'init_worker' phase", 1, true), p.init_worker)
      assert.truthy(p.init_worker:find("ngx.timer.at", 1, true))
      assert.equal("ok 100", p.timer)
    end)

    it("calls in log and header_filter fail the same way", function()
      assert.equal(200, srv.request{ path = "/logphase" }.status)
      local p
      for _ = 1, 50 do
        p = srv.request{ path = "/phase" }.json
        if p.log then break end
        require("socket").sleep(0.02)
      end
      assert.truthy(p.log:find("'log' phase (log_by_lua*)", 1, true), p.log)
      assert.truthy(p.log:find("ngx.timer.at", 1, true))
      assert.truthy(p.header_filter:find("'header_filter' phase", 1, true), p.header_filter)
    end)

    it("outside nginx the module refuses to load, and transport = 'ngx' says so", function()
      local ok, e = pcall(require, "ugen.transport.ngx")
      assert.is_false(ok)
      assert.truthy(tostring(e):find("lua-nginx-module", 1, true))
      local ok2, e2 = pcall(require("ugen").new, { transport = "ngx" })
      assert.is_false(ok2)
      assert.truthy(tostring(e2):find("transport 'ngx' is not available", 1, true))
    end)
  end)
end)
