-- Issue 12, items 5, 7, 8, 9 with the curl transport: downloads never write
-- outside `path` and `path .. ".part"` (no symbolic or hard link at the .part
-- is followed), a truncated download is never renamed into place, the
-- user's headers and credentials go only to the API's origin, a redirect from
-- https to http is refused, and an error body is capped in memory even when
-- the request streams to a file. Real libcurl against spec/support/hostile_httpd.lua
-- (two ports: two origins) and `openssl s_server` for TLS.
local ugen = require "ugen"
local native = require "ugen.native"
local util = require "support.util"
local hostile = require "support.hostile"

local read_file, write_file, run, q = util.read_file, util.write_file, util.run, util.q

local function pattern(n)
  local t = {}
  for i = 0, n - 1 do t[#t + 1] = string.char((i * 7 + 3) % 251) end
  return table.concat(t)
end

local function is_symlink(path) return run("test -L " .. q(path)) end
local function exists(path) return run("test -e " .. q(path) .. " -o -L " .. q(path)) end

local KEY = "hardening-key-0123456789"

describe("downloads (curl transport, hostile servers)", function()
  local srv, dir, A, B
  local seq = 0

  setup(function()
    srv = hostile.start()
    A = function(path) return srv.url(1, path) end   -- the API's origin
    B = function(path) return srv.url(2, path) end   -- a CDN: another origin
    dir = os.tmpname()
    os.remove(dir)
    assert(run("mkdir -p " .. q(dir)))
  end)

  teardown(function()
    if srv then srv.stop() end
    if dir then run("rm -rf " .. q(dir)) end
  end)

  local function client(o)
    local opts = { base_url = A("/api/v1"), api_key = KEY, max_retries = 0, rng = function() return 0 end,
                   headers = { ["X-Client-Secret"] = "client-level" } }
    for k, v in pairs(o or {}) do opts[k] = v end
    if opts.api_key == false then opts.api_key = nil end
    return ugen.new(opts)
  end

  local function fresh_path()
    seq = seq + 1
    return dir .. "/video" .. seq .. ".mp4"
  end

  local function download(c, url, path, opts)
    return c.jobs:download({ job_id = "j", final_video_url = url }, path, opts)
  end

  describe("item 9: headers and credentials stay on the API's origin", function()
    it("a download from another origin gets neither credentials nor the client's or the call's headers", function()
      local c = client()
      srv.log()
      local path = fresh_path()
      local r = assert(download(c, B("/video?n=100"), path, { headers = { ["X-Call-Secret"] = "per-call" } }))
      assert.equal(100, r.size)
      local log = srv.log()
      assert.equal(1, #log)
      local h = log[1].headers
      assert.is_nil(h["x-api-key"]); assert.is_nil(h["authorization"])
      assert.is_nil(h["x-client-secret"]); assert.is_nil(h["x-call-secret"])
      assert.equal("identity", h["accept-encoding"])         -- the SDK's own headers still go
      assert.truthy(h["user-agent"]:find("lua-ugen/", 1, true))
      -- the same download on the API's origin carries all three
      assert(download(c, A("/video?n=100"), fresh_path(), { headers = { ["X-Call-Secret"] = "per-call" } }))
      h = srv.log()[1].headers
      assert.equal(KEY, h["x-api-key"])
      assert.equal("client-level", h["x-client-secret"]); assert.equal("per-call", h["x-call-secret"])
    end)

    it("a JWT client: no Authorization to another origin either", function()
      local c = client{ api_key = false, jwt = "jwt-token-0123456789" }
      srv.log()
      assert(download(c, B("/video?n=10"), fresh_path()))
      assert.is_nil(srv.log()[1].headers["authorization"])
    end)

    it("no hop of a redirect chain gets them (CDN -> API origin, CDN -> CDN)", function()
      local c = client()
      srv.log()
      local to_a = A("/video?n=50"):gsub("[:/?=]", function(ch) return ("%%%02X"):format(ch:byte()) end)
      local r = assert(download(c, B("/redirect?to=" .. to_a), fresh_path(), { headers = { ["X-Call-Secret"] = "x" } }))
      assert.equal(50, r.size)
      local log = srv.log()
      assert.equal(2, #log)
      assert.equal("/redirect", log[1].path); assert.equal(srv.ports[2], tonumber(log[1].port))
      assert.equal("/video", log[2].path); assert.equal(srv.ports[1], tonumber(log[2].port))
      for _, entry in ipairs(log) do
        assert.is_nil(entry.headers["x-api-key"]); assert.is_nil(entry.headers["x-client-secret"])
        assert.is_nil(entry.headers["x-call-secret"])
      end
    end)
  end)

  describe("item 9: https -> http redirects are refused", function()
    local tls_dir, pid, port

    setup(function()
      tls_dir = dir .. "/tls"
      assert(run("mkdir -p " .. q(tls_dir)))
      assert(run(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
        .. "-addext subjectAltName=DNS:localhost -keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1")
        :format(q(tls_dir), q(tls_dir))), "openssl is required (scripts/deps.sh installs it)")
      -- `s_server -HTTP` answers GET /<file> with the file's bytes: a complete HTTP response
      write_file(tls_dir .. "/to_http", "HTTP/1.0 302 Found\r\nLocation: " .. B("/video?n=100")
        .. "\r\nContent-Length: 0\r\n\r\n")
      write_file(tls_dir .. "/to_https", "HTTP/1.0 302 Found\r\nLocation: /video.bin\r\nContent-Length: 0\r\n\r\n")
      write_file(tls_dir .. "/video.bin", "HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n" .. pattern(100))
      local e = native.engine()
      for _ = 1, 20 do
        port = 20000 + math.random(0, 30000)
        local p = io.popen(("cd %s && env -u LD_PRELOAD openssl s_server -quiet -HTTP -accept 127.0.0.1:%d "
          .. "-cert cert.pem -key key.pem >/dev/null 2>&1 & echo $!"):format(q(tls_dir), port))
        pid = tonumber(p:read("*a"))
        p:close()
        local deadline, up = native.now() + 3, false
        while native.now() < deadline do
          local _, err = e:request { url = ("http://127.0.0.1:%d/"):format(port), timeout = 1 }
          if not (err and err.curl_code == 7) then up = true; break end
          native.sleep(0.05)
        end
        if up then break end
        run("kill " .. pid .. " 2>/dev/null")
        pid = nil
      end
      e:close()
      assert(pid, "openssl s_server did not start")
    end)

    teardown(function()
      if pid then run("kill " .. pid .. " 2>/dev/null") end
    end)

    it("a download over https redirected to http fails with kind tls, INSECURE_REDIRECT; nothing is fetched", function()
      local c = client{ cainfo = tls_dir .. "/cert.pem", max_retries = 2 }
      srv.log()
      local path = fresh_path()
      local r, err = download(c, ("https://localhost:%d/to_http"):format(port), path)
      assert.is_nil(r)
      assert.equal("tls", err.kind); assert.equal("INSECURE_REDIRECT", err.code)
      assert.is_false(err.retryable); assert.equal(1, err.attempts)
      assert.matches("https", err.message)
      assert.is_false(exists(path)); assert.is_false(exists(path .. ".part"))
      assert.same({}, srv.log())                               -- the http URL was never requested
      -- https -> https is followed
      r = assert(download(c, ("https://localhost:%d/to_https"):format(port), path))
      assert.equal(100, r.size)
      assert.equal(pattern(100), read_file(path))
    end)
  end)

  describe("item 8: a truncated download is never renamed into place", function()
    it("206 'bytes 0-49999/*' with 1000 bytes then a close is incomplete (with or without Content-Length)", function()
      local c = client()
      for _, url in ipairs{ B("/star?n=50000&cut=1000"), B("/star?n=50000&cut=1000&cl=1") } do
        local path = fresh_path()
        local r, err = download(c, url, path)
        assert.is_nil(r, url)
        assert.equal("network", err.kind); assert.equal("INCOMPLETE_DOWNLOAD", err.code)
        assert.is_true(err.retryable)
        assert.matches("1000 of 50000", err.message)
        assert.is_false(exists(path))
        assert.equal(1000, err.part_bytes)                      -- kept for the next call to resume
      end
    end)

    it("a 206 whose range is all there is accepted even with total '*'", function()
      local path = fresh_path()
      local r = assert(download(client(), B("/star?n=1000&cut=1000"), path))
      assert.equal(206, r.status); assert.equal(1000, r.size)
      assert.equal(pattern(1000), read_file(path))
    end)

    it("without a length: a reset or a chunked body without its last chunk fails; a clean close ends the body",
      function()
        local c = client()
        for _, url in ipairs{ B("/reset?cut=1000"), B("/chunked_cut?cut=1000") } do
          local path = fresh_path()
          local r, err = download(c, url, path)
          assert.is_nil(r, url)
          assert.equal("network", err.kind, url)
          assert.is_false(exists(path))
        end
        local path = fresh_path()
        local r = assert(download(c, B("/close?cut=1000"), path))
        assert.equal(1000, r.size)
        r = assert(download(c, B("/chunked?n=1000"), fresh_path()))
        assert.equal(1000, r.size)
      end)
  end)

  describe("item 7: nothing is written outside path and path .. '.part'", function()
    it("a symbolic link planted at the .part is replaced, not followed (not resumed from)", function()
      local path = fresh_path()
      local victim = dir .. "/victim-link"
      write_file(victim, "VICTIM CONTENT")
      assert(run(("ln -s %s %s"):format(q(victim), q(path .. ".part"))))
      -- a server that honours Range: resuming from the link would append to the victim
      local r = assert(download(client(), B("/range?n=3000"), path))
      assert.equal(200, r.status); assert.equal(3000, r.size); assert.is_nil(r.resumed_from)
      assert.equal("VICTIM CONTENT", read_file(victim))
      assert.equal(pattern(3000), read_file(path))
      assert.is_false(exists(path .. ".part"))
    end)

    it("a dangling symbolic link at the .part does not create its target", function()
      local path = fresh_path()
      local target = dir .. "/created-through-link"
      assert(run(("ln -s %s %s"):format(q(target), q(path .. ".part"))))
      assert(download(client(), B("/video?n=100"), path))
      assert.is_false(exists(target))
      assert.equal(pattern(100), read_file(path))
    end)

    it("a hard link at the .part is not appended to", function()
      local path = fresh_path()
      local victim = dir .. "/victim-hard"
      write_file(victim, "VICTIM")
      assert(run(("ln %s %s"):format(q(victim), q(path .. ".part"))))
      local r = assert(download(client(), B("/range?n=100"), path))
      assert.is_nil(r.resumed_from)
      assert.equal("VICTIM", read_file(victim))
      assert.equal(pattern(100), read_file(path))
    end)

    it("a symbolic link at path is replaced by the video (rename does not follow it)", function()
      local path = fresh_path()
      local victim = dir .. "/victim-final"
      write_file(victim, "KEEP ME")
      assert(run(("ln -s %s %s"):format(q(victim), q(path))))
      assert(download(client(), B("/video?n=100"), path))
      assert.equal("KEEP ME", read_file(victim))
      assert.is_false(is_symlink(path))
      assert.equal(pattern(100), read_file(path))
    end)

    it("a directory at the .part is an error, and nothing is written", function()
      local path = fresh_path()
      assert(run("mkdir -p " .. q(path .. ".part/sub")))
      local r, err = download(client(), B("/video?n=100"), path)
      assert.is_nil(r)
      assert.equal("io", err.kind); assert.is_false(err.retryable)   -- a local problem (issue 16 item 6)
      assert.is_false(exists(path))
      assert.is_true(run("test -d " .. q(path .. ".part/sub")))
    end)

    it("a path with a NUL byte (which would name another file) raises, naming the argument", function()
      local c = client()
      assert.has_error(function() download(c, B("/video?n=10"), dir .. "/x.mp4\0/../../elsewhere") end,
        "bad argument #2 to 'download' (file path contains a NUL byte)")
    end)

    it("a regular .part still resumes", function()
      local path = fresh_path()
      write_file(path .. ".part", pattern(100))
      local r = assert(download(client(), B("/range?n=300"), path))
      assert.equal(206, r.status); assert.equal(100, r.resumed_from)
      assert.equal(300, r.size); assert.equal(pattern(300), read_file(path))
    end)
  end)

  describe("item 5: the in-memory cap also holds for a request that streams to a file", function()
    it("a huge error body to a download is TOO_LARGE, not read whole (chunked, or announced)", function()
      local curl = require "ugen.transport.curl"
      for _, url in ipairs{ B("/big?status=404&chunked=1&n=8000000&pause=2"),
                            B("/big?status=404&n=8000000&pause=2") } do
        local saved = curl.MAX_BODY
        curl.MAX_BODY = 100000
        srv.log()
        local path = fresh_path()
        local ok, r, err = pcall(download, client(), url, path)
        curl.MAX_BODY = saved
        assert(ok, r)
        assert.is_nil(r)
        assert.equal("decode", err.kind); assert.equal("TOO_LARGE", err.code)
        assert.equal("response body larger than 100000 bytes", err.message)
        assert.is_false(exists(path)); assert.is_false(exists(path .. ".part"))
        local entry = srv.log()[1]
        assert.is_false(entry.complete)
      end
    end)
  end)
end)
