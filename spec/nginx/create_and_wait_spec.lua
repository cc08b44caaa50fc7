-- jobs:create_and_wait and the credit guard inside nginx (the ngx transport and
-- runtime: cosockets, ngx.sleep), against the sandbox.
local S = require "support.sandbox"
local L = require "support.lua_in_nginx"
local util = require "support.util"

describe("jobs:create_and_wait inside nginx (sandbox)", function()
  local srv, dir
  setup(function()
    S.info()
    srv = L.start{ UGEN_BASE_URL = S.info().base_url, UGEN_API_KEY = S.tenant.acme.api_key }
    dir = S.tmpdir()
  end)
  teardown(function() if srv then srv.stop() end end)
  before_each(function() S.reset("acme") end)

  local function run(code)
    local path = dir .. "/" .. tostring(math.random(1e9)) .. ".lua"
    util.write_file(path, code)
    return srv.run_file(path)
  end

  it("creates, waits on the ngx runtime, returns the completed job", function()
    local r = run([[
      local ugen = require "ugen"
      local client = ugen.new{}
      assert(client.runtime.name == "ngx", client.runtime.name)
      local n = 0
      local job, err = client.jobs:create_and_wait({ product_name = "Nginx Mug", segment_count = 1,
        product_image_url = "https://example.com/m.jpg" }, { interval = 0.05, timeout = 30,
        on_progress = function() n = n + 1 end })
      assert(job, tostring(err))
      ngx.say(job.status, " ", job.job_id, " ", n)
    ]])
    assert.equal(200, r.status, r.body)
    local status, id, n = r.body:match("^(%S+) (%S+) (%d+)")
    assert.equal("completed", status)
    assert.is_true(tonumber(n) >= 2)
    assert.equal(200, S.request{ path = "/jobs/" .. id, tenant = "acme" }.status)
  end)

  it("over budget: kind budget, no job created", function()
    local r = run([[
      local client = require("ugen").new{}
      local job, err = client.jobs:create_and_wait({ product_name = "Nginx Mug", segment_count = 1,
        product_image_url = "https://example.com/m.jpg" }, { max_credits = 1, interval = 0.05, timeout = 30 })
      assert(not job)
      ngx.say(err.kind, " ", err.code, " ", tostring(err.job_id))
    ]])
    assert.equal(200, r.status, r.body)
    assert.equal("budget OVER_BUDGET nil\n", r.body)
    local jobs = S.request{ path = "/jobs", tenant = "acme" }
    assert.equal(0, jobs.json.total)
  end)
end)
