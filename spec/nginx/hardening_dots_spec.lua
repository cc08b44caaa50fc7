-- Issue #12 item 2, ngx transport: inside nginx, a path parameter never changes
-- which endpoint is called either. A real nginx runs the SDK (ngx transport,
-- picked by itself) against its own /api/ location, which records every raw
-- request line it receives; "." / ".." / "x/../y" path parameters are refused
-- with kind = "validation" and nothing is sent.
local N = require "support.nginx"
local json = require "ugen.json"

local HTTP = [[
  lua_shared_dict reqlog 1m;
  server {
    listen 127.0.0.1:${PORT1};
    location /api/ {
      content_by_lua_block {
        local d = ngx.shared.reqlog
        local n = d:incr("n", 1, 0)
        d:set(n, ngx.var.request)
        ngx.header["Content-Type"] = "application/json"
        ngx.say('{"ok":true}')
      }
    }
    location = /run {
      content_by_lua_block {
        local ugen = require "ugen"
        local json = require "ugen.json"
        local d = ngx.shared.reqlog
        ngx.req.read_body()
        local spec = json.decode(ngx.req.get_body_data())
        local c = ugen.new{ base_url = "http://127.0.0.1:${PORT1}/api/v1", api_key = "k", max_retries = 0 }
        local out = {}
        for i, call in ipairs(spec) do
          local before = d:get("n") or 0
          local r, err
          if call.what == "jobs.get" then r, err = c.jobs:get(call.v)
          elseif call.what == "music.delete" then r, err = c.music:delete(call.v)
          elseif call.what == "models.try" then r, err = c.models:try(call.v, { prompt = "p" })
          else r, err = c:request(call.method, call.path, { id = call.v }) end
          local sent = {}
          for k = before + 1, d:get("n") or 0 do sent[#sent + 1] = d:get(k) end
          local loc = err and type(err.fields) == "table" and err.fields[1] and err.fields[1].loc
          out[i] = { ok = r ~= nil, kind = err and err.kind, loc = loc, sent = json.array(sent),
                     transport = c.transport_name }
        end
        ngx.header["Content-Type"] = "application/json"
        ngx.say(json.encode(out))
      }
    }
  }
]]

describe("dot segments in path parameters (ngx transport, real nginx)", function()
  local srv
  setup(function() srv = N.start{ ports = 1, http = HTTP } end)
  teardown(function() srv.stop() end)

  local function run(calls)
    local r = srv.request{ method = "POST", path = "/run", json = calls }
    assert.equal(200, r.status, r.body .. srv.log())
    return json.decode(r.body)
  end

  it("jobs:get, music:delete, models:try and client:request refuse dot segments; nothing is sent", function()
    local calls = {}
    for _, v in ipairs({ ".", "..", "../x", "x/..", "a/./b", "x/../../credits/balance", "..\\x" }) do
      calls[#calls + 1] = { what = "jobs.get", v = v }
      calls[#calls + 1] = { what = "music.delete", v = v }
      calls[#calls + 1] = { what = "models.try", v = v }
      calls[#calls + 1] = { what = "raw", method = "GET", path = "/jobs/{id}", v = v }
      calls[#calls + 1] = { what = "raw", method = "DELETE", path = "/music/custom/{id}", v = v }
    end
    local out = run(calls)
    for i, o in ipairs(out) do
      local what = json.encode(calls[i])
      assert.equal("ngx", o.transport)
      assert.is_false(o.ok, what)
      assert.equal("validation", o.kind, what)
      assert.equal("path", o.loc[1], what)
      assert.same({}, o.sent, what)
    end
  end)

  it("ids that merely contain dots go out as written", function()
    local out = run({
      { what = "jobs.get", v = "..." }, { what = "jobs.get", v = ".hidden" }, { what = "music.delete", v = "a..b" },
      { what = "raw", method = "GET", path = "/jobs/{id}", v = "x/y" },
    })
    assert.same({ "GET /api/v1/jobs/... HTTP/1.1" }, out[1].sent)
    assert.same({ "GET /api/v1/jobs/.hidden HTTP/1.1" }, out[2].sent)
    assert.same({ "DELETE /api/v1/music/custom/a..b HTTP/1.1" }, out[3].sent)
    assert.same({ "GET /api/v1/jobs/x%2Fy HTTP/1.1" }, out[4].sent)
    for _, o in ipairs(out) do assert.is_true(o.ok) end
  end)
end)
