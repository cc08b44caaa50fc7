-- ugen.runtime: the interface check and the resolution of ugen.new's runtime /
-- transport options (no server: the transports here are plain functions).
local ugen = require "ugen"
local runtime = require "ugen.runtime"

local function noop() end
local function rt_of(extra)
  local t = { now = noop, sleep = noop, perform = noop }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

local function new_err(opts)
  opts.base_url = opts.base_url or "http://127.0.0.1:9/api/v1"
  local ok, err = pcall(ugen.new, opts)
  assert.is_false(ok)
  return err
end

describe("ugen.runtime", function()
  it("check() names what is wrong with a runtime table", function()
    local cases = {
      { 5, "must be \"curl\", \"ngx\" or a table (got number)" },
      { { sleep = noop, perform = noop }, "is missing the required function 'now'" },
      { rt_of{ perform = false }, "field 'perform' must be a function (got boolean)" },
      { rt_of{ wait = noop }, "has an unknown field 'wait'" },
      { rt_of{ name = 7 }, "field 'name' must be a string" },
      { rt_of{ spawn = noop }, "must have all of spawn, join_any and cancel, or none of them" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(runtime.check, c[1])
      assert.is_false(ok)
      assert.matches(c[2], err, 1, true)
    end
    local rt = rt_of{ spawn = noop, join_any = noop, cancel = noop, step = noop, time = noop, name = "x" }
    assert.equal(rt, runtime.check(rt))
  end)

  it("ugen.new raises at the call site for a bad runtime or transport", function()
    assert.matches("option 'runtime' must be \"curl\", \"ngx\" or a table (got \"carrier-pigeon\")",
      new_err{ runtime = "carrier-pigeon" }, 1, true)
    assert.matches("option 'runtime' \"ngx\" needs OpenResty", new_err{ runtime = "ngx" }, 1, true)
    assert.matches("option 'runtime' is missing the required function 'perform'",
      new_err{ runtime = { now = noop, sleep = noop } }, 1, true)
    assert.matches("give either option 'transport' or a runtime with its own perform, not both",
      new_err{ runtime = rt_of(), transport = noop }, 1, true)
    assert.matches("unknown transport 'carrier-pigeon'", new_err{ transport = "carrier-pigeon" }, 1, true)
    -- the level points at the caller
    local ok, err = pcall(function() ugen.new{ runtime = 5 } end)
    assert.is_false(ok)
    assert.matches("runtime_spec.lua:%d+:", err)
    for _, name in ipairs({ "ngx", "carrier-pigeon" }) do   -- a built-in name too
      ok, err = pcall(function() ugen.new{ runtime = name } end)
      assert.is_false(ok)
      assert.matches("runtime_spec.lua:%d+:", err)
    end
  end)

  it("resolve: the default is the curl scheduler's runtime; a transport replaces only perform", function()
    local c = ugen.new{ base_url = "http://127.0.0.1:9/api/v1" }
    assert.equal(ugen.scheduler.default():runtime(), c.runtime)
    assert.equal("curl", c.runtime.name)
    assert.equal("curl", c.transport_name)
    local function send() return { status = 200, body = "{}" } end
    local t = ugen.new{ base_url = "http://127.0.0.1:9/api/v1", transport = send }
    assert.equal(send, t.runtime.perform)
    assert.equal(c.runtime.sleep, t.runtime.sleep)
    assert.equal(c.runtime.spawn, t.runtime.spawn)
    assert.equal("function", t.transport_name)
    -- a runtime table without perform takes the transport as its perform
    local u = ugen.new{ base_url = "http://127.0.0.1:9/api/v1", runtime = { now = noop, sleep = noop, name = "host" },
                        transport = send }
    assert.equal(send, u.runtime.perform)
    assert.matches("runtime=host", tostring(u), 1, true)
  end)

  it("client:spawn / client:step / wait_all on a runtime without them raise naming what is missing", function()
    local c = ugen.new{ base_url = "http://127.0.0.1:9/api/v1", runtime = rt_of{ name = "bare" } }
    assert.has_error(function() c:spawn(noop) end,
      "ugen: client:spawn needs a runtime with 'spawn' (this client's runtime 'bare' has none)")
    assert.has_error(function() c:step(0) end,
      "ugen: client:step needs a runtime with 'step' (this client's runtime 'bare' has none)")
    assert.has_error(function() c.jobs:wait_all({ "a" }) end,
      "ugen: client.jobs:wait_all needs a runtime with 'spawn' (this client's runtime 'bare' has none)")
    assert.has_error(function() c.jobs:as_finished({ "a" }) end,
      "ugen: client.jobs:as_finished needs a runtime with 'spawn' (this client's runtime 'bare' has none)")
  end)

  it("client:step returns the seconds until the runtime next needs to run, nil when idle", function()
    local S = ugen.scheduler.new{ on_error = false }
    local c = ugen.new{ base_url = "http://127.0.0.1:9/api/v1", runtime = S:runtime() }
    assert.is_nil(c:step(0))
    c:spawn(function() c.runtime.sleep(0.3) end)
    local d = c:step(0)                       -- runs the task: it sleeps on a 0.3 s timer
    assert.is_true(d > 0.1 and d <= 0.3, tostring(d))
    while d do d = c:step(d) end
    assert.is_nil(c:step(0))
    S:close()
  end)
end)
