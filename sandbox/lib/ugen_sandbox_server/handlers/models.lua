-- ugen_sandbox_server.handlers.models: GET /models, GET /models/{id}, the
-- Playground (POST /models/{id}/try) and its task status
-- (GET /playground/tasks/{task_id}, the sandbox's choice: undocumented).
-- Handlers: name -> function(T, params, ctx) -> response (ugen_sandbox_server.http).

local util = require "ugen_sandbox_server.util"
local state = require "ugen_sandbox_server.state"
local tasks = require "ugen_sandbox_server.tasks"
local http = require "ugen_sandbox_server.http"

local ipairs = ipairs
local null, array = util.null, util.array
local E, R, value_error = http.error_response, http.response, http.value_error

local H = {}

local function model_public(m)
  return {
    id = m.id, name = m.name, family = m.family, vendor = m.vendor, category = m.category,
    status = m.status, tier = m.tier, default_variant = m.default_variant,
    usable_in_jobs = m.jobs, usable_in_playground = m.playground, capabilities = m.capabilities,
    pricing = m.pricing and { per_second = util.orNull(m.pricing.per_second),
                              per_segment = util.orNull(m.pricing.per_segment),
                              keyframe_tier = m.keyframe_tier } or null,
  }
end

H["models.list"] = function()
  local out = array()
  for _, m in ipairs(state.models) do
    if m.status ~= "coming_soon" then out[#out + 1] = model_public(m) end
  end
  return R(200, out)
end

H["models.get"] = function(_, p)
  local m = state.models_by_id[p.model_id]
  if not m then return E(404, "MODEL_NOT_FOUND", "Model '" .. p.model_id .. "' not found") end
  return R(200, model_public(m))
end

H["models.try"] = function(T, p, ctx)
  local m = state.models_by_id[p.model_id]
  if not m then return E(404, "MODEL_NOT_FOUND", "Model '" .. p.model_id .. "' not found") end
  if not m.playground then
    return value_error({ "path", "model_id" }, "Value error, model '" .. m.id .. "' is not available yet ("
                       .. m.status .. ")", m.id)
  end
  local task = tasks.create(T, m, ctx.body)
  return R(202, { task_id = task.task_id, model_id = m.id, status = "queued",
                  status_url = state.API .. "/playground/tasks/" .. task.task_id, created_at = task.created_at },
           { Location = state.API .. "/playground/tasks/" .. task.task_id })
end

H["playground.task"] = function(T, p)
  local task = T.tasks[p.task_id]
  if not task then return E(404, "TASK_NOT_FOUND", "Task not found") end
  return R(200, tasks.public(task))
end

return H
