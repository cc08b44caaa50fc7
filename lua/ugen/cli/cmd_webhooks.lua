-- ugen.cli.cmd_webhooks: the `ugen webhooks` commands: set, get and delete the
-- account's webhook configuration (URL and signing secret) on the API. The
-- receiving side (sign, verify, listen, new-secret) is ugen.cli.cmd_webhook.
-- The shape of a cmd_* module: see ugen.cli.cmd_jobs.

local context = require "ugen.cli.context"
local output = require "ugen.cli.output"
local params = require "ugen.cli.params"

local type = type
local string_format = string.format

local EXIT = context.EXIT
local fail, out_line, print_json, client = context.fail, context.out_line, context.print_json, context.client

local commands = {}

local SET_FLAGS = params.flags("webhooks.set", {
  webhook_url = { aliases = { "url" }, placeholder = "URL" },
  webhook_secret = { aliases = { "secret" }, type = "secret", env = "UGEN_WEBHOOK_SECRET",
                     doc = "signing secret (omitted: unsigned deliveries); make one with 'ugen webhook new-secret'" },
})
commands[#commands + 1] = {
  name = "webhooks set", api = true,
  summary = "set or replace the account's webhook URL and signing secret",
  usage = "ugen webhooks set --url URL [--secret SECRET]",
  flags = SET_FLAGS,
  run = function(ctx)
    local p = params.values(ctx, SET_FLAGS)
    local res, err = client(ctx).webhooks:set(p)
    if not res then return fail(ctx, err) end
    if ctx.json then
      print_json(ctx, type(res) == "table" and res or { ok = true })
    else
      out_line(ctx, string_format("webhook set: %s (%s)", p.webhook_url,
        p.webhook_secret and "deliveries signed" or "no secret: deliveries unsigned"))
    end
    return EXIT.ok
  end,
}

commands[#commands + 1] = {
  name = "webhooks get", api = true,
  summary = "show the account's webhook configuration (the secret is never returned)",
  usage = "ugen webhooks get",
  run = function(ctx)
    local res, err = client(ctx).webhooks:get()
    if not res then return fail(ctx, err) end
    if ctx.json then print_json(ctx, res) else out_line(ctx, output.format(res)) end
    return EXIT.ok
  end,
}

commands[#commands + 1] = {
  name = "webhooks delete", api = true,
  summary = "remove the account's webhook URL and secret",
  usage = "ugen webhooks delete",
  run = function(ctx)
    local res, err = client(ctx).webhooks:delete()
    if not res then return fail(ctx, err) end
    if ctx.json then print_json(ctx, type(res) == "table" and res or { ok = true })
    else out_line(ctx, "webhook removed") end
    return EXIT.ok
  end,
}

return {
  groups = { webhooks = "the account's webhook configuration (URL and signing secret) on the API" },
  commands = commands,
}
