-- ugen.observe: option checks at ugen.new and per call (the caller's line, the option named),
-- the log line format (logfmt: fixed key order, quoting, control characters escaped).
local ugen = require "ugen"
local observe = require "ugen.observe"

describe("ugen.observe", function()
  local base = "http://127.0.0.1:9/api/v1"

  it("ugen.new checks logger, log_level, hooks and timings, at the caller's line", function()
    local cases = {
      { { logger = "print" }, "ugen.new: option 'logger' must be a function (got string)" },
      { { on_request = 1 }, "ugen.new: option 'on_request' must be a function (got number)" },
      { { on_response = {} }, "ugen.new: option 'on_response' must be a function (got table)" },
      { { on_retry = true }, "ugen.new: option 'on_retry' must be a function (got boolean)" },
      { { timings = "yes" }, "ugen.new: option 'timings' must be a boolean (got string)" },
      { { log_level = "warn" }, "ugen.new: option 'log_level' must be 'debug' or 'info' (got 'warn')" },
      -- a value that is not a level word is not echoed (it may be anything)
      { { log_level = "x y\n" }, "ugen.new: option 'log_level' must be 'debug' or 'info'$" },
    }
    for _, c in ipairs(cases) do
      local o = { base_url = base, api_key = "k" }
      for k, v in pairs(c[1]) do o[k] = v end
      local ok, err = pcall(ugen.new, o)
      assert.is_false(ok)
      assert.truthy(err:find(c[2]:gsub("%$$", ""), 1, true), err)
      if c[2]:sub(-1) == "$" then assert.truthy(err:match("'info'$"), err) end
    end
    -- at the caller's line
    local ok, err = pcall(function() local c = ugen.new{ base_url = base, logger = 1 }; return c end)
    assert.is_false(ok)
    assert.truthy(err:find("observe_spec.lua:%d+: ugen.new"), err)
  end)

  it("a client without observers has none; any one of them makes one", function()
    assert.is_nil(ugen.new{ base_url = base }.observe)
    assert.is_table(ugen.new{ base_url = base, timings = true }.observe)
    assert.is_table(ugen.new{ base_url = base, on_retry = function() end }.observe)
    assert.is_table(ugen.new{ base_url = base, log_level = "info" }.observe)   -- the stderr logger
  end)

  it("per-call hooks and timings are checked as bad arguments of the method", function()
    local c = ugen.new{ base_url = base, api_key = "k" }
    local ok, err = pcall(function() local r = c.credits:balance{ on_retry = "x" }; return r end)
    assert.is_false(ok)
    assert.truthy(err:find("observe_spec.lua:%d+: bad argument #1 to 'balance' %(opts.on_retry must be a function%)"),
      err)
    ok, err = pcall(function() return c.jobs:get("j1", { timings = 1 }) end)
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #2 to 'get' (opts.timings must be a boolean)", 1, true), err)
    ok, err = pcall(function() return c:request("GET", "/jobs", nil, { on_request = 1 }) end)
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #4 to 'request' (opts.on_request must be a function)", 1, true), err)
  end)

  it("format: keys in a fixed order, numbers as integers or 3 decimals, odd values quoted and escaped", function()
    assert.equal('event=response method=GET path=/a status=200 attempt=1 duration_ms=1.500 request_id=r1',
      observe.format{ request_id = "r1", duration_ms = 1.5, attempt = 1, status = 200, path = "/a", method = "GET",
                      event = "response", unknown = "dropped" })
    assert.equal('event=retry path="/a b" reason="x\\"y=\\\\" code="\\n\\x1b"',
      observe.format{ event = "retry", path = "/a b", reason = 'x"y=\\', code = "\n\27" })
    assert.equal('event=response reused=false', observe.format{ event = "response", reused = false })
  end)

  it("reason: rate_limited, server_error, request_timeout, else the error's kind", function()
    assert.equal("rate_limited", observe.reason{ status = 429, kind = "rate_limit" })
    assert.equal("server_error", observe.reason{ status = 502, kind = "api" })
    assert.equal("request_timeout", observe.reason{ status = 408, kind = "api" })
    assert.equal("network", observe.reason{ kind = "network" })
    assert.equal("timeout", observe.reason{ kind = "timeout" })
  end)
end)
