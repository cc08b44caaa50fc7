-- ugen_sandbox_server.tasks: Playground tasks (POST /models/{id}/try).
--
-- A task takes TASK_SECONDS on the sandbox clock, then completes with a
-- result_url (a PNG for image models, the MP4 otherwise) or, when its prompt
-- holds "[fail]", fails. Free of charge.

local util = require "ugen_sandbox_server.util"
local state = require "ugen_sandbox_server.state"
local clock = require "ugen_sandbox_server.clock"

local type, floor = type, math.floor

local _M = {}

local TASK_SECONDS = 5

--- Bring a task up to the sandbox clock.
function _M.advance(task)
  if task.terminal then return end
  local el = clock.now() - task.created_sim
  if el >= TASK_SECONDS then
    task.terminal = true
    state.active[task] = nil
    task.progress_percent = 100
    task.completed_at = clock.iso_now()
    if task.fail then
      task.status = "failed"
      task.error_message = "Generation failed: CONTENT_POLICY"
    else
      task.status = "completed"
      task.result_url = task.category == "image"
        and (state.origin .. "/static/playground/" .. task.task_id .. ".png")
        or (state.origin .. "/static/videos/" .. task.task_id .. ".mp4")
    end
  else
    task.status = el < 0.5 and "queued" or "processing"
    task.progress_percent = floor(el / TASK_SECONDS * 100)
  end
end

--- The task as the API shows it (advanced first).
function _M.public(task)
  _M.advance(task)
  return {
    task_id = task.task_id, model_id = task.model_id, status = task.status,
    progress_percent = task.progress_percent, result_url = util.orNull(task.result_url),
    error_message = util.orNull(task.error_message), input = task.input,
    created_at = task.created_at, completed_at = util.orNull(task.completed_at),
  }
end

--- Start a task of model m for tenant data T; body is the request body (echoed as `input`).
function _M.create(T, m, body)
  local task = {
    task_id = util.uuid4(), model_id = m.id, category = m.category, created_sim = clock.now(),
    created_at = clock.iso_now(), status = "queued", progress_percent = 0, input = body,
    fail = type(body.prompt) == "string" and body.prompt:find("[fail]", 1, true) ~= nil,
  }
  T.tasks[task.task_id] = task
  state.active[task] = true
  return task
end

return _M
