-- ugen_sandbox_server.handlers.templates: GET and POST /templates (at most
-- TEMPLATE_CAP per tenant; configs checked with the job field rules).
-- Handlers: name -> function(T, params, ctx) -> response (ugen_sandbox_server.http).

local endpoints = require "ugen.endpoints"
local validate = require "ugen.validate"
local util = require "ugen_sandbox_server.util"
local clock = require "ugen_sandbox_server.clock"
local webhooks = require "ugen_sandbox_server.webhooks"
local http = require "ugen_sandbox_server.http"

local pairs, ipairs = pairs, ipairs
local sort, insert = table.sort, table.insert
local null, array = util.null, util.array
local E, R, unprocessable, value_error = http.error_response, http.response, http.unprocessable, http.value_error

local H = {}

local TEMPLATE_CAP = 20

local function template_sorted(T)
  local list = {}
  for _, t in ipairs(T.templates) do list[#list + 1] = t end
  sort(list, function(a, b)
    if a.is_default ~= b.is_default then return a.is_default end
    if a.use_count ~= b.use_count then return a.use_count > b.use_count end
    if a.updated_seq ~= b.updated_seq then return a.updated_seq > b.updated_seq end
    return a.id < b.id
  end)
  return list
end

H["templates.list"] = function(T, p)
  local out = array()
  for _, t in ipairs(template_sorted(T)) do
    if #out >= (p.limit or 50) then break end
    out[#out + 1] = t.public
  end
  return R(200, out)
end

-- Template config: any subset of job settings, checked with the jobs.create
-- parameter rules (none required); `output_aspect_ratio` is the config's name
-- for aspect_ratio (UGEN-API.md section 13).
local CONFIG_EP
do
  local params = {}
  for _, p in ipairs(endpoints.by_name["jobs.create"].params) do
    local c = {}
    for k, v in pairs(p) do c[k] = v end
    c.required = nil
    params[#params + 1] = c
  end
  params[#params + 1] = { name = "output_aspect_ratio", ["in"] = "body", type = "string" }
  CONFIG_EP = { params = params }
end

local template_seq = 0

H["templates.create"] = function(T, b)
  local config = {}
  for k, v in pairs(b.config) do if v ~= null then config[k] = v end end
  local details = validate.check(CONFIG_EP, config)
  if details then
    for _, d in ipairs(details) do insert(d.loc, 2, "config") end
    return unprocessable(details)
  end
  if config.webhook_url ~= nil then
    local msg = webhooks.check_url(config.webhook_url)
    if msg then return value_error({ "body", "config", "webhook_url" }, msg, config.webhook_url) end
  end
  if config.product_name ~= nil or config.product_image_url ~= nil then
    return value_error({ "body", "config" }, "Value error, templates hold no product data "
                       .. "(product_name, product_image_url)", b.config)
  end
  if #T.templates >= TEMPLATE_CAP then
    return E(409, "TEMPLATE_LIMIT_REACHED", ("At most %d templates per account"):format(TEMPLATE_CAP),
             { limit = TEMPLATE_CAP })
  end
  if b.is_default then
    for _, t in ipairs(T.templates) do
      t.is_default = false
      t.public.is_default = false
    end
  end
  template_seq = template_seq + 1
  local now_iso = clock.iso_now()
  local t = { id = util.uuid4(), is_default = b.is_default == true, use_count = 0, updated_seq = template_seq }
  t.public = { id = t.id, name = b.name, description = util.orNull(b.description), config = config,
               is_default = t.is_default, use_count = 0, created_at = now_iso, updated_at = now_iso }
  T.templates[#T.templates + 1] = t
  return R(201, t.public)
end

return H
