-- ugen.cli.params: an endpoint's parameters as `ugen` flags, and back.
--
-- flags(name, extra) makes the flag specs (ugen.cli.args) of an endpoint's
-- query, body and form parameters from the endpoint table (ugen.endpoints);
-- values(ctx, specs) turns the parsed flags back into the endpoint's params.

local args = require "ugen.cli.args"
local endpoints = require "ugen.endpoints"
local json = require "ugen.json"

local _M = { _VERSION = "0.1.0" }

local ipairs, assert = ipairs, assert

local TYPE_OF = { string = "string", integer = "integer", number = "number", boolean = "boolean",
                  array = "array", object = "object" }

--- Flag specs for the query/body/form parameters of endpoint `name`
-- ("jobs.create"). extra[param] changes one flag: name, type, aliases, doc,
-- env, placeholder, or skip = true to leave the parameter out.
function _M.flags(name, extra)
  local ep = assert(endpoints.by_name[name], name)
  extra = extra or {}
  local specs = {}
  for _, p in ipairs(ep.params) do
    if p["in"] == "body" or p["in"] == "query" or p["in"] == "form" then
      local x = extra[p.name] or {}
      if not x.skip then
        specs[#specs + 1] = {
          name = x.name or args.flag_name(p.name), key = p.name,
          type = x.type or TYPE_OF[p.type] or "string",
          aliases = x.aliases, required = p.required, min = p.min, max = p.max, enum = p.enum,
          known = p.known, default = p.default, doc = x.doc or p.doc, env = x.env,
          placeholder = x.placeholder, param = true,
        }
      end
    end
  end
  return specs
end

--- The endpoint's parameters from the parsed flags (ctx.values) of `specs`;
-- lists are marked as JSON arrays so they are sent, and validated, as arrays.
function _M.values(ctx, specs)
  local params = {}
  for _, s in ipairs(specs) do
    local v = ctx.values[s.key]
    if s.param and v ~= nil then
      if s.type == "array" then
        local list = {}
        for i, x in ipairs(v) do list[i] = x end
        v = json.array(list)
      end
      params[s.key] = v
    end
  end
  return params
end

return _M
