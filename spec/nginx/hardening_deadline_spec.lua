-- Issue 12, item 4, inside nginx (the ngx transport: cosockets and ngx.sleep):
-- jobs:wait, ugen.ngx.wait_all and a per-call timeout against a server that
-- accepts and never answers (spec/support/deadline_httpd.lua) return at their
-- deadline, not after every attempt's full client timeout.
local N = require "support.nginx"
local D = require "support.deadline_server"
local json = require "ugen.json"

local MARGIN = 0.5

describe("deadlines inside nginx (issue 12 item 4)", function()
  local srv, hang
  lazy_setup(function()
    hang = D.start()
    srv = N.start{ http = [[
      server {
        listen 127.0.0.1:${PORT1};
        location /deadline {
          content_by_lua_block {
            local ugen = require "ugen"
            local json = require "ugen.json"
            local ugen_ngx = require "ugen.ngx"
            local a = ngx.req.get_uri_args()
            -- a long client timeout, like the issue's 60 s: the deadlines must win
            local c = ugen.new{ base_url = a.base_url, api_key = "k", timeout = 20, max_retries = 2,
                                rng = function() return 0 end }
            local timeout = tonumber(a.timeout)
            ngx.update_time()
            local t0 = ngx.now()
            local r, err
            if a.what == "wait" then
              r, err = c.jobs:wait("job-1", { timeout = timeout, interval = 0.5 })
            elseif a.what == "wait_all" then
              local _, errs = ugen_ngx.wait_all(c, { "a", "b", "c" }, { timeout = timeout, interval = 0.5 })
              err = errs[3]
            else
              r, err = c.jobs:get("job-1", { timeout = timeout })
            end
            ngx.update_time()
            ngx.say(json.encode{ transport = c.transport_name, elapsed = ngx.now() - t0, ok = r ~= nil,
                                 kind = err and err.kind, code = err and err.code })
          }
        }
      }
    ]] }
  end)
  lazy_teardown(function()
    if srv then srv.stop() end
    if hang then hang.stop() end
  end)

  local function call(what, timeout)
    local r = srv.request{ path = ("/deadline?what=%s&timeout=%g&base_url=%s/hang"):format(what, timeout, hang.base),
                           timeout = 120 }
    assert.equal(200, r.status, r.body)
    local out = assert(json.decode(r.body))
    assert.equal("ngx", out.transport)
    return out
  end

  it("jobs:wait returns WAIT_TIMEOUT at its timeout", function()
    local r = call("wait", 2)
    assert.is_false(r.ok)
    assert.equal("timeout", r.kind)
    assert.equal("WAIT_TIMEOUT", r.code)
    assert.is_true(r.elapsed >= 1.95 and r.elapsed < 2 + MARGIN, "returned after " .. r.elapsed .. " s")
  end)

  it("ugen.ngx.wait_all: one deadline for every job", function()
    local r = call("wait_all", 1.5)
    assert.equal("WAIT_TIMEOUT", r.code)
    assert.is_true(r.elapsed < 1.5 + MARGIN, "returned after " .. r.elapsed .. " s")
  end)

  it("a per-call timeout bounds the call, retries included", function()
    local r = call("get", 1)
    assert.is_false(r.ok)
    assert.equal("timeout", r.kind)
    assert.is_true(r.elapsed < 1 + MARGIN, "returned after " .. r.elapsed .. " s")
  end)
end)
