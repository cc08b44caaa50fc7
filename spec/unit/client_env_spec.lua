-- ugen.new reads UGEN_API_KEY / UGEN_JWT / UGEN_CAINFO when the options are not given (issue 16
-- item 2, issue 15 item 3); an option always wins. Each case runs a child lua5.4 with its own
-- environment and a user transport that prints what would be sent.
local util = require "support.util"
local tools = require "support.tools"

local PROBE = [[
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local ugen = require "ugen"
local opts = load("return " .. (arg[1] or "{}"))()
opts.base_url = "http://127.0.0.1:1/api/v1"
opts.max_retries = 0
opts.transport = function(req)
  io.write("key=", tostring(req.headers["X-API-Key"]), " auth=", tostring(req.headers["Authorization"]),
    " cainfo=", tostring(req.cainfo), "\n")
  return { status = 200, headers = {}, body = "{}" }
end
local ok, c = pcall(ugen.new, opts)
if not ok then io.write("error=", tostring(c), "\n") return end
io.write("tostring=", tostring(c), "\n")
c.credits:balance()
]]

local function run(env, opts)
  local dir = os.tmpname()
  util.write_file(dir, PROBE)
  local cpath = "./build/5.4/?.so;;"     -- the child is lua5.4 whatever runs this spec
  local out = util.capture(("env -u UGEN_API_KEY -u UGEN_JWT -u UGEN_CAINFO %s LUA_CPATH=%s %s %s %s 2>&1")
    :format(env, util.q(cpath), tools.need("lua5.4"), util.q(dir), util.q(opts or "{}")))
  os.remove(dir)
  return out
end

describe("ugen.new and the environment", function()
  it("reads UGEN_API_KEY when neither api_key nor jwt is given", function()
    local out = run("UGEN_API_KEY=k-from-env-123456")
    assert.matches("key=k%-from%-env%-123456 auth=nil", out)
    assert.matches("auth=api_key", out)                   -- tostring says which, never the value
    assert.falsy(out:find("tostring=[^\n]*k%-from%-env"), out)
  end)

  it("reads UGEN_JWT, which wins over UGEN_API_KEY as jwt wins over api_key", function()
    local out = run("UGEN_API_KEY=k-env-1234567 UGEN_JWT=eyJ.jwt-from-env")
    assert.matches("key=nil auth=Bearer eyJ%.jwt%-from%-env", out)
  end)

  it("an api_key or jwt option wins and the environment's credentials are not read", function()
    local out = run("UGEN_API_KEY=k-env-1234567 UGEN_JWT=eyJ.jwt-env", "{ api_key = 'k-option-7654321' }")
    assert.matches("key=k%-option%-7654321 auth=nil", out)
    out = run("UGEN_API_KEY=k-env-1234567", "{ jwt = 'eyJ.option' }")
    assert.matches("key=nil auth=Bearer eyJ%.option", out)
  end)

  it("reads UGEN_CAINFO unless cainfo is given", function()
    assert.matches("cainfo=/tmp/env%-ca%.pem", run("UGEN_CAINFO=/tmp/env-ca.pem"))
    assert.matches("cainfo=/tmp/opt%.pem", run("UGEN_CAINFO=/tmp/env-ca.pem", "{ cainfo = '/tmp/opt.pem' }"))
    assert.matches("key=nil auth=nil cainfo=nil", run(""))
  end)

  it("refuses an environment value with a line break, without echoing it", function()
    local out = run("UGEN_API_KEY=\"$(printf 'abc\\nsecret-part')\"")
    assert.matches("error=[^\n]*UGEN_API_KEY must not contain line breaks", out)
    assert.falsy(out:find("secret-part", 1, true), out)
  end)
end)
