-- ugen.cli: the `ugen` command line, written on the SDK's public API.
--
--   local code = require("ugen.cli").main(arg)   -- bin/ugen: os.exit(code)
--
-- Commands (ugen help lists them with every flag):
--   jobs create|get|list|wait|download, credits estimate|balance|transactions,
--   webhooks set|get|delete (the account's webhook configuration),
--   webhook sign|verify|listen|new-secret (the receiving side, local),
--   models list|get, sandbox start|stop|status, help, version.
--
-- Configuration: flags, then env (UGEN_API_KEY, UGEN_JWT, UGEN_BASE_URL,
-- UGEN_WEBHOOK_SECRET), then defaults. `--json` on every command prints one
-- JSON document on stdout (errors too: {"error": {...}}).
-- Exit status: 0 success; 1 error (the line names the error kind, e.g.
-- "error: rate_limit: ..."); 2 usage (bad flag, missing value: one line);
-- 3 the job failed or was cancelled; 130 interrupted.
-- Results go to stdout, progress and diagnostics to stderr. Secrets (API key,
-- JWT, webhook secret) are never printed.

local args = require "ugen.cli.args"
local output = require "ugen.cli.output"
local progress = require "ugen.cli.progress"
local endpoints = require "ugen.endpoints"

local _M = { _VERSION = "0.1.0" }

local type, ipairs, pairs, tostring, tonumber, pcall, xpcall, error, select =
  type, ipairs, pairs, tostring, tonumber, pcall, xpcall, error, select
local concat = table.concat
local string_format = string.format
local unpack = table.unpack or unpack -- luacheck: ignore 143

local EXIT = { ok = 0, error = 1, usage = 2, job_failed = 3, interrupted = 130 }
_M.EXIT = EXIT

local DEFAULT_BASE_URL = "https://api.u-gen.ai/api/v1"
local DEFAULT_INTERVAL = 2
local DEFAULT_WAIT_TIMEOUT = 1800

-- Raised (as a table) for usage errors deep inside a command; main turns it into exit 2.
local USAGE = {}
local function usage_error(msg) error(setmetatable({ msg = msg }, USAGE), 0) end

local getenv = os.getenv
_M.getenv = function(name) return getenv(name) end -- tests may replace it

local function env(name)
  local v = _M.getenv(name)
  if v == "" then return nil end
  return v
end

---------------------------------------------------------------------------
-- Flag specs

local GLOBAL_FLAGS = {
  { name = "api-key", key = "api_key", type = "secret", placeholder = "KEY", env = "UGEN_API_KEY",
    doc = "API key (X-API-Key); prefer the env variable, flags show up in process lists" },
  { name = "jwt", key = "jwt", type = "secret", placeholder = "TOKEN", env = "UGEN_JWT",
    doc = "JWT sent as Authorization: Bearer (wins over the API key)" },
  { name = "base-url", key = "base_url", type = "string", placeholder = "URL", env = "UGEN_BASE_URL",
    cli_default = DEFAULT_BASE_URL, doc = "API base URL" },
  { name = "request-timeout", key = "request_timeout", type = "number", placeholder = "SECONDS", min = 0.001,
    cli_default = 60, doc = "timeout of each HTTP request" },
  { name = "max-retries", key = "max_retries", type = "integer", min = 0, max = 10, cli_default = 2,
    doc = "retries of a failed idempotent request (0 disables)" },
  { name = "header", key = "header", type = "array", placeholder = "'NAME: VALUE'", no_type = true,
    doc = "an extra request header, repeatable (e.g. the sandbox's 'X-Sandbox-Fault: status=503')" },
  { name = "json", key = "json", type = "boolean", doc = "machine output: one JSON document on stdout" },
  { name = "help", key = "help", type = "boolean", short = "h", doc = "show help for the command" },
}

local TYPE_OF = { string = "string", integer = "integer", number = "number", boolean = "boolean",
                  array = "array", object = "object" }

-- Flag specs generated from an endpoint's query/body parameters.
local function endpoint_flags(ep_name, extra)
  local ep = assert(endpoints.by_name[ep_name], ep_name)
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

local function join(...)
  local out = {}
  for i = 1, select("#", ...) do
    for _, s in ipairs((select(i, ...))) do out[#out + 1] = s end
  end
  return out
end

local WAIT_FLAGS = {
  { name = "interval", key = "interval", type = "number", placeholder = "SECONDS", min = 0.05,
    cli_default = DEFAULT_INTERVAL, doc = "seconds between status polls" },
  { name = "timeout", key = "timeout", type = "number", placeholder = "SECONDS", min = 0.001,
    cli_default = DEFAULT_WAIT_TIMEOUT, doc = "give up waiting after this long (the job keeps running)" },
  { name = "quiet", key = "quiet", type = "boolean", short = "q", doc = "no progress display" },
}

local PAGE_FLAGS_EXTRA = {
  { name = "all", key = "all", type = "boolean", doc = "every item of every page (ignores --page)" },
}

local SECRET_FLAG = { name = "secret", key = "secret", type = "secret", env = "UGEN_WEBHOOK_SECRET",
                      doc = "the webhook signing secret" }

---------------------------------------------------------------------------
-- Context helpers

local ugen_mod
local function ugen()
  if not ugen_mod then ugen_mod = require "ugen" end
  return ugen_mod
end

local function errors() return require "ugen.errors" end

-- The secrets this run was given (API key, JWT, webhook secrets, credential
-- headers): scrubbed from every line printed through out_line/err_line, so a
-- server echoing them back, in an error or in a success body, cannot make the
-- CLI print them. (ugen.errors scrubs the SDK's errors already; this also
-- covers results.)
local function add_secret(ctx, ...)
  ctx.secret_values = ctx.secret_values or {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "string" then ctx.secret_values[#ctx.secret_values + 1] = v end
  end
  ctx.secret_forms = errors().secret_forms(ctx.secret_values)
end

local function scrub(ctx, s)
  if ctx.secret_forms and #ctx.secret_forms > 0 then return errors().scrub_string(s, ctx.secret_forms) end
  return s
end

-- One value from server data for a line of human output (controls escaped).
local function show(v)
  return output.scalar(v == nil and "" or (type(v) == "string" and v or tostring(v)))
end

local function out_line(ctx, s)
  ctx.out:write(scrub(ctx, s), "\n")
  ctx.out:flush()
end

local function err_line(ctx, s)
  ctx.err:write(scrub(ctx, s), "\n")
  ctx.err:flush()
end

local function print_json(ctx, v)
  out_line(ctx, output.to_json(v))
end

-- JSON without redaction: for values that are meant to be shown (a new
-- secret the user asked for, the sandbox's local test credentials).
local function print_raw_json(ctx, v)
  ctx.out:write(require("ugen.json").encode(v) or "null", "\n")
  ctx.out:flush()
end

-- Report an error and return the exit status.
local function fail(ctx, err, code)
  err_line(ctx, "error: " .. output.error_text(err))
  if ctx.json then print_json(ctx, output.error_table(err)) end
  return code or EXIT.error
end

local function client(ctx)
  if ctx.client_obj then return ctx.client_obj end
  local g = ctx.values
  local key = g.api_key or env("UGEN_API_KEY")
  local jwt = g.jwt or env("UGEN_JWT")
  if not key and not jwt then
    usage_error("missing API key: pass --api-key or set UGEN_API_KEY (or --jwt / UGEN_JWT)")
  end
  local headers
  for _, h in ipairs(g.header or {}) do
    local name, value = h:match("^%s*([%w!#$%%&'*+%-.^_`|~]+)%s*:%s*(.-)%s*$")
    -- the value is not echoed: a header may carry a credential
    if not name then usage_error("--header expects 'Name: value' (a header name, a colon, a value)") end
    headers = headers or {}
    headers[name] = value
  end
  add_secret(ctx, key, jwt)
  for name, value in pairs(headers or {}) do
    local lname = name:lower()
    if lname == "authorization" or lname == "x-api-key" or lname == "cookie" or lname == "proxy-authorization" then
      add_secret(ctx, value, value:match("^%a+%s+(.+)$"))
    end
  end
  local opts = {
    api_key = key, jwt = jwt, headers = headers,
    base_url = g.base_url or env("UGEN_BASE_URL") or DEFAULT_BASE_URL,
    timeout = g.request_timeout, max_retries = g.max_retries,
  }
  local ok, c = pcall(ugen().new, opts)
  if not ok then
    -- a bad option value (e.g. a malformed base URL) is a usage error
    usage_error(tostring(c):gsub("^[^:]*:%d+: ", ""))
  end
  if not c then usage_error("cannot create the client") end
  ctx.client_obj = c
  return c
end

local function read_stdin()
  local data = io.stdin:read("*a")
  return data or ""
end

-- The endpoint's parameters from the parsed flags; lists are marked as JSON
-- arrays (ugen.array) so they are sent, and validated, as arrays.
local function endpoint_params(ctx, specs)
  local params = {}
  for _, s in ipairs(specs) do
    local v = ctx.values[s.key]
    if s.param and v ~= nil then
      if s.type == "array" then
        local list = {}
        for i, x in ipairs(v) do list[i] = x end
        v = ugen().array(list)
      end
      params[s.key] = v
    end
  end
  return params
end

local function stderr_is_tty()
  return progress.isatty(2, _M.getenv)
end

---------------------------------------------------------------------------
-- Waiting for a job, with progress

-- The job as the progress display may show it: string fields with control
-- characters escaped and secrets scrubbed (the display writes to stderr itself).
local function display_job(ctx, job)
  if type(job) ~= "table" then return job end
  local out = {}
  for k, x in pairs(job) do
    out[k] = type(x) == "string" and scrub(ctx, show(x)) or x
  end
  return out
end

local function wait_job(ctx, c, job_id, first)
  local v = ctx.values
  local prog
  if not v.quiet then
    prog = progress.new{ out = ctx.err, tty = stderr_is_tty() }
    if type(first) == "table" then prog:update(display_job(ctx, first)) end
  end
  local final, err = c.jobs:wait(job_id, {
    interval = v.interval or DEFAULT_INTERVAL,
    timeout = v.timeout or DEFAULT_WAIT_TIMEOUT,
    on_progress = function(job) if prog then prog:update(display_job(ctx, job)) end end,
  })
  if prog then
    if final then prog:update(display_job(ctx, final)) end
    prog:finish()
  end
  if not final then
    if type(err) == "table" and err.kind == "job_failed" then
      local job = type(err.job) == "table" and err.job or {}
      local msg = string_format("job %s %s%s: %s", show(job.job_id or job_id), show(job.status or "failed"),
        job.current_stage and (" at stage " .. show(job.current_stage)) or "",
        show(job.error_message or err.message or "no error message"))
      err_line(ctx, "error: job_failed: " .. msg)
      if ctx.json then print_json(ctx, output.error_table(err)) end
      return EXIT.job_failed
    end
    return fail(ctx, err)
  end
  if ctx.json then
    print_json(ctx, final)
  else
    if prog then
      err_line(ctx, string_format("job %s %s in %s", show(final.job_id or job_id), show(final.status),
        progress.elapsed_text(prog:elapsed())))
    end
    if final.final_video_url then
      out_line(ctx, show(final.final_video_url))
    else
      out_line(ctx, output.format(final))
    end
  end
  return EXIT.ok
end

---------------------------------------------------------------------------
-- Commands

local COMMANDS, ORDER, GROUPS = {}, {}, {}

local function command(def)
  def.flags = def.flags or {}
  COMMANDS[def.name] = def
  ORDER[#ORDER + 1] = def
  local group = def.name:match("^(%S+) ")
  if group then
    GROUPS[group] = GROUPS[group] or {}
    local g = GROUPS[group]
    g[#g + 1] = def.name:match(" (%S+)$")
  end
end

local GROUP_DOC = {
  jobs = "video jobs: create one, follow it, list, download the result",
  credits = "credit balance, ledger and price estimates",
  webhooks = "the account's webhook configuration (URL and signing secret) on the API",
  webhook = "the receiving side: sign, verify and receive deliveries locally",
  models = "video models and their capabilities",
  sandbox = "the local U-Gen sandbox server (nginx) for development and tests",
}

-- jobs create ---------------------------------------------------------------
local CREATE_FLAGS = endpoint_flags("jobs.create", {
  product_image_url = { aliases = { "image-url" }, placeholder = "URL" },
  segment_count = { aliases = { "segments" } },
  video_model = { aliases = { "model" }, placeholder = "MODEL" },
  persona_id = { placeholder = "ID" },
  custom_music_id = { placeholder = "ID" },
  webhook_url = { placeholder = "URL" },
  idempotency_key = { placeholder = "KEY" },
  stop_at_stage = { placeholder = "STAGE" },
})

command{
  name = "jobs create", api = true,
  summary = "create a video job; prints its id (with --wait: progress, then the final video URL)",
  usage = "ugen jobs create --product-name TEXT --image-url URL --segments N [flags] [--wait]",
  flags = join(CREATE_FLAGS, {
    { name = "wait", key = "wait", type = "boolean", doc = "follow the job to the end, showing progress" },
  }, WAIT_FLAGS),
  run = function(ctx)
    local c = client(ctx)
    local params = endpoint_params(ctx, CREATE_FLAGS)
    local job, err = c.jobs:create(params)
    if not job then
      local code = fail(ctx, err)
      -- the request may have reached the API: the same key makes a retry safe
      if type(err) == "table" and err.idempotency_key and not params.idempotency_key
          and (err.kind == "network" or err.kind == "timeout"
               or (err.kind == "api" and (err.status == nil or err.status >= 500))) then
        err_line(ctx, "hint: the job may exist already; retry with --idempotency-key " .. err.idempotency_key
          .. " to get it instead of a duplicate")
      end
      return code
    end
    if not ctx.values.wait then
      if ctx.json then print_json(ctx, job) else out_line(ctx, show(job.job_id)) end
      return EXIT.ok
    end
    if not ctx.json then out_line(ctx, show(job.job_id)) end
    if not ctx.values.quiet then err_line(ctx, "created job " .. show(job.job_id) .. "; waiting for it") end
    return wait_job(ctx, c, job.job_id, job)
  end,
}

-- jobs get / list / wait / download -----------------------------------------
command{
  name = "jobs get", api = true, positional = { "JOB_ID" },
  summary = "show a job: status, stage, progress, final video URL",
  usage = "ugen jobs get JOB_ID",
  run = function(ctx)
    local job, err = client(ctx).jobs:get(ctx.pos[1])
    if not job then return fail(ctx, err) end
    if ctx.json then print_json(ctx, job) else out_line(ctx, output.format(job)) end
    return EXIT.ok
  end,
}

local JOB_COLS = {
  { "job_id", "JOB_ID" }, { "status", "STATUS" }, { "current_stage", "STAGE" },
  { "progress_percent", "PROGRESS" }, { "product_name", "PRODUCT" }, { "created_at", "CREATED" },
}

-- One page of an envelope endpoint as a table, or every page with --all
-- (through the resource's iterator: jobs:each, credits:each_transaction).
local function list_command(ctx, resource, method, each, ep_specs, cols, what)
  local c = client(ctx)
  local res = c[resource]
  local params = endpoint_params(ctx, ep_specs)
  if ctx.values.all then
    params.page = nil
    if params.page_size == nil then params.page_size = 100 end
    local items = {}
    for item, err in res[each](res, params) do
      if not item then return fail(ctx, err) end
      items[#items + 1] = item
    end
    if ctx.json then
      print_json(ctx, require("ugen.json").array(items))
    else
      out_line(ctx, output.table(items, cols))
      err_line(ctx, string_format("%d %s", #items, what))
    end
    return EXIT.ok
  end
  local page, err = res[method](res, params)
  if not page then return fail(ctx, err) end
  if ctx.json then print_json(ctx, page); return EXIT.ok end
  out_line(ctx, output.table(page.items or {}, cols))
  local function n(v) return v ~= nil and output.scalar(v) or "?" end
  err_line(ctx, string_format("page %s of %s (%s %s in all, %s per page)", n(page.page), n(page.total_pages),
    n(page.total), what, n(page.page_size)))
  return EXIT.ok
end

local JOBS_LIST_FLAGS = endpoint_flags("jobs.list")
command{
  name = "jobs list", api = true,
  summary = "list jobs, newest first (one page, or --all)",
  usage = "ugen jobs list [--page N] [--page-size N] [--all]",
  flags = join(JOBS_LIST_FLAGS, PAGE_FLAGS_EXTRA),
  run = function(ctx)
    return list_command(ctx, "jobs", "list", "each", JOBS_LIST_FLAGS, JOB_COLS, "jobs")
  end,
}

command{
  name = "jobs wait", api = true, positional = { "JOB_ID" },
  summary = "follow a job to the end with a progress bar, then print the final video URL",
  usage = "ugen jobs wait JOB_ID [--interval SECONDS] [--timeout SECONDS]",
  flags = WAIT_FLAGS,
  run = function(ctx)
    return wait_job(ctx, client(ctx), ctx.pos[1])
  end,
}

local function human_bytes(n)
  n = tonumber(n) or 0
  if n >= 1024 * 1024 then return string_format("%.1f MB", n / (1024 * 1024)) end
  if n >= 1024 then return string_format("%.1f kB", n / 1024) end
  return string_format("%d B", n)
end

command{
  name = "jobs download", api = true, positional = { "JOB_ID" },
  summary = "download a completed job's final video to a file",
  usage = "ugen jobs download JOB_ID [-o FILE] [--force]",
  flags = {
    { name = "output", key = "output", short = "o", type = "string", placeholder = "FILE",
      cli_default = "JOB_ID.mp4", doc = "where to write the video" },
    { name = "force", key = "force", type = "boolean", doc = "overwrite an existing file" },
    { name = "quiet", key = "quiet", type = "boolean", short = "q", doc = "no progress display" },
  },
  run = function(ctx)
    local c = client(ctx)
    local id = ctx.pos[1]
    -- resumable: a broken download keeps FILE.part, the next run continues it
    local path = ctx.values.output or (id:gsub("[^%w%-_.]", "_") .. ".mp4")
    if not ctx.values.force then
      local f = io.open(path, "rb")
      if f then
        f:close()
        return fail(ctx, { kind = "conflict", message = path .. " exists (pass --force to overwrite)" })
      end
    end
    local quiet = ctx.values.quiet
    local tty = not quiet and stderr_is_tty()
    if not quiet then err_line(ctx, "downloading the final video of job " .. id .. " to " .. path) end
    local shown = false
    local res, err = c.jobs:download(id, path, {
      -- on a terminal: one updating line; otherwise only the summary at the end
      on_progress = tty and function(done, total)
        done = tonumber(done) or 0
        total = tonumber(total)
        local text
        if total and total > 0 then
          text = string_format("%s %3d%%  %s / %s", progress.bar(done * 100 / total), math.floor(done * 100 / total),
            human_bytes(done), human_bytes(total))
        else
          text = human_bytes(done)
        end
        ctx.err:write("\r\27[K", text)
        ctx.err:flush()
        shown = true
      end or nil,
    })
    if shown then ctx.err:write("\n"); ctx.err:flush() end
    if not res then
      local code = fail(ctx, err)
      if type(err) == "table" and err.part then
        err_line(ctx, string_format("hint: %s of the video are kept in %s; run the same command again to resume",
          human_bytes(err.part_bytes), tostring(err.part)))
      end
      return code
    end
    if ctx.json then
      print_json(ctx, res)
    else
      if not quiet then err_line(ctx, string_format("saved %s to %s", human_bytes(res.size), path)) end
      out_line(ctx, path)
    end
    return EXIT.ok
  end,
}

-- credits ---------------------------------------------------------------------
local ESTIMATE_FLAGS = endpoint_flags("credits.estimate", {
  segment_count = { aliases = { "segments" } },
  model_id = { aliases = { "model" }, placeholder = "MODEL" },
  variant = { placeholder = "VARIANT" },
})
command{
  name = "credits estimate", api = true,
  summary = "price a job before creating it (total and breakdown)",
  usage = "ugen credits estimate --segments N --model MODEL [--variant V] [--music-enabled] [--voice-enabled]",
  flags = ESTIMATE_FLAGS,
  run = function(ctx)
    local est, err = client(ctx).credits:estimate(endpoint_params(ctx, ESTIMATE_FLAGS))
    if not est then return fail(ctx, err) end
    if ctx.json then print_json(ctx, est) else out_line(ctx, output.format(est)) end
    return EXIT.ok
  end,
}

command{
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

local TX_FLAGS = endpoint_flags("credits.transactions", { job_id = { placeholder = "JOB_ID" } })
command{
  name = "credits transactions", api = true,
  summary = "the credit ledger (one page, or --all)",
  usage = "ugen credits transactions [--page N] [--page-size N] [--job-id ID] [--all]",
  flags = join(TX_FLAGS, PAGE_FLAGS_EXTRA),
  run = function(ctx)
    return list_command(ctx, "credits", "transactions", "each_transaction", TX_FLAGS, {
      { "type", "TYPE" }, { "amount", "AMOUNT" }, { "balance_before", "BEFORE" },
      { "balance_after", "AFTER" }, { "job_id", "JOB_ID" }, { "created_at", "CREATED" },
    }, "transactions")
  end,
}

-- webhooks (tenant configuration) ----------------------------------------------
local WEBHOOK_SET_FLAGS = endpoint_flags("webhooks.set", {
  webhook_url = { aliases = { "url" }, placeholder = "URL" },
  webhook_secret = { aliases = { "secret" }, type = "secret", env = "UGEN_WEBHOOK_SECRET",
                     doc = "signing secret (omitted: unsigned deliveries); make one with 'ugen webhook new-secret'" },
})
command{
  name = "webhooks set", api = true,
  summary = "set or replace the account's webhook URL and signing secret",
  usage = "ugen webhooks set --url URL [--secret SECRET]",
  flags = WEBHOOK_SET_FLAGS,
  run = function(ctx)
    local params = endpoint_params(ctx, WEBHOOK_SET_FLAGS)
    local res, err = client(ctx).webhooks:set(params)
    if not res then return fail(ctx, err) end
    if ctx.json then
      print_json(ctx, type(res) == "table" and res or { ok = true })
    else
      out_line(ctx, string_format("webhook set: %s (%s)", params.webhook_url,
        params.webhook_secret and "deliveries signed" or "no secret: deliveries unsigned"))
    end
    return EXIT.ok
  end,
}

command{
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

command{
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

-- webhook (receiver side) --------------------------------------------------------
local function secret_flag(required)
  local s = {}
  for k, v in pairs(SECRET_FLAG) do s[k] = v end
  s.required = required
  return s
end

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

command{
  name = "webhook sign",
  summary = "sign a body read from stdin; prints the two headers a sender adds",
  usage = "ugen webhook sign --secret SECRET [--timestamp T] < body.json",
  flags = {
    secret_flag(true),
    { name = "timestamp", key = "timestamp", type = "string", placeholder = "T",
      cli_default = "now (unix seconds)", doc = "the X-UGen-Timestamp value to sign" },
  },
  run = function(ctx)
    local wh = ugen().webhook
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

command{
  name = "webhook verify",
  summary = "verify a delivery: body on stdin, headers' values as flags; prints the event",
  usage = "ugen webhook verify --secret SECRET --timestamp T --signature HEX < body.json",
  flags = join({
    secret_flag(true),
    { name = "timestamp", key = "timestamp", type = "string", placeholder = "T", required = true,
      doc = "the X-UGen-Timestamp header value" },
    { name = "signature", key = "signature", type = "string", placeholder = "HEX", required = true,
      doc = "the X-UGen-Signature header value" },
  }, TIME_FLAGS),
  run = function(ctx)
    local v = ctx.values
    local body = read_stdin()
    local event, err = ugen().webhook.verify(v.secret,
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

command{
  name = "webhook listen",
  summary = "a local receiver on 127.0.0.1: verifies each delivery and prints the event",
  usage = "ugen webhook listen --port N --secret SECRET [--count N] [--timeout SECONDS]",
  flags = join({
    { name = "port", key = "port", type = "integer", min = 0, max = 65535, cli_default = 0,
      doc = "port on 127.0.0.1 (0: a free one; the first line says which)" },
    secret_flag(true),
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
    if v.path and v.path:sub(1, 1) ~= "/" then usage_error("--path must start with '/'") end
    local ok, socket = pcall(require, "socket")
    if not ok then
      return fail(ctx, { kind = "network", message = "webhook listen needs luasocket (apt install lua-socket)" })
    end
    local code, msg = require("ugen.cli.listen").run{
      socket = socket, verify = ugen().webhook.verify, secret = v.secret, port = v.port, path = v.path,
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

command{
  name = "webhook new-secret",
  summary = "print a new random signing secret (64 hex characters)",
  usage = "ugen webhook new-secret",
  run = function(ctx)
    local s = ugen().webhook.new_secret()
    -- the one place a secret is printed: the user asked for a new one
    if ctx.json then print_raw_json(ctx, { secret = s }) else out_line(ctx, s) end
    return EXIT.ok
  end,
}

-- models ------------------------------------------------------------------------
command{
  name = "models list", api = true,
  summary = "the available and beta video models",
  usage = "ugen models list",
  run = function(ctx)
    local list, err = client(ctx).models:list()
    if not list then return fail(ctx, err) end
    if ctx.json then print_json(ctx, require("ugen.json").array(list)); return EXIT.ok end
    out_line(ctx, output.table(list, {
      { "id", "ID" }, { "family", "FAMILY" }, { "category", "CATEGORY" }, { "status", "STATUS" },
      { "default_variant", "VARIANT" },
    }))
    return EXIT.ok
  end,
}

command{
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

-- every other documented endpoint, generated from the endpoint table ------------
-- ugen <resource> <name> [PATH_PARAMS...] [--field value ...]: one command per
-- endpoint, its query/body/form fields as flags (files as --file PATH).
local HANDWRITTEN = {}
for name in pairs(COMMANDS) do
  local g, sub = name:match("^(%S+) (%S+)$")
  HANDWRITTEN[g .. "." .. sub:gsub("%-", "_")] = true
end

local function generated_command(ep)
  local key = ep.resource .. "." .. ep.name
  local overrides = {}
  for _, p in ipairs(ep.params) do
    if p.type == "file" then
      overrides[p.name] = { type = "string", placeholder = "FILE",
                            doc = p.doc and ("a file: " .. p.doc) or "a file path" }
    end
  end
  local flags = endpoint_flags(key, overrides)
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
  command{
    name = group .. " " .. sub, api = true, positional = positional, flags = flags, usage = usage,
    summary = (ep.doc or (ep.method .. " " .. ep.path)):gsub("^%u", string.lower) .. " (" .. ep.method .. " "
      .. ep.path .. ")",
    run = function(ctx)
      local res = client(ctx)[ep.resource]
      local argv = {}
      for k = 1, #ep.path_params do argv[k] = ctx.pos[k] end
      if takes then
        local params = endpoint_params(ctx, flags)
        if ep.open_body and ctx.values.body then
          for k, v in pairs(ctx.values.body) do if params[k] == nil then params[k] = v end end
        end
        argv[#argv + 1] = params
      end
      local r, err = res[ep.name](res, unpack(argv, 1, #ep.path_params + (takes and 1 or 0)))
      if r == nil then return fail(ctx, err) end
      if ctx.json then
        if type(r) == "table" and ep.paging == "array" then r = ugen().array(r) end
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

for _, ep in ipairs(endpoints.list) do
  if not HANDWRITTEN[ep.resource .. "." .. ep.name] then generated_command(ep) end
end

GROUP_DOC.tenant = "the account's profile and avatar"
GROUP_DOC["brand-kit"] = "the brand kit (logo watermark)"
GROUP_DOC.uploads = "product image uploads (their URL goes into jobs create --image-url)"
GROUP_DOC.music = "the music catalog and the account's custom tracks"
GROUP_DOC.templates = "saved job configurations"

-- sandbox -----------------------------------------------------------------------
-- Same output as the sandbox's own `ugen sandbox` (lua/ugen/sandbox.lua main):
-- start prints the export lines; stop says "ugen sandbox: stopped" on
-- stderr; status prints "running: ..." (exit 0) or "not running: ..." (exit 1).
-- --json prints the sandbox info as is (its keys are local test credentials).
local function sandbox_mod()
  return require "ugen.sandbox"
end

local DIR_FLAG = { name = "dir", key = "dir", type = "string", placeholder = "DIR",
                   doc = "the sandbox's state directory (default $TMPDIR/ugen-sandbox-<uid>)" }

local function sandbox_error(ctx, err)
  if type(err) ~= "table" then err = { kind = "sandbox", message = tostring(err) } end
  if not err.kind then err.kind = "sandbox" end
  return fail(ctx, err)
end

command{
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
    local info, err = sandbox_mod().start{ port = v.port, dir = v.dir, speed = v.speed, seed = v.seed,
                                           tls = v.tls == true }
    if not info then return sandbox_error(ctx, err) end
    if ctx.json then
      print_raw_json(ctx, info)
    else
      out_line(ctx, (sandbox_mod().exports(info):gsub("\n$", "")))
    end
    return EXIT.ok
  end,
}

command{
  name = "sandbox stop",
  summary = "stop the local sandbox",
  usage = "ugen sandbox stop [--dir DIR]",
  flags = { DIR_FLAG },
  run = function(ctx)
    local ok, err = sandbox_mod().stop{ dir = ctx.values.dir }
    if not ok then return sandbox_error(ctx, err) end
    if ctx.json then print_json(ctx, { stopped = true }) else err_line(ctx, "ugen sandbox: stopped") end
    return EXIT.ok
  end,
}

command{
  name = "sandbox status",
  summary = "say whether the sandbox runs (exit 0) or not (exit 1)",
  usage = "ugen sandbox status [--dir DIR]",
  flags = { DIR_FLAG },
  run = function(ctx)
    local info, why = sandbox_mod().status{ dir = ctx.values.dir }
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
  lines[#lines + 1] = string_format("    %-22s %s", "version", "print the version")
  lines[#lines + 1] = ""
  global_help(lines)
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Configuration: flags, then env (UGEN_API_KEY, UGEN_JWT, UGEN_BASE_URL, UGEN_WEBHOOK_SECRET),"
  lines[#lines + 1] = "then defaults. Results go to stdout, progress to stderr (one updating line on a terminal,"
  lines[#lines + 1] = "plain lines otherwise; UGEN_TTY=1 or 0 forces either)."
  lines[#lines + 1] = "Exit status: 0 ok, 1 error (\"error: <kind>: ...\"), 2 usage, 3 job failed, 130 interrupted."
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

_M.commands = COMMANDS
_M.help_text = function(topic)
  if topic == nil then return main_help() end
  if COMMANDS[topic] then return command_help(COMMANDS[topic]) end
  if GROUPS[topic] then return group_help(topic) end
  return nil
end

---------------------------------------------------------------------------
-- main

local GLOBAL_BY = args.index(GLOBAL_FLAGS)

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
    local text = _M.help_text(topic)
    if not text then usage_error("no help for '" .. tostring(topic) .. "' (see 'ugen help')") end
    out_line(ctx, text)
    return EXIT.ok
  end
  if word == "version" then
    out_line(ctx, "ugen " .. _M._VERSION)
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
  local specs = join(def.flags, GLOBAL_FLAGS)
  local values, pos = args.parse(tokens, 1, specs, def.positional and #def.positional or 0)
  if not values then usage_error(pos) end
  ctx.json = values.json
  -- env fallbacks and required flags of the command (global env is read by client())
  local ok, msg = args.finish(values, def.flags, _M.getenv)
  if not ok then usage_error(msg) end
  for _, s in ipairs(def.flags) do
    if s.type == "secret" then add_secret(ctx, values[s.key]) end
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
    if getmetatable(e) ~= USAGE then trace = debug.traceback(tostring(e), 2) end
    return e
  end)
  if ok then return res or EXIT.ok end
  if getmetatable(res) == USAGE then
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
  if env("UGEN_DEBUG") and trace then io_.err:write(trace, "\n") end
  io_.err:flush()
  return EXIT.error
end

return _M
