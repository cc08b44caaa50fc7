-- Workflow 5 of the U-Gen API docs: estimate the credits of a job.
--   lua examples/estimate.lua
local setup = dofile((arg[0]:match("^(.*)/[^/]+$") or ".") .. "/_setup.lua")
local ugen = require "ugen"

local client = ugen.new(setup.client_options())
local est, err = client.credits:estimate{
  segment_count = 3,
  model_id = "veo3_fast",
  variant = "i2v",
  music_enabled = true,
  voice_enabled = true,
}
if not est then setup.fail("estimate", err) end

-- The response field names are not documented (GAP): print whatever came back.
local total = est.total_credits or est.total or est.estimated_credits
print("estimated total: " .. tostring(total) .. " credits")
if type(est.breakdown) == "table" then
  local names = {}
  for k in pairs(est.breakdown) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do print(("  %-16s %s"):format(k, tostring(est.breakdown[k]))) end
end

local bal, berr = client.credits:balance()
if not bal then setup.fail("balance", berr) end
print(("available: %s credits"):format(tostring(bal.available_credits)))
if total and bal.available_credits and total > bal.available_credits then
  print("not enough credits for this job (it would be rejected with 402)")
end
