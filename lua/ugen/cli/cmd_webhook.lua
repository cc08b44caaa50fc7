-- ugen.cli.cmd_webhook: the `ugen webhook` commands, the receiving side of
-- webhooks, all local: sign a body, verify a delivery, listen (a receiver on
-- 127.0.0.1: ugen.cli.listen), new-secret. The account's webhook configuration
-- on the API is ugen.cli.cmd_webhooks.
-- The shape of a cmd_* module: see ugen.cli.cmd_jobs.

local args = require "ugen.cli.args"
local context = require "ugen.cli.context"
local output = require "ugen.cli.output"

local pcall, require = pcall, require
local string_format = string.format

local EXIT = context.EXIT
local fail, out_line, print_json, show = context.fail, context.out_line, context.print_json, context.show

-- the SDK's ugen.webhook (sign, verify, new_secret), loaded when a command runs
local function webhook()
  return require("ugen").webhook
end

local function read_stdin()
  local data = io.stdin:read("*a")
  return data or ""
end

local SECRET_FLAG = { name = "secret", key = "secret", type = "secret", env = "UGEN_WEBHOOK_SECRET",
                      required = true, doc = "the webhook signing secret" }

local TIME_FLAGS = {
  { name = "tolerance", key = "tolerance", type = "number", placeholder = "SECONDS", min = 0, cli_default = 300,
    doc = "accept timestamps this far from now" },
  { name = "ignore-timestamp", key = "ignore_timestamp", type = "boolean",
    doc = "do not check the timestamp's age (the signature is still checked)" },
}

local function tolerance_of(v)
  if v.ignore_timestamp then return false end
  return v.tolerance
end

local commands = {}

commands[#commands + 1] = {
  name = "webhook sign",
  summary = "sign a body read from stdin; prints the two headers a sender adds",
  usage = "ugen webhook sign --secret SECRET [--timestamp T] < body.json",
  flags = {
    SECRET_FLAG,
    { name = "timestamp", key = "timestamp", type = "string", placeholder = "T",
      cli_default = "now (unix seconds)", doc = "the X-UGen-Timestamp value to sign" },
  },
  run = function(ctx)
    local wh = webhook()
    local body = read_stdin()
    local ts = ctx.values.timestamp or string_format("%d", os.time())
    local sig = wh.sign(ctx.values.secret, ts, body)
    if ctx.json then
      print_json(ctx, { timestamp = ts, signature = sig,
                        headers = { ["X-UGen-Timestamp"] = ts, ["X-UGen-Signature"] = sig } })
    else
      out_line(ctx, "X-UGen-Timestamp: " .. ts)
      out_line(ctx, "X-UGen-Signature: " .. sig)
    end
    return EXIT.ok
  end,
}

commands[#commands + 1] = {
  name = "webhook verify",
  summary = "verify a delivery: body on stdin, headers' values as flags; prints the event",
  usage = "ugen webhook verify --secret SECRET --timestamp T --signature HEX < body.json",
  flags = args.join({
    SECRET_FLAG,
    { name = "timestamp", key = "timestamp", type = "string", placeholder = "T", required = true,
      doc = "the X-UGen-Timestamp header value" },
    { name = "signature", key = "signature", type = "string", placeholder = "HEX", required = true,
      doc = "the X-UGen-Signature header value" },
  }, TIME_FLAGS),
  run = function(ctx)
    local v = ctx.values
    local body = read_stdin()
    local event, err = webhook().verify(v.secret,
      { ["X-UGen-Timestamp"] = v.timestamp, ["X-UGen-Signature"] = v.signature }, body,
      { tolerance = tolerance_of(v) })
    if not event then return fail(ctx, err) end
    if ctx.json then
      print_json(ctx, { verified = true, event = event })
    else
      out_line(ctx, string_format("verified: %s for job %s", show(event.event), show(event.job_id)))
      out_line(ctx, output.format(event))
    end
    return EXIT.ok
  end,
}

commands[#commands + 1] = {
  name = "webhook listen",
  summary = "a local receiver on 127.0.0.1: verifies each delivery and prints the event",
  usage = "ugen webhook listen --port N --secret SECRET [--count N] [--timeout SECONDS]",
  flags = args.join({
    { name = "port", key = "port", type = "integer", min = 0, max = 65535, cli_default = 0,
      doc = "port on 127.0.0.1 (0: a free one; the first line says which)" },
    SECRET_FLAG,
    { name = "path", key = "path", type = "string", placeholder = "PATH", cli_default = "/",
      doc = "the URL path deliveries are posted to" },
    { name = "count", key = "count", type = "integer", min = 1, doc = "exit 0 after this many distinct events" },
    { name = "timeout", key = "timeout", type = "number", placeholder = "SECONDS", min = 0.001,
      doc = "stop after this long (exit 1 if --count events did not arrive)" },
    { name = "fail-first", key = "fail_first", type = "integer", min = 0,
      doc = "answer 503 to the first N verified deliveries (to watch the sender retry)" },
  }, TIME_FLAGS),
  run = function(ctx)
    local v = ctx.values
    if v.path and v.path:sub(1, 1) ~= "/" then context.usage_error("--path must start with '/'") end
    local ok, socket = pcall(require, "socket")
    if not ok then
      return fail(ctx, { kind = "network", message = "webhook listen needs luasocket (apt install lua-socket)" })
    end
    local code, msg = require("ugen.cli.listen").run{
      socket = socket, verify = webhook().verify, secret = v.secret, port = v.port, path = v.path,
      count = v.count, timeout = v.timeout, tolerance = tolerance_of(v), fail_first = v.fail_first,
      json = ctx.json, out = ctx.out, err = ctx.err,
    }
    if code ~= 0 then
      local kind, rest = msg:match("^(%w+): (.*)$")
      return fail(ctx, { kind = kind or "error", message = rest or msg })
    end
    return EXIT.ok
  end,
}

commands[#commands + 1] = {
  name = "webhook new-secret",
  summary = "print a new random signing secret (64 hex characters)",
  usage = "ugen webhook new-secret",
  run = function(ctx)
    local s = webhook().new_secret()
    -- the one place a secret is printed: the user asked for a new one
    if ctx.json then context.print_raw_json(ctx, { secret = s }) else out_line(ctx, s) end
    return EXIT.ok
  end,
}

return {
  groups = { webhook = "the receiving side: sign, verify and receive deliveries locally" },
  commands = commands,
}
