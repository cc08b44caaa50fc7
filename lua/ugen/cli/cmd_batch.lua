-- ugen.cli.cmd_batch: the `ugen batch` commands: run (a catalogue, CSV or
-- JSON Lines, to one job per row, resumable), status and report (read the
-- journal). The work is ugen.batch's (docs/batch.md); this is flags and display.
-- The shape of a cmd_* module: see ugen.cli.cmd_jobs.

local context = require "ugen.cli.context"
local output = require "ugen.cli.output"
local progress = require "ugen.cli.progress"
local json = require "ugen.json"

local type, ipairs, pairs, tostring = type, ipairs, pairs, tostring
local string_format, concat = string.format, table.concat

local EXIT = context.EXIT
local fail, out_line, err_line, print_json, show, client, usage_error =
  context.fail, context.out_line, context.err_line, context.print_json, context.show, context.client,
  context.usage_error

local function batch() return require "ugen.batch" end

local JOURNAL_FLAG = { name = "journal", key = "journal", type = "string", placeholder = "FILE",
  cli_default = "INPUT.batch.sqlite", doc = "the batch's journal (SQLite)" }

local RUN_FLAGS = {
  JOURNAL_FLAG,
  { name = "format", key = "format", type = "string", enum = { "csv", "jsonl" },
    doc = "input format (default: by extension, .jsonl/.ndjson = JSON Lines, else CSV)" },
  { name = "config", key = "config", type = "string", placeholder = "FILE",
    doc = "JSON file {\"columns\": {COL: FIELD}, \"defaults\": {FIELD: VALUE}, \"ignore\": [COL]}" },
  { name = "map", key = "map", type = "array", placeholder = "COL=FIELD",
    doc = "input column COL fills jobs:create field FIELD" },
  { name = "set", key = "set", type = "array", placeholder = "FIELD=VALUE",
    doc = "default for a field a row leaves empty, e.g. --set segment_count=2" },
  { name = "ignore", key = "ignore", type = "array", placeholder = "COL",
    doc = "an input column not sent" },
  { name = "max-credits", key = "max_credits", type = "integer", min = 1, placeholder = "N",
    doc = "budget: refuse a batch estimated above N credits, stop creating before N would be passed" },
  { name = "concurrency", key = "concurrency", type = "integer", min = 1, max = 64, placeholder = "N",
    cli_default = 10, doc = "rows in flight at once (each a job running on the account)" },
  { name = "poll-interval", key = "poll_interval", type = "number", min = 0.05, placeholder = "SECONDS",
    cli_default = 10, doc = "seconds between status polls of a job" },
  { name = "job-timeout", key = "job_timeout", type = "number", min = 1, placeholder = "SECONDS",
    cli_default = 3600, doc = "stop waiting for one job after this long (a re-run waits again)" },
  { name = "download", key = "download", type = "string", placeholder = "DIR",
    doc = "download each final video to DIR/row-N-JOB_ID.mp4" },
  { name = "quiet", key = "quiet", type = "boolean", short = "q", doc = "no progress display" },
}

---------------------------------------------------------------------------
-- the progress display: one updating line on a terminal, plain lines otherwise

local function counts_text(s)
  local parts = { string_format("%d/%d done", s.completed + s.failed + s.invalid, s.total) }
  for _, k in ipairs({ "completed", "failed", "invalid", "created", "pending" }) do
    if s[k] > 0 then parts[#parts + 1] = string_format("%d %s", s[k], k == "created" and "running" or k) end
  end
  parts[#parts + 1] = string_format("%d credits", s.credits_spent)
  if s.eta and s.eta > 0 then parts[#parts + 1] = "ETA " .. progress.elapsed_text(s.eta) end
  if s.stopped then parts[#parts + 1] = "stopped: " .. s.stopped end
  return concat(parts, ", ")
end

local function display(ctx, tty)
  local cols = tty and progress.columns()
  local last_plain, done_shown = -1, false
  local open = false
  local d = {}
  function d.progress(s)
    if tty then
      local line = string_format("[%s] %s", progress.elapsed_text(s.elapsed), counts_text(s))
      ctx.err:write("\r\27[K", progress.fit(line, cols - 1))
      ctx.err:flush()
      open = true
    elseif last_plain < 0 or s.elapsed - last_plain >= 10 or (s.done and not done_shown) then
      done_shown = s.done
      -- a summary line now and then (the rows' own lines come from d.row)
      last_plain = s.elapsed
      err_line(ctx, string_format("[%s] %s", progress.elapsed_text(s.elapsed), counts_text(s)))
    end
  end
  function d.row(e)
    if tty then return end
    local what
    if e.state == "created" then what = "created job " .. show(e.job_id)
    elseif e.state == "completed" then
      what = e.file and ("downloaded " .. show(e.file))
        or string_format("completed %s (%s credits)", show(e.video_url), show(e.credits))
    elseif e.state == "failed" then what = "failed: " .. show(e.reason)
    elseif e.state == "invalid" then what = string_format("invalid %s: %s", show(e.field), show(e.reason))
    else what = e.state .. (e.reason and (": " .. show(e.reason)) or "") end
    err_line(ctx, string_format("row %d (line %d): %s", e.row, e.line or e.row, what))
  end
  function d.finish()
    if open then ctx.err:write("\n"); ctx.err:flush(); open = false end
  end
  return d
end

---------------------------------------------------------------------------
-- flags to ugen.batch options

local function pairs_of(list, what)
  local out = {}
  for _, item in ipairs(list or {}) do
    local k, v = item:match("^%s*([^=]-)%s*=(.*)$")
    if not k or k == "" then usage_error(what .. " expects NAME=VALUE (got '" .. output.scalar(item) .. "')") end
    out[#out + 1] = { k, v }
  end
  return out
end

local function options(ctx)
  local v = ctx.values
  local columns, defaults, ignore = {}, {}, {}
  if v.config then
    local f, ferr = io.open(v.config, "rb")
    if not f then usage_error("--config: cannot read " .. tostring(ferr)) end
    local cfg = json.decode(f:read("*a") or "")
    f:close()
    if type(cfg) ~= "table" then usage_error("--config: " .. v.config .. " is not a JSON object") end
    for k in pairs(cfg) do
      if k ~= "columns" and k ~= "defaults" and k ~= "ignore" then
        usage_error("--config: unknown key '" .. output.scalar(tostring(k)) .. "' (columns, defaults, ignore)")
      end
    end
    for col, field in pairs(cfg.columns or {}) do columns[col] = field end
    for field, val in pairs(cfg.defaults or {}) do defaults[field] = val end
    for _, col in ipairs(cfg.ignore or {}) do ignore[#ignore + 1] = col end
  end
  for _, kv in ipairs(pairs_of(v.map, "--map")) do columns[kv[1]] = kv[2] end
  local input = require "ugen.batch.input"
  for _, kv in ipairs(pairs_of(v.set, "--set")) do
    if not input.FIELDS[kv[1]] then
      usage_error("--set: '" .. output.scalar(kv[1]) .. "' is not a jobs:create field")
    end
    local val, msg = input.cell(kv[1], kv[2])
    if val == nil then usage_error("--set " .. kv[1] .. ": " .. msg) end
    defaults[kv[1]] = val
  end
  for _, col in ipairs(v.ignore or {}) do ignore[#ignore + 1] = col end
  return {
    input = ctx.pos[1], journal = v.journal, format = v.format, columns = columns, defaults = defaults,
    ignore = ignore, max_credits = v.max_credits, concurrency = v.concurrency or 10,
    poll_interval = v.poll_interval or 10, job_timeout = v.job_timeout or 3600, download = v.download,
  }
end

local function summary_lines(ctx, s)
  out_line(ctx, string_format("batch %s: %d rows: %d completed, %d failed, %d invalid, %d running, %d pending",
    show(s.batch_id), s.total, s.completed, s.failed, s.invalid, s.created, s.pending))
  out_line(ctx, string_format("credits spent: %d", s.credits_spent))
  out_line(ctx, "journal: " .. show(s.journal))
end

-- the rows that need the user's attention (invalid, failed, still pending with a reason)
local PROBLEM_LINES = 20
local function problem_lines(ctx, s)
  local rows = batch().report{ journal = s.journal }
  if not rows then return end
  local shown, more = 0, 0
  for _, r in ipairs(rows) do
    local text
    if r.state == "invalid" then
      text = string_format("row %d (line %d): invalid %s: %s", r.row, r.line or r.row, show(r.field), show(r.reason))
    elseif r.state == "failed" then
      text = string_format("row %d (line %d): failed (job %s): %s", r.row, r.line or r.row, show(r.job_id),
        show(r.reason))
    elseif r.reason then
      text = string_format("row %d (line %d): %s: %s", r.row, r.line or r.row, r.state, show(r.reason))
    end
    if text then
      if shown < PROBLEM_LINES then out_line(ctx, text); shown = shown + 1 else more = more + 1 end
    end
  end
  if more > 0 then out_line(ctx, string_format("... and %d more: ugen batch report", more)) end
end

local function exit_of(s)
  if not s.done then return EXIT.error end
  if s.failed > 0 or s.invalid > 0 then return EXIT.job_failed end
  return EXIT.ok
end

---------------------------------------------------------------------------
-- the commands

local commands = {}

commands[#commands + 1] = {
  name = "batch run", api = true, positional = { "INPUT" },
  summary = "one video job per row of a CSV or JSON Lines catalogue; resumable, exactly once",
  usage = "ugen batch run INPUT [--journal FILE] [--max-credits N] [--concurrency N] [--download DIR]"
    .. " [--map COL=FIELD] [--set FIELD=VALUE] [--ignore COL] [--config FILE]",
  flags = RUN_FLAGS,
  run = function(ctx)
    local o = options(ctx)
    local c = client(ctx)
    local quiet = ctx.values.quiet
    local d = (not quiet) and display(ctx, progress.isatty(2))
    if d then
      o.on_progress = d.progress
      o.on_row = d.row
    end
    o.client = c
    local s, err = batch().run(o)
    if d then d.finish() end
    if not s then return fail(ctx, err) end
    if ctx.json then
      s.last_error = s.last_error and output.error_table(s.last_error)
      print_json(ctx, s)
    else
      summary_lines(ctx, s)
      problem_lines(ctx, s)
      if s.stopped == "budget" then
        out_line(ctx, "stopped: the next job would pass --max-credits; rows left pending (re-run to resume)")
      elseif s.stopped == "credits" then
        out_line(ctx, "stopped: not enough available credits; rows left pending (re-run to resume)")
      elseif not s.done then
        out_line(ctx, "not finished: re-run the same command to resume"
          .. (s.last_error and (" (last error: " .. output.error_text(s.last_error) .. ")") or ""))
      end
    end
    return exit_of(s)
  end,
}

local function journal_opts(ctx, fname)
  if #ctx.pos > 1 then usage_error("'ugen batch " .. fname .. "' takes one INPUT (or --journal FILE)") end
  local input, journal = ctx.pos[1], ctx.values.journal
  if not input and not journal then usage_error("give INPUT or --journal FILE") end
  return { input = input, journal = journal, csv = ctx.values.csv }
end

commands[#commands + 1] = {
  name = "batch status", api = false, variadic = true,
  summary = "rows by state and credits spent, from the journal",
  usage = "ugen batch status [INPUT | --journal FILE]",
  flags = { JOURNAL_FLAG },
  run = function(ctx)
    local s, err = batch().status(journal_opts(ctx, "status"))
    if not s then return fail(ctx, err) end
    if ctx.json then print_json(ctx, s) else summary_lines(ctx, s) end
    return EXIT.ok
  end,
}

local REPORT_COLS = {
  { "row", "ROW" }, { "state", "STATE" }, { "job_id", "JOB_ID" }, { "credits", "CREDITS" },
  { "video_url", "VIDEO_URL" }, { "reason", "REASON" },
}

commands[#commands + 1] = {
  name = "batch report", api = false, variadic = true,
  summary = "every row once: row, job id, state, video URL, credits (--csv FILE to save it)",
  usage = "ugen batch report [INPUT | --journal FILE] [--csv FILE]",
  flags = {
    JOURNAL_FLAG,
    { name = "csv", key = "csv", type = "string", placeholder = "FILE",
      doc = "write the report as CSV (row, line, state, job_id, video_url, credits, field, reason, file)" },
  },
  run = function(ctx)
    local o = journal_opts(ctx, "report")
    local rows, err = batch().report(o)
    if not rows then return fail(ctx, err) end
    if ctx.json then
      print_json(ctx, json.array(rows))
    elseif o.csv then
      out_line(ctx, string_format("%d rows written to %s", #rows, show(o.csv)))
    else
      for _, r in ipairs(rows) do
        if r.state == "invalid" then r.reason = tostring(r.field) .. ": " .. tostring(r.reason) end
      end
      out_line(ctx, output.table(rows, REPORT_COLS))
    end
    return EXIT.ok
  end,
}

return {
  groups = { batch = "a catalogue to videos: one job per row, crash-safe, exactly once, within a budget" },
  commands = commands,
}
