-- HTTP/2 multiplexing (#15 item 1), against real nginx over TLS (the TLS
-- sandbox and small nginx servers of this file, private CA):
-- - requests to an origin that speaks HTTP/2 share a few connections (default
--   settings: max_concurrency "auto" = 1024 in flight, the engine's 8
--   connections per HTTP/2 origin, PIPEWAIT) and resume TLS sessions;
-- - an HTTP/1.1 origin (the plain sandbox) keeps 64 requests in flight on 64
--   connections; an https origin without HTTP/2 gets the HTTP/1.1 limits back
--   after its first answer;
-- - a request that is not idempotent is never sent twice by libcurl, even when
--   the HTTP/2 connection it shares with other requests dies under it (libcurl
--   7.88 re-sends a request whose reused connection died before any response
--   byte, on HTTP/2 too; a fresh connection is no protection once another
--   stream joins it).
-- Connections are counted in nginx's access log ($connection). Timing bounds are multiplied
-- by UGEN_TIME_FACTOR (scripts/check.sh sets it under ASan and valgrind).
local S = require "support.sandbox"
local N = require "support.nginx"
local sandbox = require "ugen.sandbox"
local scheduler = require("ugen").scheduler
local ugen = require "ugen"
local core = require "ugen.core"

local now = core.now
local SLOW = tonumber(os.getenv("UGEN_TIME_FACTOR")) or 1

local info, ca, cert -- the TLS sandbox of this file, its CA, a server certificate from it

local function setup_all()
  if info then return end
  info = assert(sandbox.start{ dir = S.tmpdir() .. "/h2-sandbox", tls = true, speed = S.SPEED, seed = S.SEED,
                               owner_pid = N.self_pid() })
  ca = assert(sandbox.tls.ca(info.dir .. "/tls"))
  cert = assert(sandbox.tls.issue(ca, { name = "h2-spec", dns = { "localhost" }, ip = { "127.0.0.1" } }))
end

local function delay(s)
  return { headers = { ["X-Sandbox-Fault"] = "delay=" .. s } }
end

-- access-log lines (sandbox format: "... conn=N reqs=N tls_reused=r|.|-") carrying `marker`
-- (in the User-Agent) -> distinct connections, how many resumed a TLS session, lines.
-- nginx logs a request after its answer went out: waits (up to 5 s) for `want` lines.
local function connections(log_path, marker, want)
  local log
  S.eventually(function()
    local f = assert(io.open(log_path, "rb"))
    log = f:read("*a")
    f:close()
    local n = 0
    for _ in log:gmatch("[^\n]*" .. marker:gsub("%p", "%%%0")) do n = n + 1 end
    return n >= (want or 0)
  end, 5)
  local seen, n, resumed, lines = {}, 0, 0, 0
  for line in log:gmatch("[^\n]+") do
    if line:find(marker, 1, true) then
      lines = lines + 1
      local conn, reused = line:match("conn=(%d+) reqs=%d+ tls_reused=(%S+)")
      assert(conn, line)
      if not seen[conn] then
        seen[conn] = true
        n = n + 1
        if reused == "r" then resumed = resumed + 1 end
      end
    end
  end
  return n, resumed, lines
end

-- n balance calls at once through a new scheduler with default options (warm: one call
-- first, so that the engine holds a TLS session ticket before the burst opens connections)
local function burst(c, n, d, warm)
  local Sx = scheduler.new{ on_error = false }
  if warm then Sx:run(function() assert(c.credits:balance()) end) end
  local ok, t0 = 0, now()
  Sx:run(function()
    for _ = 1, n do
      Sx:spawn(function()
        assert(c.credits:balance(delay(d)))
        ok = ok + 1
      end)
    end
  end)
  local wall = now() - t0
  local st = Sx:stats()
  Sx:close()
  return ok, wall, st
end

local LOG_FORMAT = [[
  log_format h2spec '$request $status "$http_user_agent" conn=$connection reqs=$connection_requests '
                    'tls_reused=$ssl_session_reused';
]]

describe("HTTP/2 multiplexing", function()
  setup(setup_all)
  teardown(function()
    if info then sandbox.stop{ dir = info.dir } end
  end)

  it("shares at most 8 TLS connections among 200 requests at once, with default settings", function()
    assert.equal(1024, scheduler.DEFAULT_MAX_CONCURRENCY_H2)
    local marker = "h2-burst-" .. tostring(now())
    local c = ugen.new{ base_url = info.base_url, api_key = info.api_key, cainfo = info.cainfo, timeout = 15,
                        user_agent = marker }
    local ok, wall, st = burst(c, 200, 0.3, true)
    assert.equal(200, ok)
    -- all at once: "auto" is 1024 in flight for an https origin (was 64)
    assert.equal(200, st.peak_host_inflight)
    assert.equal("auto", st.max_concurrency)
    assert.is_true(wall < 0.9 * SLOW, "200 x 0.3 s requests took " .. wall .. " s")
    local conns, resumed, lines = connections(info.dir .. "/access.log", marker, 201)
    assert.equal(201, lines)                -- the warm-up call and the burst
    assert.is_true(conns >= 2 and conns <= 8, conns .. " connections")   -- 200 > 128 streams: >= 2
    -- the warm-up's connection made the full handshake and its session ticket was read with
    -- its answer; the burst's new connections resume that TLS session
    assert.is_true(resumed >= 1, resumed .. " of " .. conns .. " resumed")
    -- every request went over HTTP/2
    local f = assert(io.open(info.dir .. "/access.log", "rb"))
    local h2 = 0
    for line in f:read("*a"):gmatch("[^\n]+") do
      if line:find(marker, 1, true) and line:find(" HTTP/2.0\"", 1, true) then h2 = h2 + 1 end
    end
    f:close()
    assert.equal(201, h2)
  end)

  it("keeps 64 requests in flight on 64 connections for an HTTP/1.1 origin (plain sandbox)", function()
    local plain = S.info()
    local marker = "h1-burst-" .. tostring(now())
    local c = ugen.new{ base_url = plain.base_url, api_key = S.tenant.default.api_key, timeout = 15,
                        user_agent = marker }
    local ok, _, st = burst(c, 100, 0.2)
    assert.equal(100, ok)
    assert.equal(64, st.peak_host_inflight)
    local conns, _, lines = connections(plain.dir .. "/access.log", marker, 100)
    assert.equal(100, lines)
    assert.equal(64, conns)
  end)

  it("gives an https origin without HTTP/2 the HTTP/1.1 limits after its first answer", function()
    local srv = N.start{ ports = 1, http = LOG_FORMAT .. ([[
  server {
    listen 127.0.0.1:${PORT1} ssl;
    ssl_certificate "%s";
    ssl_certificate_key "%s";
    access_log ${DIR}/h1.log h2spec;
    keepalive_requests 100000;
    location / { content_by_lua_block {
      ngx.sleep(tonumber(ngx.var.arg_d))
      ngx.header["Content-Type"] = "application/json"
      ngx.say('{"ok":true}')
    } }
  }]]):format(cert.cert, cert.key) }
    local marker = "h1tls-" .. tostring(now())
    local c = ugen.new{ base_url = "https://127.0.0.1:" .. srv.ports[1], api_key = info.api_key,
                        cainfo = info.cainfo, timeout = 15, user_agent = marker }
    local D = 0.3 * SLOW
    local Sx = scheduler.new{ on_error = false }
    local ok, t0 = 0, now()
    Sx:run(function()
      for _ = 1, 100 do
        Sx:spawn(function()
          assert(c:request("GET", "/x", { d = D }))
          ok = ok + 1
        end)
      end
    end)
    local wall = now() - t0
    local st = Sx:stats()
    assert.equal(100, ok)
    -- the first 100 went out at once (HTTP/2 was assumed for https): 8 connections until the
    -- first answers (HTTP/1.1), then up to 64; 8 at a time throughout would take 13 x D s
    assert.is_true(wall < 8 * D, "took " .. wall .. " s")
    local conns = connections(srv.dir .. "/h1.log", marker, 100)
    assert.is_true(conns > 8 and conns <= 64, conns .. " connections")
    -- the scheduler learned it: new requests to that origin queue beyond 64
    local more = 0
    Sx:run(function()
      for _ = 1, 80 do
        Sx:spawn(function()
          assert(c:request("GET", "/x", { d = D }))
          more = more + 1
        end)
      end
    end)
    assert.equal(80, more)
    assert.equal(100, st.peak_host_inflight)
    assert.equal(0, st.peak_queued)
    assert.is_true(Sx:stats().peak_queued >= 16, "peak queued " .. Sx:stats().peak_queued)
    Sx:close()
    srv.stop()
  end)

  it("core.engine checks its HTTP/2 options", function()
    core.engine{ max_host_connections_h2 = 2, max_concurrent_streams = 256 }:close()
    assert.has_error(function() core.engine{ max_concurrent_streams = 0 } end,
      "bad argument #1 to 'engine' (opts.max_concurrent_streams: must be an integer >= 1)")
    assert.has_error(function() core.engine{ max_host_connections_h2 = -1 } end,
      "bad argument #1 to 'engine' (opts.max_host_connections_h2: must be an integer >= 0)")
  end)

  it("t:http_version() tells what the answer came over", function()
    local e = core.engine{}
    local t = e:submit{ url = info.origin .. "/_sandbox/health", cainfo = info.cainfo }
    assert.is_nil(t:http_version())
    repeat e:run(1) until t:done()
    assert.equal("2", t:http_version())
    local t2 = e:submit{ url = S.info().origin .. "/_sandbox/health" }
    repeat e:run(1) until t2:done()
    assert.equal("1.1", t2:http_version())
    t:close()
    t2:close()
    assert.has_error(function() t:http_version() end, "ugen.transfer: handle is closed")
    e:close()
  end)
end)

describe("a request that is not idempotent over HTTP/2", function()
  local srv

  setup(function()
    setup_all()
    -- POST /die counts the request, then (the first time only) blocks this worker 0.6 s and
    -- kills it: what reached the connection meanwhile is unread, so the kernel answers the
    -- client with a reset (ECONNRESET, not an orderly end of the stream).
    srv = N.start{ ports = 2, http = ([[
  lua_shared_dict h2spec 1m;
  server {
    listen 127.0.0.1:${PORT1} ssl http2;
    ssl_certificate "%s";
    ssl_certificate_key "%s";
    location = /die { content_by_lua_block {
      ngx.req.read_body()
      local n = ngx.shared.h2spec:incr("die", 1, 0)
      if n == 1 then os.execute("sleep 0.6; kill -9 " .. ngx.worker.pid()) end
      ngx.header["Content-Type"] = "application/json"
      ngx.say('{"n":', n, '}')
    } }
    location = /redirect { return 303 /ok; }
    location / { default_type application/json; return 200 '{"ok":true}'; }
  }
  server {
    listen 127.0.0.1:${PORT2};
    location = /count { content_by_lua_block {
      ngx.say(ngx.shared.h2spec:get("die") or 0)
      ngx.shared.h2spec:set("die", 0)
    } }
  }]]):format(cert.cert, cert.key) }
  end)
  teardown(function() if srv then srv.stop() end end)

  local function count()
    local r = srv.request{ path = "/count", port = 2 }
    return tonumber(r.body:match("%d+"))
  end

  -- libcurl re-sends a request on its own when the connection it went out on dies before any
  -- response byte and that connection counts as reused: on HTTP/2, once any other stream
  -- joined it. Here a GET joins the POST's connection (and gives up before the reset, so the
  -- POST is the one that sees it): before #15 the POST reached the server twice, although it
  -- had its own fresh connection.
  it("is not sent again when its (shared) connection dies before the answer", function()
    count()
    local c = ugen.new{ base_url = "https://127.0.0.1:" .. srv.ports[1], api_key = info.api_key,
                        cainfo = info.cainfo, timeout = 10, max_retries = 2 }
    local Sx = scheduler.new{ on_error = false }
    local post_res, post_err, get_err
    Sx:run(function()
      Sx:spawn(function() post_res, post_err = c:request("POST", "/die", { x = 1 }) end)
      scheduler.sleep(0.15)
      Sx:spawn(function()
        local r, e = c:request("GET", "/ok", nil, { timeout = 0.2, max_retries = 0 })
        assert(r == nil, "the GET cannot be answered while the worker is blocked")
        get_err = e
      end)
    end)
    Sx:close()
    assert.equal("timeout", get_err.kind)
    assert.equal(1, count(), "the POST reached the server more than once")
    assert.is_nil(post_res)
    assert.equal("network", post_err.kind)
    assert.equal(1, post_err.attempts)
    assert.matches("not idempotent", post_err.message)
  end)

  it("is not sent again when the connection it reuses dies before the answer", function()
    count()
    local c = ugen.new{ base_url = "https://127.0.0.1:" .. srv.ports[1], api_key = info.api_key,
                        cainfo = info.cainfo, timeout = 10, max_retries = 2 }
    local Sx = scheduler.new{ on_error = false }
    local post_res, post_err
    Sx:run(function()
      assert(c:request("GET", "/ok"))   -- the connection the POST then reuses (HTTP/2 shares it)
      Sx:spawn(function() post_res, post_err = c:request("POST", "/die", { x = 1 }) end)
      scheduler.sleep(0.15)
      Sx:spawn(function() c:request("GET", "/ok", nil, { timeout = 0.2, max_retries = 0 }) end)
    end)
    Sx:close()
    assert.equal(1, count(), "the POST reached the server more than once")
    assert.is_nil(post_res)
    assert.equal("network", post_err.kind)
    assert.equal(1, post_err.attempts)
  end)

  it("still follows a redirect (a second start that is not a re-send)", function()
    local e = core.engine{}
    local res, err = e:request{ method = "POST", url = "https://127.0.0.1:" .. srv.ports[1] .. "/redirect",
                                body = "x", idempotent = false, follow = true, cainfo = info.cainfo }
    assert.is_nil(err)
    assert.equal(200, res.status)
    assert.matches("/ok$", res.url)
    e:close()
  end)

  it("req.idempotent must be a boolean", function()
    local e = core.engine{}
    assert.has_error(function() e:submit{ url = "https://127.0.0.1:1/", idempotent = "no" } end,
      "bad argument #1 to 'submit' (req.idempotent: boolean expected, got string)")
    e:close()
  end)
end)
