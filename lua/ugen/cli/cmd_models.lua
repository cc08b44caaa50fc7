-- ugen.cli.cmd_models: the `ugen models` commands: list the video models, get
-- one with its capabilities.
-- The shape of a cmd_* module: see ugen.cli.cmd_jobs.

local context = require "ugen.cli.context"
local output = require "ugen.cli.output"
local json = require "ugen.json"

local EXIT = context.EXIT
local fail, out_line, print_json, client = context.fail, context.out_line, context.print_json, context.client

local MODEL_COLS = {
  { "id", "ID" }, { "family", "FAMILY" }, { "category", "CATEGORY" }, { "status", "STATUS" },
  { "default_variant", "VARIANT" },
}

local commands = {}

commands[#commands + 1] = {
  name = "models list", api = true,
  summary = "the available and beta video models",
  usage = "ugen models list",
  run = function(ctx)
    local list, err = client(ctx).models:list()
    if not list then return fail(ctx, err) end
    if ctx.json then print_json(ctx, json.array(list)); return EXIT.ok end
    out_line(ctx, output.table(list, MODEL_COLS))
    return EXIT.ok
  end,
}

commands[#commands + 1] = {
  name = "models get", api = true, positional = { "MODEL_ID" },
  summary = "one model with its capabilities",
  usage = "ugen models get MODEL_ID",
  run = function(ctx)
    local m, err = client(ctx).models:get(ctx.pos[1])
    if not m then return fail(ctx, err) end
    if ctx.json then print_json(ctx, m) else out_line(ctx, output.format(m)) end
    return EXIT.ok
  end,
}

return {
  groups = { models = "video models and their capabilities" },
  commands = commands,
}
