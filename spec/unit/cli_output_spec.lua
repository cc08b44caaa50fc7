-- ugen.cli.output hides the values of secret-named keys by the SDK's own rule
-- (ugen.errors.is_secret_key): whatever the SDK redacts in an error, the CLI
-- does not print from a result either.
local output = require "ugen.cli.output"
local errors = require "ugen.errors"
local json = require "ugen.json"

local SECRET = "s3cr3t-value-0123456789"
local KEYS = { "authorization", "Authorization", "cookie", "x-api-key", "apikey", "passwd", "db_password",
               "clientsecret", "WEBHOOK_SECRET", "webhook_secret", "api_key", "jwt" }

describe("ugen.cli.output and secret-named keys", function()
  it("redacts every key ugen.errors calls secret, in human, JSON and table output", function()
    for _, k in ipairs(KEYS) do
      assert.is_true(errors.is_secret_key(k), k)
      local v = { [k] = SECRET, nested = { { [k] = SECRET } } }
      local text = output.format(v)
      assert.is_nil(text:find(SECRET, 1, true), k .. ": " .. text)
      assert.truthy(text:find(k .. ": <redacted>", 1, true), k .. ": " .. text)
      local doc = json.decode(output.to_json(v))
      assert.equal("<redacted>", doc[k], k)
      assert.equal("<redacted>", doc.nested[1][k], k)
      local tab = output.table({ { [k] = SECRET } }, { { k, "X" } })
      assert.is_nil(tab:find(SECRET, 1, true), k .. ": " .. tab)
    end
  end)

  it("prints other keys as they are", function()
    local text = output.format({ job_id = "j1", secretary = "Ann", status = "completed" })
    assert.truthy(text:find("secretary: Ann", 1, true), text)
    assert.truthy(text:find("job_id: j1", 1, true), text)
  end)
end)
