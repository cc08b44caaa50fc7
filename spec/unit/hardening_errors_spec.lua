-- Issue #12 items 1, 11 and 14 (first half), unit level: redaction of every
-- registered secret, control characters in tostring(err), base_url checks.
-- (The end-to-end checks against a hostile loopback server are in
-- spec/integration/hardening_{secrets,controls,dots}_spec.lua.)
local ugen = require "ugen"
local errors = require "ugen.errors"
local json = require "ugen.json"

local JWT = "eyJhbGciOiJIUzI1NiJ9.unit-test-jwt.c2ln"

describe("redaction (ugen.errors)", function()
  it("a jwt-only client's secret is scrubbed from every error made while it lives, keys included", function()
    local c = ugen.new{ jwt = JWT, transport = function() return nil, "unused" end }
    local job = { job_id = "j", error_message = "token " .. JWT }
    local e = errors.new{ kind = "job_failed", message = "failed: " .. JWT, job = job,
      details = { [JWT] = "as a key", deep = { { { JWT .. "!" } } } } }
    assert.equal("failed: <redacted>", e.message)
    assert.equal("token <redacted>", e.job.error_message)
    assert.equal("as a key", e.details["<redacted>"])
    assert.equal("<redacted>!", e.details.deep[1][1][1])
    -- the caller's own table is not modified: err.job is a scrubbed copy
    assert.equal("token " .. JWT, job.error_message)
    assert.is_nil(tostring(e):find(JWT, 1, true))
    assert.truthy(c)
  end)

  it("JSON-escaped forms of a secret, and numbers, are scrubbed too", function()
    local owner = {}
    errors.add_secrets(owner, "sec/ret\"with-escapes", 12345678901234)
    local e = errors.new{ kind = "api", message = [[body {"s":"sec\/ret\"with-escapes","n":12345678901234}]] }
    assert.equal([[body {"s":"<redacted>","n":<redacted>}]], e.message)
  end)

  it("secret-named fields and a validation problem's input are replaced whole, any type or length", function()
    local e = errors.new{ kind = "validation", fields = {
      { loc = { "body", "webhook_secret" }, msg = "bad", input = 42 },
      { loc = { "body", "webhook_url" }, msg = "bad", input = "https://x" },
    }, details = { api_key = "k", jwt = 7, Authorization = "Bearer x", count = 3 } }
    assert.equal("<redacted>", e.fields[1].input)
    assert.equal("https://x", e.fields[2].input)
    assert.equal("<redacted>", e.details.api_key)
    assert.equal("<redacted>", e.details.jwt)
    assert.equal("<redacted>", e.details.Authorization)
    assert.equal(3, e.details.count)
  end)

  it("secrets shorter than MIN_SECRET are not searched for in free text (they would eat words)", function()
    local owner = {}
    errors.add_secrets(owner, "abc")
    assert.equal("abc def", errors.new{ kind = "api", message = "abc def" }.message)
    assert.equal(8, errors.MIN_SECRET)
  end)
end)

describe("tostring(err): one line, control characters escaped", function()
  it("escapes C0, DEL and UTF-8 C1 in every field shown; the fields keep the raw text", function()
    local e = errors.new{ kind = "api", status = 400, code = "X\27[2J", message = "a\nb\r\tc\0d\127e\194\155f",
      fields = { { loc = { "body", "f\n" }, msg = "m\27" } }, request_id = "r\7" }
    local s = tostring(e)
    assert.is_nil(s:find("[%z\1-\31\127]"), ("%q"):format(s))
    assert.is_nil(s:find("\194[\128-\159]"))
    assert.equal("ugen: api error (HTTP 400) X\\x1b[2J: a\\nb\\r\\tc\\x00d\\x7fe\\u009bf [f\\n: m\\x1b]"
      .. " (request r\\x07)", s)
    assert.equal("a\nb\r\tc\0d\127e\194\155f", e.message)
    -- ordinary UTF-8 is kept
    assert.equal("ugen: api error: café ✓", tostring(errors.new{ kind = "api", message = "café ✓" }))
  end)
end)

describe("base_url checks (ugen.new)", function()
  local function new_err(base)
    local ok, msg = pcall(ugen.new, { base_url = base })
    assert.is_false(ok, base)
    return tostring(msg)
  end

  it("refuses a query string or a fragment (they would swallow every request's path)", function()
    assert.matches("query string", new_err("https://api.example.com/api/v1?tenant=acme"))
    assert.matches("query string", new_err("https://api.example.com/api/v1/?"))
    assert.matches("fragment", new_err("https://api.example.com/api/v1#top"))
    -- the message never echoes the query (it may hold a token)
    assert.is_nil(new_err("https://api.example.com/v1?token=tok-0123456789"):find("tok-0123456789", 1, true))
    assert.truthy(ugen.new{ base_url = "https://api.example.com/api/v1/" })
  end)

  it("refuses spaces and control characters", function()
    assert.matches("control characters", new_err("https://api.example.com/a b"))
    assert.matches("control characters", new_err("https://api.example.com/a\27b"))
  end)

  it("never echoes credentials of a malformed base_url", function()
    for _, base in ipairs({ "ftp://me:pw-0123456789@h/x", "me:pw-0123456789@h/x", "https://me:pw/0123456789@/x" }) do
      local msg = new_err(base)
      assert.is_nil(msg:find("0123456789", 1, true), msg)
    end
    -- a valid one with an unencoded '@' in the password: tostring(client) hides all of it
    local c = ugen.new{ base_url = "https://me:p@ss-0123456789@api.example.com/v1" }
    assert.is_nil(tostring(c):find("0123456789", 1, true), tostring(c))
    assert.matches("api.example.com/v1", tostring(c), 1, true)
  end)
end)

describe("JSON output of the CLI (ugen.cli.output.to_json)", function()
  it("escapes UTF-8 C1 controls as \\u0080..\\u009f; the text decodes back unchanged", function()
    local output = require "ugen.cli.output"
    local v = { s = "a\194\155b\27c\127", t = "é" }
    local s = output.to_json(v)
    assert.is_nil(s:find("[%z\1-\31\127]"))
    assert.is_nil(s:find("\194[\128-\159]"))
    assert.same(v, json.decode(s))
  end)
end)
