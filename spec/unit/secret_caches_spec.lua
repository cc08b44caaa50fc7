-- Issue 13: no module-level cache keeps a credential alive.
local tcurl = require "ugen.transport.curl"

local function upvalue(fn, want)
  for i = 1, 50 do
    local name, v = debug.getupvalue(fn, i)
    if name == nil then break end
    if name == want then return v end
  end
  error("no upvalue " .. want)
end

describe("ugen.transport.curl header lines", function()
  it("memoizes ordinary headers but never credential headers", function()
    local key, jwt = "k-" .. string.rep("9", 30), "eyJ" .. string.rep("j", 30)
    local creq = tcurl.to_core{ method = "GET", url = "http://127.0.0.1:1/x", headers = {
      ["X-API-Key"] = key, ["Authorization"] = "Bearer " .. jwt, ["Accept"] = "application/json",
      ["Cookie"] = "s=" .. key } }
    local lines = table.concat(creq.headers, "\n")
    assert.truthy(lines:find("X-API-Key: " .. key, 1, true))        -- still sent
    assert.truthy(lines:find("Authorization: Bearer " .. jwt, 1, true))
    local cache = upvalue(upvalue(tcurl.to_core, "header_line"), "line_cache")
    assert.is_not_nil(cache["Accept"])                               -- the cache works
    for name, byvalue in pairs(cache) do
      for value, line in pairs(byvalue) do
        assert.falsy(value:find(key, 1, true) or value:find(jwt, 1, true), name)
        assert.falsy(line:find(key, 1, true) or line:find(jwt, 1, true), name)
      end
    end
  end)
end)
