-- Issue #12 item 2: a path parameter never changes which endpoint is called.
-- libcurl removes "." and ".." segments before sending (jobs:get("..") went out
-- as GET /api/v1/), and servers such as nginx decode %2F and %2E first and then
-- resolve them (jobs:get("x/../../credits") reached /api/v1/credits). Such
-- values are refused with kind = "validation" before anything is sent; the
-- server here records every request line it receives. (The ngx transport:
-- spec/nginx/hardening_dots_spec.lua.)
local ugen = require "ugen"
local endpoints = require "ugen.endpoints"
local echo_api = require "support.echo_api"

local unpack = table.unpack or unpack -- luacheck: ignore 143

local OK = { headers = { ["X-Hostile"] = "ok" } }

local DOTTY = { ".", "..", "../x", "./x", "x/..", "x/.", "a/../b", "x/../../credits/balance", "..\\x", "a\\.\\b",
                "../", "/.." }
local PLAIN = { "...", ".hidden", "a..b", "v1.2", "..a", "a.", "x/y", "%2e%2e" }

describe("dot segments in path parameters (libcurl transport, loopback server recording request lines)", function()
  local srv, c
  local function sent_since(n)
    local all, out = srv.requests(), {}
    for i = n + 1, #all do out[#out + 1] = all[i] end
    return out
  end
  setup(function()
    srv = echo_api.start()
    c = ugen.new{ base_url = srv.base, api_key = "k", max_retries = 0 }
  end)
  teardown(function() srv.stop() end)

  local function refused(res, err, name, what)
    assert.is_nil(res, what)
    assert.is_table(err, what)
    assert.equal("validation", err.kind, what .. ": " .. tostring(err))
    local found
    for _, f in ipairs(err.fields) do
      if f.loc[1] == "path" and f.loc[2] == name then found = f end
    end
    assert.is_table(found, what .. ": " .. tostring(err))
    assert.matches("'..'", found.msg, 1, true)
  end

  it("jobs:get / music:delete refuse '.', '..' and values holding such a segment; nothing is sent", function()
    local before = #srv.requests()
    for _, v in ipairs(DOTTY) do
      local res, err = c.jobs:get(v, OK)
      refused(res, err, "job_id", "jobs:get(" .. v .. ")")
      res, err = c.music:delete(v, OK)
      refused(res, err, "music_id", "music:delete(" .. v .. ")")
    end
    assert.same({}, sent_since(before))
  end)

  it("every endpoint with a path parameter refuses '..' before sending", function()
    local before = #srv.requests()
    local n = 0
    for _, ep in ipairs(endpoints.list) do
      if #ep.path_params > 0 then
        local r = c[ep.resource]
        local argv = {}
        for i = 1, #ep.path_params do argv[i] = ".." end
        local takes = ep.open_body
        for _, p in ipairs(ep.params) do if p["in"] ~= "path" then takes = true end end
        if takes then argv[#argv + 1] = {} end
        argv[#argv + 1] = OK
        local res, err = r[ep.name](r, unpack(argv))
        refused(res, err, ep.path_params[1], ep.resource .. ":" .. ep.name)
        n = n + 1
      end
    end
    assert.is_true(n >= 4)
    assert.same({}, sent_since(before))
  end)

  it("client:request refuses them in {name} parameters too (kind validation, nothing sent)", function()
    local before = #srv.requests()
    for _, v in ipairs(DOTTY) do
      local res, err = c:request("GET", "/jobs/{job_id}", { job_id = v }, OK)
      refused(res, err, "job_id", "request GET /jobs/{job_id} " .. v)
      res, err = c:request("DELETE", "/music/custom/{music_id}", { music_id = v }, OK)
      refused(res, err, "music_id", "request DELETE " .. v)
    end
    assert.same({}, sent_since(before))
  end)

  it("jobs:download(id) with a dot-segment id is refused before the job is fetched", function()
    local before = #srv.requests()
    local tmp = os.tmpname()
    local res, err = c.jobs:download("..", tmp .. ".mp4", OK)
    os.remove(tmp)
    refused(res, err, "job_id", "jobs:download")
    assert.is_nil(io.open(tmp .. ".mp4", "rb"))
    assert.same({}, sent_since(before))
  end)

  it("ids that merely contain dots go out as written, to the endpoint asked for", function()
    for _, v in ipairs(PLAIN) do
      local before = #srv.requests()
      assert(c.jobs:get(v, OK))
      local enc = v:gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end)
      assert.equal("GET /api/v1/jobs/" .. enc .. " HTTP/1.1", srv.requests()[before + 1])
      assert(c:request("DELETE", "/music/custom/{id}", { id = v }, OK))
      assert.equal("DELETE /api/v1/music/custom/" .. enc .. " HTTP/1.1", srv.requests()[before + 2])
    end
  end)
end)
