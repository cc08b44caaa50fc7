-- ugen.cli.cmd_credits: the `ugen credits` commands: estimate (price a job
-- before creating it), balance, transactions (the ledger, one page or --all).
-- The shape of a cmd_* module: see ugen.cli.cmd_jobs.

local args = require "ugen.cli.args"
local context = require "ugen.cli.context"
local output = require "ugen.cli.output"
local pages = require "ugen.cli.pages"
local params = require "ugen.cli.params"

local EXIT = context.EXIT
local fail, out_line, print_json, client = context.fail, context.out_line, context.print_json, context.client

local commands = {}

local ESTIMATE_FLAGS = params.flags("credits.estimate", {
  segment_count = { aliases = { "segments" } },
  model_id = { aliases = { "model" }, placeholder = "MODEL" },
  variant = { placeholder = "VARIANT" },
})
commands[#commands + 1] = {
  name = "credits estimate", api = true,
  summary = "price a job before creating it (total and breakdown)",
  usage = "ugen credits estimate --segments N --model MODEL [--variant V] [--music-enabled] [--voice-enabled]",
  flags = ESTIMATE_FLAGS,
  run = function(ctx)
    local est, err = client(ctx).credits:estimate(params.values(ctx, ESTIMATE_FLAGS))
    if not est then return fail(ctx, err) end
    if ctx.json then print_json(ctx, est) else out_line(ctx, output.format(est)) end
    return EXIT.ok
  end,
}

commands[#commands + 1] = {
  name = "credits balance", api = true,
  summary = "credit balance, reserved and available credits",
  usage = "ugen credits balance",
  run = function(ctx)
    local b, err = client(ctx).credits:balance()
    if not b then return fail(ctx, err) end
    if ctx.json then print_json(ctx, b) else out_line(ctx, output.format(b)) end
    return EXIT.ok
  end,
}

local TX_FLAGS = params.flags("credits.transactions", { job_id = { placeholder = "JOB_ID" } })
local TX_COLS = {
  { "type", "TYPE" }, { "amount", "AMOUNT" }, { "balance_before", "BEFORE" },
  { "balance_after", "AFTER" }, { "job_id", "JOB_ID" }, { "created_at", "CREATED" },
}
commands[#commands + 1] = {
  name = "credits transactions", api = true,
  summary = "the credit ledger (one page, or --all)",
  usage = "ugen credits transactions [--page N] [--page-size N] [--job-id ID] [--all]",
  flags = args.join(TX_FLAGS, pages.FLAGS),
  run = function(ctx)
    return pages.run(ctx, "credits", "transactions", "each_transaction", TX_FLAGS, TX_COLS, "transactions")
  end,
}

return {
  groups = { credits = "credit balance, ledger and price estimates" },
  commands = commands,
}
