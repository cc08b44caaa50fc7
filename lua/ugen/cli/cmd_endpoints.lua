-- ugen.cli.cmd_endpoints: one generated command for every documented endpoint
-- that has no handwritten command (the account's profile, brand kit, uploads,
-- music, templates, ...), made from the endpoint table (ugen.endpoints):
--   ugen <resource> <name> [PATH_PARAMS...] [--field value ...]
-- its query/body/form fields as flags (files as --file PATH), --body JSON for
-- an endpoint whose body is open.
-- commands(handwritten) returns the defs (the shape: see ugen.cli.cmd_jobs);
-- handwritten is the set of endpoint names ("jobs.get") to leave out.

local args = require "ugen.cli.args"
local context = require "ugen.cli.context"
local endpoints = require "ugen.endpoints"
local output = require "ugen.cli.output"
local params = require "ugen.cli.params"
local json = require "ugen.json"

local _M = { _VERSION = "0.1.0" }

local type, ipairs, pairs, next = type, ipairs, pairs, next
local concat = table.concat
local unpack = table.unpack or unpack -- luacheck: ignore 143

local EXIT = context.EXIT
local fail, out_line, err_line, print_json = context.fail, context.out_line, context.err_line, context.print_json

--- One-line docs of the groups these commands fall in.
_M.groups = {
  tenant = "the account's profile and avatar",
  ["brand-kit"] = "the brand kit (logo watermark)",
  uploads = "product image uploads (their URL goes into jobs create --image-url)",
  music = "the music catalog and the account's custom tracks",
  templates = "saved job configurations",
}

local function command_of(ep)
  local key = ep.resource .. "." .. ep.name
  local overrides = {}
  for _, p in ipairs(ep.params) do
    if p.type == "file" then
      overrides[p.name] = { type = "string", placeholder = "FILE",
                            doc = p.doc and ("a file: " .. p.doc) or "a file path" }
    end
  end
  local flags = params.flags(key, overrides)
  local takes = ep.open_body
  for _, p in ipairs(ep.params) do
    if p["in"] ~= "path" then takes = true end
  end
  if ep.open_body then
    flags[#flags + 1] = { name = "body", key = "body", type = "object",
      doc = "the request body (its fields are not documented: sent as given)" }
  end
  local positional
  for _, name in ipairs(ep.path_params) do
    positional = positional or {}
    positional[#positional + 1] = name:upper()
  end
  local group, sub = ep.resource:gsub("_", "-"), ep.name:gsub("_", "-")
  local usage = "ugen " .. group .. " " .. sub
  if positional then usage = usage .. " " .. concat(positional, " ") end
  for _, f in ipairs(flags) do
    if f.required then usage = usage .. " --" .. f.name .. " " .. (args.placeholder(f) or "VALUE") end
  end
  if #flags > 0 then usage = usage .. " [flags]" end
  return {
    name = group .. " " .. sub, api = true, positional = positional, flags = flags, usage = usage,
    summary = (ep.doc or (ep.method .. " " .. ep.path)):gsub("^%u", string.lower) .. " (" .. ep.method .. " "
      .. ep.path .. ")",
    run = function(ctx)
      local res = context.client(ctx)[ep.resource]
      local argv = {}
      for k = 1, #ep.path_params do argv[k] = ctx.pos[k] end
      if takes then
        local p = params.values(ctx, flags)
        if ep.open_body and ctx.values.body then
          for k, v in pairs(ctx.values.body) do if p[k] == nil then p[k] = v end end
        end
        argv[#argv + 1] = p
      end
      local r, err = res[ep.name](res, unpack(argv, 1, #ep.path_params + (takes and 1 or 0)))
      if r == nil then return fail(ctx, err) end
      if ctx.json then
        if type(r) == "table" and ep.paging == "array" then r = json.array(r) end
        print_json(ctx, type(r) == "table" and r or { ok = true })
      elseif type(r) == "table" and next(r) == nil and ep.paging == "array" then
        err_line(ctx, "(none)")
      elseif type(r) == "table" then
        local text = output.format(r)
        out_line(ctx, text ~= "" and text or "ok")
      else
        out_line(ctx, "ok")
      end
      return EXIT.ok
    end,
  }
end

--- The generated commands, in the endpoint table's order, but for the
-- endpoints named in `handwritten` (a set of "resource.name").
function _M.commands(handwritten)
  local list = {}
  for _, ep in ipairs(endpoints.list) do
    if not handwritten[ep.resource .. "." .. ep.name] then list[#list + 1] = command_of(ep) end
  end
  return list
end

return _M
