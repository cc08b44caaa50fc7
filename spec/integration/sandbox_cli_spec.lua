-- `bin/ugen sandbox start|stop|status` and the ugen.sandbox controller API,
-- on their own sandbox directories (not the shared spec sandbox).
local S = require "support.sandbox"
local sandbox = require "ugen.sandbox"

local function sh(cmd)
  local p = io.popen("(" .. cmd .. ") 2>&1; echo \"EXIT:$?\"")
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("EXIT:(%d+)%s*$"))
  return code, (out:gsub("EXIT:%d+%s*$", ""))
end

local function sh_split(cmd)
  local d = S.tmpdir()
  local code = sh(cmd .. " > " .. S.q(d .. "/out") .. " 2> " .. S.q(d .. "/err"))
  return code, S.read_file(d .. "/out") or "", S.read_file(d .. "/err") or ""
end

describe("sandbox CLI and controller", function()
  it("start prints exactly the two export lines; status; twice is an error; stop", function()
    local dir = S.tmpdir() .. "/sb"
    local code, out, err = sh_split("bin/ugen sandbox start --port 0 --dir " .. S.q(dir) .. " --speed 5 --seed cli")
    finally(function() sandbox.stop{ dir = dir } end)
    assert.are.equal(0, code, err)
    local url, key = out:match("^export UGEN_BASE_URL=(http://127%.0%.0%.1:%d+/api/v1)\nexport UGEN_API_KEY=(%S+)\n$")
    assert.is_string(url, out)
    assert.matches("^ugen_sk_test_default_%x+$", key)
    -- deterministic from the seed: the Lua API agrees on the keys
    local info = assert(sandbox.status{ dir = dir })
    assert.are.equal(url, info.base_url)
    assert.are.equal(key, info.api_key)
    assert.are.equal(5, info.speed)
    -- the exports configure a shell
    S.write_file(dir .. "/../exports", out)
    local c3, bal = sh('eval "$(cat ' .. S.q(dir .. "/../exports") .. ')" && curl -sS -H "X-API-Key: $UGEN_API_KEY" '
                       .. '"$UGEN_BASE_URL/credits/balance"')
    assert.are.equal(0, c3)
    assert.matches('"credit_balance":100000', bal)
    code, out = sh_split("bin/ugen sandbox status --dir " .. S.q(dir))
    assert.are.equal(0, code)
    assert.matches("^running: pid %d+, " .. url:gsub("%p", "%%%0"), out)
    code, out, err = sh_split("bin/ugen sandbox start --dir " .. S.q(dir))
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.matches("already running", err)
    code = sh_split("bin/ugen sandbox stop --dir " .. S.q(dir))
    assert.are.equal(0, code)
    assert.is_nil(sandbox.status{ dir = dir })
    code, out = sh_split("bin/ugen sandbox status --dir " .. S.q(dir))
    assert.are.equal(1, code)
    assert.matches("not running", out)
    local _
    code, _, err = sh_split("bin/ugen sandbox stop --dir " .. S.q(dir))
    assert.are.equal(1, code)
    assert.matches("no sandbox running", err)
    -- no nginx left behind
    assert.is_nil(io.open("/proc/" .. info.pid .. "/stat") and S.read_file("/proc/" .. info.pid .. "/cmdline")
      :find("nginx", 1, true))
  end)

  it("usage errors exit 2", function()
    for _, args in ipairs({ "sandbox", "sandbox start --port x", "sandbox start --bogus 1", "sandbox frob",
                            "sandbox start --speed 0", "sandbox stop --port 1", "nope" }) do
      local code = sh_split("bin/ugen " .. args)
      assert.are.equal(2, code, args)
    end
    assert.are.equal(0, (sh_split("bin/ugen sandbox --help")))
  end)

  it("a fixed --port; a port in use fails with the error log tail", function()
    local socket = require "socket"
    local holder = assert(socket.bind("127.0.0.1", 0))
    local _, port = holder:getsockname()
    local dir = S.tmpdir() .. "/busy"
    finally(function()
      holder:close()
      sandbox.stop{ dir = dir }
    end)
    local info, err = sandbox.start{ port = tonumber(port), dir = dir, speed = 10 }
    assert.is_nil(info)
    assert.matches("Address already in use", err)
    assert.is_nil(sandbox.status{ dir = dir })
    holder:close()
    info = assert(sandbox.start{ port = tonumber(port), dir = dir, speed = 10 })
    assert.are.equal(tonumber(port), info.port)
    assert.are.equal(4, #info.tenants)
    local second, err2 = sandbox.start{ dir = dir }
    assert.is_nil(second)
    assert.matches("already running", err2)
    assert.is_true(sandbox.stop{ dir = dir })
  end)

  it("seeds are deterministic; different seeds give different keys", function()
    local a, b = S.tmpdir() .. "/a", S.tmpdir() .. "/b"
    finally(function()
      sandbox.stop{ dir = a }
      sandbox.stop{ dir = b }
    end)
    local ia = assert(sandbox.start{ dir = a, seed = "one" })
    local ib = assert(sandbox.start{ dir = b, seed = "two" })
    assert.are_not.equal(ia.api_key, ib.api_key)
    assert.are_not.equal(ia.port, ib.port)
    sandbox.stop{ dir = a }
    local ia2 = assert(sandbox.start{ dir = a, seed = "one" })
    for i, t in ipairs(ia.tenants) do
      assert.are.equal(t.api_key, ia2.tenants[i].api_key)
      assert.are.equal(t.jwt, ia2.tenants[i].jwt)
    end
    -- a key of one sandbox is not valid on another
    local r = S.request{ url = ib.base_url .. "/credits/balance", api_key = ia.api_key }
    assert.are.equal(401, r.status)
  end)

  it("wrong argument types raise at the call site", function()
    assert.has_error(function() sandbox.start("x") end, "bad argument #1 to 'start' (table expected, got string)")
    assert.has_error(function() sandbox.start{ port = "80" } end)
    assert.has_error(function() sandbox.start{ speed = 0 } end)
    assert.has_error(function() sandbox.stop{ dir = 1 } end)
  end)
end)
