-- Issue 12, items 5, 7, 8, 9 with the ngx transport, inside a real nginx:
-- the response-size cap (same option, default, error as the curl transport),
-- downloads that never write through a link planted at the .part, truncated
-- downloads not renamed into place, user headers only to the API's origin and
-- no https -> http redirect. The SDK runs in nginx (spec/nginx/server/hardening_app.lua);
-- the hostile servers are spec/support/hostile_httpd.lua (two origins) and a
-- TLS server block of the same nginx.
local N = require "support.nginx"
local hostile = require "support.hostile"
local ugen = require "ugen"
local util = require "support.util"

local read_file, write_file, run, q = util.read_file, util.write_file, util.run, util.q

local function pattern(n)
  local t = {}
  for i = 0, n - 1 do t[#t + 1] = string.char((i * 7 + 3) % 251) end
  return table.concat(t)
end

local function exists(path) return run("test -e " .. q(path) .. " -o -L " .. q(path)) end

local KEY = "hardening-key-0123456789"

local HTTP = [[
  lua_ssl_trusted_certificate ${DIR}/tls.crt;
  lua_ssl_verify_depth 2;
  server {
    listen 127.0.0.1:${PORT1};
    location = /run { content_by_lua_block { require("hardening_app").run() } }
  }
  server {
    listen 127.0.0.1:${PORT2} ssl;
    ssl_certificate ${DIR}/tls.crt;
    ssl_certificate_key ${DIR}/tls.key;
    location = /to_http { return 302 ${HTTP_TARGET}; }
    location = /to_https { return 302 https://127.0.0.1:${PORT2}/video.bin; }
    location = /video.bin { alias ${DIR}/video.bin; }
  }
]]

describe("ngx transport hardening (nginx, one worker)", function()
  local srv, bad, dir, A, B
  local seq = 0

  setup(function()
    bad = hostile.start()
    A = function(path) return bad.url(1, path) end   -- the API's origin
    B = function(path) return bad.url(2, path) end   -- another origin
    srv = N.start{
      ports = 2, http = HTTP, vars = { HTTP_TARGET = B("/video?n=100") },
      prepare = function(d)
        N.make_cert(d, "tls")
        write_file(d .. "/video.bin", pattern(100))
      end,
    }
    dir = srv.dir .. "/downloads"
    assert(run("mkdir -p " .. q(dir)))
  end)

  teardown(function()
    if srv then srv.stop() end
    if bad then bad.stop() end
  end)

  local function call(spec)
    spec.base_url = spec.base_url or A("/api/v1")
    spec.api_key = spec.api_key or KEY
    local r = srv.request{ method = "POST", path = "/run", json = spec, timeout = 60 }
    assert(r.status == 200, "POST /run: HTTP " .. tostring(r.status) .. " " .. tostring(r.body))
    assert(r.json.raised == nil, r.json.raised)
    assert.equal("ngx", r.json.transport)
    return r.json
  end

  local function download(url, path, spec)
    spec = spec or {}
    spec.op, spec.url, spec.path = "download", url, path
    return call(spec)
  end

  local function fresh_path()
    seq = seq + 1
    return dir .. "/video" .. seq .. ".mp4"
  end

  describe("item 5: response-size cap", function()
    it("the default cap is the curl transport's", function()
      local j = call{ op = "max_body" }
      assert.equal(require("ugen.transport.curl").MAX_BODY, j.max_body)
      assert.equal(64 * 1024 * 1024, j.max_body)
    end)

    -- The same request through both transports with the same lowered cap.
    local function both(params, cap)
      bad.log()
      local j = call{ op = "request", base_url = A(""), path = "/big", params = params, max_body = cap }
      local in_nginx = bad.log()[1]
      local curl = require "ugen.transport.curl"
      local saved = curl.MAX_BODY
      curl.MAX_BODY = cap
      local ok, r, err = pcall(function()
        local c = ugen.new{ base_url = A(""), api_key = KEY, max_retries = 0, transport = "curl" }
        return c:request("GET", "/big", params)
      end)
      curl.MAX_BODY = saved
      assert(ok, r)
      assert.is_nil(r)
      return j, in_nginx, err, bad.log()[1]
    end

    for _, case in ipairs{ { what = "with Content-Length (refused before reading)", params = {} },
                           { what = "chunked (fails once past the cap)", params = { chunked = 1 } } } do
      it("a body over the cap, " .. case.what .. ": decode TOO_LARGE, as with curl", function()
        local params = { n = 16000000, pause = 2 }
        for k, v in pairs(case.params) do params[k] = v end
        local j, served, curl_err = both(params, 300000)
        assert.is_false(j.ok)
        assert.equal("decode", j.err.kind); assert.equal("TOO_LARGE", j.err.code, j.err.message)
        assert.equal("response body larger than 300000 bytes", j.err.message)
        assert.is_false(j.err.retryable); assert.equal(1, j.err.attempts)
        -- the same error as the curl transport gives
        assert.equal(curl_err.kind, j.err.kind); assert.equal(curl_err.code, j.err.code)
        assert.equal(curl_err.message, j.err.message)
        -- nginx stopped reading: the server could not send the whole body
        assert.is_false(served.complete)
        assert.is_true(served.sent < 16000000)
        assert.is_true(j.elapsed < 1.5, tostring(j.elapsed))
      end)
    end

    it("a body under the cap is read", function()
      local j = call{ op = "request", base_url = A(""), path = "/big", params = { n = 1000 }, max_body = 300000 }
      -- not JSON: a decode error, but not the cap's
      assert.equal("decode", j.err.kind); assert.is_nil(j.err.code)
    end)
  end)

  describe("item 9: headers and https", function()
    it("a download from another origin gets neither credentials nor the user's headers (no hop of a redirect)",
      function()
        bad.log()
        local j = download(B("/video?n=100"), fresh_path(), { headers = { ["X-Client-Secret"] = "c" },
                                                              opts = { headers = { ["X-Call-Secret"] = "x" } } })
        assert.is_true(j.ok, j.err and j.err.message)
        local to_a = A("/video?n=50"):gsub("[:/?=]", function(ch) return ("%%%02X"):format(ch:byte()) end)
        j = download(B("/redirect?to=" .. to_a), fresh_path(), { headers = { ["X-Client-Secret"] = "c" },
                                                                 opts = { headers = { ["X-Call-Secret"] = "x" } } })
        assert.is_true(j.ok, j.err and j.err.message)
        local log = bad.log()
        assert.equal(3, #log)
        for _, entry in ipairs(log) do
          assert.is_nil(entry.headers["x-api-key"]); assert.is_nil(entry.headers["x-client-secret"])
          assert.is_nil(entry.headers["x-call-secret"])
        end
        -- on the API's origin they go
        j = download(A("/video?n=10"), fresh_path(), { headers = { ["X-Client-Secret"] = "c" } })
        assert.is_true(j.ok)
        local h = bad.log()[1].headers
        assert.equal(KEY, h["x-api-key"]); assert.equal("c", h["x-client-secret"])
      end)

    it("https -> http is refused (tls, INSECURE_REDIRECT); https -> https is followed", function()
      bad.log()
      local path = fresh_path()
      local j = download(srv.url("/to_http", 2):gsub("^http:", "https:"), path, { max_retries = 2 })
      assert.is_false(j.ok)
      assert.equal("tls", j.err.kind); assert.equal("INSECURE_REDIRECT", j.err.code)
      assert.is_false(j.err.retryable); assert.equal(1, j.err.attempts)
      assert.same({}, bad.log())
      assert.is_false(exists(path)); assert.is_false(exists(path .. ".part"))
      j = download(srv.url("/to_https", 2):gsub("^http:", "https:"), path)
      assert.is_true(j.ok, j.err and j.err.message)
      assert.equal(pattern(100), read_file(path))
    end)
  end)

  describe("item 8: truncated downloads", function()
    it("206 'bytes 0-49999/*' cut short is incomplete; a reset or a cut chunked body fails; a clean close ends it",
      function()
        for _, url in ipairs{ B("/star?n=50000&cut=1000"), B("/star?n=50000&cut=1000&cl=1") } do
          local path = fresh_path()
          local j = download(url, path)
          assert.is_false(j.ok, url)
          assert.equal("INCOMPLETE_DOWNLOAD", j.err.code); assert.equal(1000, j.err.part_bytes)
          assert.is_false(exists(path))
        end
        for _, url in ipairs{ B("/reset?cut=1000"), B("/chunked_cut?cut=1000") } do
          local path = fresh_path()
          local j = download(url, path)
          assert.is_false(j.ok, url)
          assert.equal("network", j.err.kind, url)
          assert.is_false(exists(path))
        end
        local j = download(B("/close?cut=1000"), fresh_path())
        assert.is_true(j.ok); assert.equal(1000, j.result.size)
      end)
  end)

  describe("item 7: links at the .part", function()
    it("a symbolic link is replaced, not followed; a hard link is not appended to", function()
      for _, hard in ipairs{ false, true } do
        local path = fresh_path()
        local victim = path .. ".victim"
        write_file(victim, "VICTIM CONTENT")
        assert(run(("ln %s %s %s"):format(hard and "" or "-s", q(victim), q(path .. ".part"))))
        local j = download(B("/range?n=3000"), path)
        assert.is_true(j.ok, j.err and j.err.message)
        assert.is_nil(j.result.resumed_from)
        assert.equal("VICTIM CONTENT", read_file(victim))
        assert.equal(pattern(3000), read_file(path))
      end
    end)

    it("a dangling symbolic link: its target is not created", function()
      local path = fresh_path()
      local target = path .. ".never"
      assert(run(("ln -s %s %s"):format(q(target), q(path .. ".part"))))
      local j = download(B("/video?n=100"), path)
      assert.is_true(j.ok, j.err and j.err.message)
      assert.is_false(exists(target))
      assert.equal(pattern(100), read_file(path))
    end)

    it("a regular .part still resumes (206)", function()
      local path = fresh_path()
      write_file(path .. ".part", pattern(1000))
      local j = download(B("/range?n=3000"), path)
      assert.is_true(j.ok, j.err and j.err.message)
      assert.equal(206, j.result.status); assert.equal(1000, j.result.resumed_from)
      assert.equal(pattern(3000), read_file(path))
    end)
  end)
end)
