-- Observability inside nginx (the ngx transport, cosockets) against the sandbox: meta.timing
-- has what this transport measures (total, reused via sock:getreusedtimes()), the logger's
-- lines and the hooks run as with libcurl (the retry with its reason), and no secret
-- reaches them.
local N = require "support.nginx"
local S = require "support.sandbox"
local json = require "ugen.json"
local crypto = require "ugen.crypto"

describe("observability inside nginx (ngx transport)", function()
  local srv
  lazy_setup(function()
    S.info()
    srv = N.start{ http = [[
      server {
        listen 127.0.0.1:${PORT1};
        location /observe {
          content_by_lua_block {
            local ugen = require "ugen"
            local json = require "ugen.json"
            ngx.req.read_body()
            local a = json.decode(ngx.req.get_body_data())
            local lines, infos = {}, {}
            local function keep(i)
              infos[#infos + 1] = { attempt = i.attempt, status = i.status, path = i.path, url = i.url,
                headers = i.headers, reason = i.reason, wait = i.wait, duration = i.duration,
                timing = i.timing, error = i.error and { kind = i.error.kind, code = i.error.code } }
            end
            local c = ugen.new{ base_url = a.base_url, api_key = a.api_key, rng = function() return 0 end,
              log_level = "debug", logger = function(level, msg) lines[#lines + 1] = level .. " " .. msg end,
              on_request = keep, on_response = keep, on_retry = keep }
            local plain = ugen.new{ base_url = a.base_url, api_key = a.api_key }
            local metas = {}
            for i = 1, 2 do
              local r, meta = c.credits:balance()
              metas[i] = r and meta.timing or tostring(meta)
            end
            local r2 = c.credits:balance{ headers = { ["X-Sandbox-Fault"] = a.fault } }
            local _, dmeta = plain.credits:balance{ timings = true, headers = { ["X-Sandbox-Fault"] = "delay=0.05" } }
            local pr, pmeta = plain.credits:balance()
            ngx.say(json.encode{ transport = c.transport_name, timings = metas, lines = lines, infos = infos,
                                 retried_ok = r2 ~= nil, plain_ok = pr ~= nil, delayed = dmeta.timing,
                                 plain_timing = pmeta and pmeta.timing or json.null })
          }
        }
      }
    ]] }
  end)
  lazy_teardown(function()
    if srv then srv.stop() end
  end)

  it("meta.timing (total, reused over keep-alive), log lines and hooks with the retry; no secret", function()
    local key = S.tenant.default.api_key
    local r = srv.request{ method = "POST", path = "/observe", timeout = 60,
      body = json.encode{ base_url = S.info().base_url, api_key = key,
                          fault = "status=503;count=1;key=obs-ngx-" .. crypto.uuid4() } }
    assert.equal(200, r.status, r.body)
    local out = assert(json.decode(r.body))
    assert.equal("ngx", out.transport)
    local t1, t2 = out.timings[1], out.timings[2]
    assert.is_table(t1, tostring(t1))
    -- nginx's clock counts milliseconds: a loopback exchange may take 0 of them
    assert.is_true(t1.total >= 0 and t2.total >= 0)
    -- the first request of this worker connects; the second comes from the keepalive pool
    assert.is_false(t1.reused)
    assert.is_true(t2.reused)
    -- an answer the sandbox delays by 50 ms: measured
    assert.is_true(out.delayed.total >= 0.045 and out.delayed.total < 5, tostring(out.delayed.total))
    assert.is_true(out.delayed.reused)
    assert.is_nil(t1.connect)           -- not measured by this transport
    assert.is_true(out.plain_ok)
    assert.is_nil(out.plain_timing)     -- not asked: not measured (null)
    assert.is_true(out.retried_ok)
    local text = table.concat(out.lines, "\n")
    assert.truthy(text:find("\ninfo event=response method=GET path=/api/v1/credits/balance status=503 attempt=1 "
      .. "duration_ms=[%d.]+ error=api code=SERVICE_UNAVAILABLE request_id=%x+ total_ms=[%d.]+ reused=%a+\n"), text)
    assert.truthy(text:find("\ninfo event=retry method=GET path=/api/v1/credits/balance status=503 attempt=1 retry=1 "
      .. "max_retries=2 wait_s=0.250 reason=server_error", 1, true), text)
    local retry
    for _, i in ipairs(out.infos) do if i.reason then retry = i end end
    assert.equal("server_error", retry.reason)
    assert.equal("<redacted>", out.infos[1].headers["X-API-Key"])
    assert.is_nil(r.body:find(key, 1, true), r.body)
  end)
end)
