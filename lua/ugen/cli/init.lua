-- ugen.cli: the `ugen` command line, written on the SDK's public API.
--
--   local code = require("ugen.cli").main(arg)   -- bin/ugen: os.exit(code)
--
-- Commands (ugen help lists them with every flag):
--   jobs create|get|list|wait (one or several jobs)|download, credits estimate|balance|transactions,
--   batch run|status|report (a catalogue to videos, ugen.batch),
--   webhooks set|get|delete (the account's webhook configuration),
--   webhook sign|verify|listen|new-secret (the receiving side, local),
--   models list|get, one generated command per other endpoint (tenant,
--   brand-kit, uploads, music, templates), sandbox start|stop|status, help, version.
--
-- Configuration: flags, then env (UGEN_API_KEY, UGEN_JWT, UGEN_BASE_URL,
-- UGEN_WEBHOOK_SECRET), then defaults. `--json` on every command prints one
-- JSON document on stdout (errors too: {"error": {...}}).
-- Exit status: 0 success; 1 error (the line names the error kind, e.g.
-- "error: rate_limit: ..."); 2 usage (bad flag, missing value: one line);
-- 3 the job failed or was cancelled; 4 over budget (jobs create --max-credits:
-- no job created); 130 interrupted.
-- Results go to stdout, progress and diagnostics to stderr. Secrets (API key,
-- JWT, webhook secret) are never printed.
--
-- This module: main, the global flags, finding the command, help and version.
-- The commands are in ugen.cli.cmd_* (one module per command group), on the
-- shared helpers ugen.cli.context (output, errors, the client), args (flags),
-- params (endpoint parameters as flags), pages, output, progress and listen.

local args = require "ugen.cli.args"
local context = require "ugen.cli.context"
local output = require "ugen.cli.output"
local cmd_jobs = require "ugen.cli.cmd_jobs"
local cmd_credits = require "ugen.cli.cmd_credits"
local cmd_webhooks = require "ugen.cli.cmd_webhooks"
local cmd_webhook = require "ugen.cli.cmd_webhook"
local cmd_models = require "ugen.cli.cmd_models"
local cmd_endpoints = require "ugen.cli.cmd_endpoints"
local cmd_sandbox = require "ugen.cli.cmd_sandbox"
local cmd_batch = require "ugen.cli.cmd_batch"

local _M = { _VERSION = "0.1.0" }

local ipairs, pairs, tostring, xpcall, type = ipairs, pairs, tostring, xpcall, type
local concat = table.concat
local string_format = string.format

local EXIT = context.EXIT
local usage_error, out_line = context.usage_error, context.out_line

local GLOBAL_FLAGS = {
  { name = "api-key", key = "api_key", type = "secret", placeholder = "KEY", env = "UGEN_API_KEY",
    doc = "API key (X-API-Key); prefer the env variable, flags show up in process lists" },
  { name = "jwt", key = "jwt", type = "secret", placeholder = "TOKEN", env = "UGEN_JWT",
    doc = "JWT sent as Authorization: Bearer (wins over the API key)" },
  { name = "base-url", key = "base_url", type = "string", placeholder = "URL", env = "UGEN_BASE_URL",
    cli_default = context.DEFAULT_BASE_URL, doc = "API base URL" },
  { name = "cainfo", key = "cainfo", type = "string", placeholder = "FILE", env = "UGEN_CAINFO",
    doc = "CA certificates (PEM) to verify the API's TLS certificate (the sandbox's --tls CA)" },
  { name = "request-timeout", key = "request_timeout", type = "number", placeholder = "SECONDS", min = 0.001,
    cli_default = 60, doc = "timeout of each HTTP request" },
  { name = "max-retries", key = "max_retries", type = "integer", min = 0, max = 10, cli_default = 2,
    doc = "retries of a failed idempotent request (0 disables)" },
  { name = "header", key = "header", type = "array", placeholder = "'NAME: VALUE'", no_type = true,
    doc = "an extra request header, repeatable (e.g. the sandbox's 'X-Sandbox-Fault: status=503')" },
  { name = "json", key = "json", type = "boolean", doc = "machine output: one JSON document on stdout" },
  { name = "help", key = "help", type = "boolean", short = "h", doc = "show help for the command" },
}
local GLOBAL_BY = args.index(GLOBAL_FLAGS)

---------------------------------------------------------------------------
-- The commands, in help order: COMMANDS[name] = def, ORDER = { def, ... },
-- GROUPS[group] = { sub, ... }, GROUP_DOC[group] = one line.

local COMMANDS, ORDER, GROUPS, GROUP_DOC = {}, {}, {}, {}

local function add(commands, groups)
  for _, def in ipairs(commands) do
    def.flags = def.flags or {}
    COMMANDS[def.name] = def
    ORDER[#ORDER + 1] = def
    local group, sub = def.name:match("^(%S+) (%S+)$")
    GROUPS[group] = GROUPS[group] or {}
    local g = GROUPS[group]
    g[#g + 1] = sub
  end
  for g, doc in pairs(groups) do GROUP_DOC[g] = doc end
end

for _, m in ipairs({ cmd_jobs, cmd_credits, cmd_webhooks, cmd_webhook, cmd_models, cmd_batch }) do
  add(m.commands, m.groups)
end
do
  -- every endpoint without a command above gets a generated one
  local handwritten = {}
  for name in pairs(COMMANDS) do
    local g, sub = name:match("^(%S+) (%S+)$")
    handwritten[g .. "." .. sub:gsub("%-", "_")] = true
  end
  add(cmd_endpoints.commands(handwritten), cmd_endpoints.groups)
end
add(cmd_sandbox.commands, cmd_sandbox.groups)

--- Every command by name ("jobs get"): { name, summary, usage, flags, ... }.
_M.commands = COMMANDS

---------------------------------------------------------------------------
-- Help

local function flag_names(specs)
  local names = {}
  for _, s in ipairs(specs) do
    if not s.hidden then names[#names + 1] = "--" .. s.name end
  end
  return names
end

local function wrap(words, indent, width)
  local lines, line = {}, indent
  local empty = true
  for _, w in ipairs(words) do
    if not empty and #line + 1 + #w > width then
      lines[#lines + 1] = line
      line = indent .. w
    else
      line = line .. (empty and "" or " ") .. w
    end
    empty = false
  end
  lines[#lines + 1] = line
  return lines
end

local function global_help(lines)
  lines[#lines + 1] = "Global flags (any command):"
  for _, l in ipairs(args.help_lines(GLOBAL_FLAGS)) do lines[#lines + 1] = l end
end

local function main_help()
  local lines = {
    "ugen " .. _M._VERSION .. ": the U-Gen API from the command line (lua-ugen)",
    "",
    "Usage: ugen [global flags] <command> [flags] [arguments]",
    "",
    "Commands:",
  }
  local group
  for _, def in ipairs(ORDER) do
    local g = def.name:match("^(%S+)")
    if g ~= group then
      group = g
      lines[#lines + 1] = ""
      lines[#lines + 1] = string_format("  %s: %s", g, GROUP_DOC[g] or "")
    end
    local shown = def.name
    if def.positional then shown = shown .. " " .. concat(def.positional, " ") end
    lines[#lines + 1] = string_format("    %-22s %s", shown, def.summary)
    local names = flag_names(def.flags)
    if #names > 0 then
      for _, l in ipairs(wrap(names, string.rep(" ", 27), 100)) do lines[#lines + 1] = l end
    end
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = string_format("    %-22s %s", "help [COMMAND]", "this text, or every flag of a command")
  lines[#lines + 1] = string_format("    %-22s %s", "version [--json]", "print the version")
  lines[#lines + 1] = ""
  global_help(lines)
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Configuration: flags, then env (UGEN_API_KEY, UGEN_JWT, UGEN_BASE_URL, UGEN_WEBHOOK_SECRET),"
  lines[#lines + 1] = "then defaults. Results go to stdout, progress to stderr (one updating line on a terminal,"
  lines[#lines + 1] = "plain lines otherwise; UGEN_TTY=1 or 0 forces either)."
  lines[#lines + 1] = "Exit status: 0 ok, 1 error (\"error: <kind>: ...\"), 2 usage, 3 job failed,"
  lines[#lines + 1] = "4 over budget (jobs create --max-credits: no job created), 130 interrupted."
  lines[#lines + 1] = "Boolean flags also take --no-FLAG or --FLAG=false; list flags repeat (--key-selling-points A"
  lines[#lines + 1] = "--key-selling-points B) or take a JSON array; object flags take a JSON object."
  lines[#lines + 1] = "'ugen help <command>' or 'ugen <command> --help' explains every flag of a command."
  return concat(lines, "\n")
end

local function group_help(g)
  local lines = { string_format("ugen %s: %s", g, GROUP_DOC[g] or ""), "", "Commands:" }
  for _, sub in ipairs(GROUPS[g]) do
    local def = COMMANDS[g .. " " .. sub]
    lines[#lines + 1] = string_format("  %-22s %s", def.name, def.summary)
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = string_format("'ugen %s <command> --help' lists a command's flags.", g)
  return concat(lines, "\n")
end

local function command_help(def)
  local lines = { "Usage: " .. def.usage, "", def.summary:sub(1, 1):upper() .. def.summary:sub(2) .. "." }
  if #def.flags > 0 then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "Flags:"
    for _, l in ipairs(args.help_lines(def.flags)) do lines[#lines + 1] = l end
    lines[#lines + 1] = "Boolean flags also take --no-FLAG or --FLAG=false."
  end
  if def.api then
    lines[#lines + 1] = ""
    global_help(lines)
  else
    lines[#lines + 1] = ""
    lines[#lines + 1] = "Global flags: --json (machine output), -h/--help."
  end
  return concat(lines, "\n")
end

-- The help of `ugen help [TOPIC]`: everything, a command or a group; nil for another topic.
local function help_text(topic)
  if topic == nil then return main_help() end
  if COMMANDS[topic] then return command_help(COMMANDS[topic]) end
  if GROUPS[topic] then return group_help(topic) end
  return nil
end

---------------------------------------------------------------------------
-- main

local function has_help(argv, from)
  for i = from, #argv do
    local a = argv[i]
    if a == "--" then return false end
    if a == "--help" or a == "-h" then return true end
  end
  return false
end

local function run(argv, io_)
  local ctx = { out = io_.out, err = io_.err }
  local n = #argv
  -- leading global flags
  local pre, i = {}, 1
  while i <= n do
    local a = argv[i]
    if a:sub(1, 1) ~= "-" or a == "-" then break end
    if a == "--version" then
      out_line(ctx, "ugen " .. _M._VERSION)
      return EXIT.ok
    end
    local name = a:match("^(%-%-[^=]+)=") or a
    local spec = GLOBAL_BY[name]
    if not spec then usage_error("unknown flag " .. name .. " (see 'ugen help')") end
    pre[#pre + 1] = a
    if spec.type ~= "boolean" and not a:find("=", 1, true) then
      i = i + 1
      if argv[i] == nil then usage_error(a .. " needs a value") end
      pre[#pre + 1] = argv[i]
    end
    i = i + 1
  end

  local word = argv[i]
  if word == nil then
    for _, a in ipairs(pre) do
      if a == "--help" or a == "-h" then out_line(ctx, main_help()); return EXIT.ok end
    end
    ctx.err:write(main_help(), "\n")
    usage_error("missing command (see 'ugen help')")
  end
  if word == "help" then
    local topic = argv[i + 1] and (argv[i + 2] and (argv[i + 1] .. " " .. argv[i + 2]) or argv[i + 1])
    if topic and argv[i + 2] and argv[i + 2]:sub(1, 1) == "-" then topic = argv[i + 1] end
    local text = help_text(topic)
    if not text then usage_error("no help for '" .. tostring(topic) .. "' (see 'ugen help')") end
    out_line(ctx, text)
    return EXIT.ok
  end
  if word == "version" then
    local as_json = false
    for k = 1, #pre do if pre[k] == "--json" then as_json = true end end
    for k = i + 1, n do
      if argv[k] == "--json" then as_json = true
      elseif argv[k] == "--help" or argv[k] == "-h" then
        out_line(ctx, "Usage: ugen version [--json]\n\nPrint the version (--json: {name, version, lua}).")
        return EXIT.ok
      else usage_error("'ugen version' takes no argument but --json (got " .. argv[k] .. ")") end
    end
    if as_json then
      context.print_json(ctx, { name = "ugen", version = _M._VERSION,
        lua = type(jit) == "table" and jit.version or _VERSION })
    else
      out_line(ctx, "ugen " .. _M._VERSION)
    end
    return EXIT.ok
  end

  local def, rest
  if GROUPS[word] then
    local sub = argv[i + 1]
    if sub == nil or sub:sub(1, 1) == "-" then
      if has_help(argv, i + 1) then out_line(ctx, group_help(word)); return EXIT.ok end
      usage_error(string_format("'ugen %s' needs a command: %s", word, concat(GROUPS[word], ", ")))
    end
    def = COMMANDS[word .. " " .. sub]
    if not def then
      local hint = args.suggest(sub, GROUPS[word])
      usage_error(string_format("unknown command '%s %s'%s", word, sub,
        hint and (" (did you mean '" .. word .. " " .. hint .. "'?)") or
        (" (commands: " .. concat(GROUPS[word], ", ") .. ")")))
    end
    rest = i + 2
  else
    local names = { "help", "version" }
    for g in pairs(GROUPS) do names[#names + 1] = g end
    table.sort(names)
    local hint = args.suggest(word, names)
    usage_error("unknown command '" .. word .. "'" .. (hint and (" (did you mean '" .. hint .. "'?)") or "")
      .. " (see 'ugen help')")
  end
  ctx.command = def.name

  if has_help(argv, rest) or has_help(pre, 1) then
    out_line(ctx, command_help(def))
    return EXIT.ok
  end

  local tokens = {}
  for _, a in ipairs(pre) do tokens[#tokens + 1] = a end
  for k = rest, n do tokens[#tokens + 1] = argv[k] end
  local specs = args.join(def.flags, GLOBAL_FLAGS)
  -- def.variadic: the last positional repeats (jobs wait A B ...)
  local values, pos = args.parse(tokens, 1, specs,
    def.variadic and math.huge or (def.positional and #def.positional or 0))
  if not values then usage_error(pos) end
  ctx.json = values.json
  -- env fallbacks and required flags of the command (global env is read by context.client)
  local ok, msg = args.finish(values, def.flags)
  if not ok then usage_error(msg) end
  for _, s in ipairs(def.flags) do
    if s.type == "secret" then context.add_secret(ctx, values[s.key]) end
  end
  if def.positional then
    for k, pname in ipairs(def.positional) do
      if pos[k] == nil or pos[k] == "" then usage_error("missing " .. pname .. " (usage: " .. def.usage .. ")") end
    end
  end
  ctx.values, ctx.pos = values, pos
  return def.run(ctx)
end

--- Run the CLI. argv: the arguments (arg table of the launcher). io_: optional
-- {out=, err=} files (default io.stdout / io.stderr). Returns the exit status.
function _M.main(argv, io_)
  argv = argv or {}
  io_ = io_ or {}
  io_.out = io_.out or io.stdout
  io_.err = io_.err or io.stderr
  local list = {}
  for k = 1, #argv do list[k] = tostring(argv[k]) end
  local trace
  local ok, res = xpcall(function() return run(list, io_) end, function(e)
    if not context.is_usage(e) then trace = debug.traceback(tostring(e), 2) end
    return e
  end)
  if ok then return res or EXIT.ok end
  if context.is_usage(res) then
    local where = "ugen"
    -- name the command when it is known
    for k = 1, math.min(#list, 4) do
      local a, b = list[k], list[k + 1]
      if a and b and COMMANDS[a .. " " .. b] then where = "ugen " .. a .. " " .. b; break end
    end
    io_.err:write(where, ": ", output.scalar(tostring(res.msg)), "\n")
    io_.err:flush()
    return EXIT.usage
  end
  local text = tostring(res)
  if text:find("interrupted!", 1, true) then
    io_.err:write("\ninterrupted\n")
    io_.err:flush()
    return EXIT.interrupted
  end
  io_.err:write("error: internal: ", output.scalar(text:match("^[^\n]*")), "\n")
  if context.env("UGEN_DEBUG") and trace then io_.err:write(trace, "\n") end
  io_.err:flush()
  return EXIT.error
end

return _M
