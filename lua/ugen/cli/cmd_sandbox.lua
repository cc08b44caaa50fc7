-- ugen.cli.cmd_sandbox: the `ugen sandbox` commands (the only implementation):
-- start, stop and status of the local U-Gen sandbox server, through its
-- manager ugen.sandbox (lua/ugen/sandbox/).
-- start prints the export lines; stop says "ugen sandbox: stopped" on
-- stderr; status prints "running: ..." (exit 0) or "not running: ..." (exit 1).
-- --json prints the sandbox info as is (its keys are local test credentials).
-- The shape of a cmd_* module: see ugen.cli.cmd_jobs.

local context = require "ugen.cli.context"

local type, ipairs, tostring, require = type, ipairs, tostring, require
local string_format = string.format

local EXIT = context.EXIT
local fail, out_line, err_line, print_json, print_raw_json =
  context.fail, context.out_line, context.err_line, context.print_json, context.print_raw_json

-- loaded when a command runs
local function sandbox()
  return require "ugen.sandbox"
end

local DIR_FLAG = { name = "dir", key = "dir", type = "string", placeholder = "DIR",
                   doc = "the sandbox's state directory (default $TMPDIR/ugen-sandbox-<uid>)" }

local function sandbox_error(ctx, err)
  if type(err) ~= "table" then err = { kind = "sandbox", message = tostring(err) } end
  if not err.kind then err.kind = "sandbox" end
  return fail(ctx, err)
end

local commands = {}

commands[#commands + 1] = {
  name = "sandbox start",
  summary = "start the local sandbox; prints export lines for eval \"$(ugen sandbox start)\"",
  usage = "ugen sandbox start [--port N] [--dir DIR] [--speed X] [--seed S] [--tls]",
  flags = {
    { name = "port", key = "port", type = "integer", min = 0, max = 65535, cli_default = 0,
      doc = "port on 127.0.0.1 (0: a free one)" },
    DIR_FLAG,
    { name = "speed", key = "speed", type = "number", placeholder = "X", min = 1e-6, cli_default = 1,
      doc = "job clock speed-up (1: a default job takes about 20 s)" },
    { name = "seed", key = "seed", type = "string", placeholder = "S", cli_default = "ugen-sandbox",
      doc = "seed of the seeded accounts' keys and data" },
    { name = "tls", key = "tls", type = "boolean",
      doc = "serve HTTPS + HTTP/2 with a private CA made in DIR/tls/ (also prints export UGEN_CAINFO=...)" },
  },
  run = function(ctx)
    local v = ctx.values
    local info, err = sandbox().start{ port = v.port, dir = v.dir, speed = v.speed, seed = v.seed,
                                       tls = v.tls == true }
    if not info then return sandbox_error(ctx, err) end
    if ctx.json then
      print_raw_json(ctx, info)
    else
      out_line(ctx, (sandbox().exports(info):gsub("\n$", "")))
    end
    return EXIT.ok
  end,
}

commands[#commands + 1] = {
  name = "sandbox stop",
  summary = "stop the local sandbox",
  usage = "ugen sandbox stop [--dir DIR]",
  flags = { DIR_FLAG },
  run = function(ctx)
    local ok, err = sandbox().stop{ dir = ctx.values.dir }
    if not ok then return sandbox_error(ctx, err) end
    if ctx.json then print_json(ctx, { stopped = true }) else err_line(ctx, "ugen sandbox: stopped") end
    return EXIT.ok
  end,
}

commands[#commands + 1] = {
  name = "sandbox status",
  summary = "say whether the sandbox runs (exit 0) or not (exit 1)",
  usage = "ugen sandbox status [--dir DIR]",
  flags = { DIR_FLAG },
  run = function(ctx)
    local info, why = sandbox().status{ dir = ctx.values.dir }
    if ctx.json then
      if info then
        info.running = true
        print_raw_json(ctx, info)
      else
        print_raw_json(ctx, { running = false, message = why })
      end
    elseif info then
      out_line(ctx, string_format("running: pid %s, %s, speed %s, dir %s", tostring(info.pid),
        tostring(info.base_url), tostring(info.speed), tostring(info.dir)))
      for _, t in ipairs(info.tenants or {}) do
        out_line(ctx, string_format("  tenant %-10s credits %-7s concurrent %-3s daily %-5s  %s", tostring(t.slug),
          tostring(t.credits), tostring(t.concurrent_limit), tostring(t.daily_limit), tostring(t.doc or "")))
      end
    else
      out_line(ctx, "not running: " .. tostring(why))
    end
    return info and EXIT.ok or EXIT.error
  end,
}

return {
  groups = { sandbox = "the local U-Gen sandbox server (nginx) for development and tests" },
  commands = commands,
}
