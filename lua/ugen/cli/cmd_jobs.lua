-- ugen.cli.cmd_jobs: the `ugen jobs` commands: create (and --wait), get,
-- list, wait (a progress display on stderr), download (resumable, to a file).
--
-- Like every ugen.cli.cmd_* module: { groups = { name = one-line doc },
-- commands = { def, ... } } in help order; a def is { name = "jobs get",
-- summary =, usage =, flags = (ugen.cli.args specs), positional = { "JOB_ID" },
-- api = true when it talks to the API, run = function(ctx) -> exit status }.

local args = require "ugen.cli.args"
local context = require "ugen.cli.context"
local output = require "ugen.cli.output"
local pages = require "ugen.cli.pages"
local params = require "ugen.cli.params"
local progress = require "ugen.cli.progress"

local type, pairs, tonumber, tostring = type, pairs, tonumber, tostring
local string_format = string.format
local floor = math.floor

local EXIT = context.EXIT
local fail, out_line, err_line, print_json, show, client =
  context.fail, context.out_line, context.err_line, context.print_json, context.show, context.client

local DEFAULT_INTERVAL = 2
local DEFAULT_WAIT_TIMEOUT = 1800

local WAIT_FLAGS = {
  { name = "interval", key = "interval", type = "number", placeholder = "SECONDS", min = 0.05,
    cli_default = DEFAULT_INTERVAL, doc = "seconds between status polls" },
  { name = "timeout", key = "timeout", type = "number", placeholder = "SECONDS", min = 0.001,
    cli_default = DEFAULT_WAIT_TIMEOUT, doc = "give up waiting after this long (the job keeps running)" },
  { name = "quiet", key = "quiet", type = "boolean", short = "q", doc = "no progress display" },
}

local function stderr_is_tty()
  return progress.isatty(2)
end

---------------------------------------------------------------------------
-- Waiting for a job, with progress

-- The job as the progress display may show it: string fields with control
-- characters escaped and secrets scrubbed (the display writes to stderr itself).
local function display_job(ctx, job)
  if type(job) ~= "table" then return job end
  local out = {}
  for k, x in pairs(job) do
    out[k] = type(x) == "string" and context.scrub(ctx, show(x)) or x
  end
  return out
end

-- The failure line of a job that failed or was cancelled (err.kind job_failed).
local function job_failed_text(err, job_id)
  local job = type(err.job) == "table" and err.job or {}
  return string_format("job %s %s%s: %s", show(job.job_id or job_id), show(job.status or "failed"),
    job.current_stage and (" at stage " .. show(job.current_stage)) or "",
    show(job.error_message or err.message or "no error message"))
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
      err_line(ctx, "error: job_failed: " .. job_failed_text(err, job_id))
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
-- The commands

local commands = {}

-- jobs create ---------------------------------------------------------------
local CREATE_FLAGS = params.flags("jobs.create", {
  product_image_url = { aliases = { "image-url" }, placeholder = "URL" },
  segment_count = { aliases = { "segments" } },
  video_model = { aliases = { "model" }, placeholder = "MODEL" },
  persona_id = { placeholder = "ID" },
  custom_music_id = { placeholder = "ID" },
  webhook_url = { placeholder = "URL" },
  idempotency_key = { placeholder = "KEY" },
  stop_at_stage = { placeholder = "STAGE" },
})

-- Seconds as the retry message shows them: "20", "1.5".
local function seconds_text(w)
  if w >= 10 then return string_format("%d", floor(w + 0.5)) end
  return (string_format("%.1f", w):gsub("%.0$", ""))
end

-- jobs:create with the SDK's own retries (the client's max_retries: --max-retries), each
-- said on stderr by the call's on_retry hook ("rate limited, retrying in 20 s (retry 1 of
-- 2)") instead of a silent wait. The pipeline sends the same body, so the same idempotency
-- key, on every attempt: a retry of a create that did reach the API returns that job.
local function create(ctx, c, fields)
  local function on_retry(info)
    local err = info.error
    local what = err.status == 429 and "rate limited" or output.error_text(err)
    err_line(ctx, string_format("%s, retrying in %s s (retry %d of %d)", what, seconds_text(info.wait), info.retry,
      info.max_retries))
  end
  local job, err = c.jobs:create(fields, { on_retry = on_retry })
  return job, err
end

commands[#commands + 1] = {
  name = "jobs create", api = true,
  summary = "create a video job; prints its id (with --wait: progress, then the final video URL)",
  usage = "ugen jobs create --product-name TEXT --image-url URL --segments N [flags] [--wait]",
  flags = args.join(CREATE_FLAGS, {
    { name = "wait", key = "wait", type = "boolean", doc = "follow the job to the end, showing progress" },
    { name = "max-credits", key = "max_credits", type = "number", placeholder = "N", min = 0,
      doc = "estimate first; over N credits: no job is created, exit 4" },
  }, WAIT_FLAGS),
  run = function(ctx)
    local c = client(ctx)
    local p = params.values(ctx, CREATE_FLAGS)
    -- the credit guard (the SDK's jobs:create max_credits), once, before any create
    if ctx.values.max_credits then
      local est, berr = require("ugen.resources.jobs").check_budget(c, p, ctx.values.max_credits)
      if not est then
        return fail(ctx, berr, type(berr) == "table" and berr.kind == "budget" and EXIT.over_budget or nil)
      end
    end
    local job, err = create(ctx, c, p)
    if not job then
      local code = fail(ctx, err)
      -- the request may have reached the API: the same key makes a retry safe
      if type(err) == "table" and err.idempotency_key and not p.idempotency_key
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

-- jobs get / list / wait ----------------------------------------------------
commands[#commands + 1] = {
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

local LIST_FLAGS = params.flags("jobs.list")
commands[#commands + 1] = {
  name = "jobs list", api = true,
  summary = "list jobs, newest first (one page, or --all)",
  usage = "ugen jobs list [--page N] [--page-size N] [--all]",
  flags = args.join(LIST_FLAGS, pages.FLAGS),
  run = function(ctx)
    return pages.run(ctx, "jobs", "list", "each", LIST_FLAGS, JOB_COLS, "jobs")
  end,
}

-- Several jobs at once (client.jobs:as_finished): each is printed as it
-- finishes: "JOB_ID completed URL" on stdout, or its error on stderr; with
-- --json, one array in the order of the ids (the job, or {job_id =, error =}).
-- Exit: 0 all completed, 3 when a job failed or was cancelled, else 1 when
-- waiting for one ended in another error (timeout, not found, ...).
local function wait_jobs(ctx, c, ids)
  local v = ctx.values
  local started = progress.new{ out = ctx.err, tty = false }
  if not v.quiet then err_line(ctx, string_format("waiting for %d jobs", #ids)) end
  local results, failed, other = {}, false, false
  for i, job, err in c.jobs:as_finished(ids, {
    interval = v.interval or DEFAULT_INTERVAL,
    timeout = v.timeout or DEFAULT_WAIT_TIMEOUT,
    on_progress = not v.quiet and function(j, id)
      err_line(ctx, string_format("[%s] %s %s", progress.elapsed_text(started:elapsed()), show(id),
        context.scrub(ctx, progress.summary(display_job(ctx, j)))))
    end or nil,
  }) do
    local id = ids[i]
    if job then
      results[i] = job
      if not ctx.json then
        out_line(ctx, string_format("%s %s %s", show(job.job_id or id), show(job.status),
          show(job.final_video_url or "-")))
      end
    else
      local kind = type(err) == "table" and err.kind
      if kind == "job_failed" then
        failed = true
        err_line(ctx, "error: job_failed: " .. job_failed_text(err, id))
      else
        other = true
        err_line(ctx, "error: job " .. show(id) .. ": " .. output.error_text(err))
      end
      results[i] = { job_id = id, error = output.error_table(err).error }
    end
  end
  if ctx.json then print_json(ctx, results) end
  if failed then return EXIT.job_failed end
  if other then return EXIT.error end
  return EXIT.ok
end

commands[#commands + 1] = {
  name = "jobs wait", api = true, positional = { "JOB_ID..." }, variadic = true,
  summary = "follow jobs to the end (one: a progress bar, then the final video URL; several: each as it ends)",
  usage = "ugen jobs wait JOB_ID [JOB_ID...] [--interval SECONDS] [--timeout SECONDS]",
  flags = WAIT_FLAGS,
  run = function(ctx)
    if #ctx.pos == 1 then return wait_job(ctx, client(ctx), ctx.pos[1]) end
    return wait_jobs(ctx, client(ctx), ctx.pos)
  end,
}

-- jobs download ---------------------------------------------------------------
local function human_bytes(n)
  n = tonumber(n) or 0
  if n >= 1024 * 1024 then return string_format("%.1f MB", n / (1024 * 1024)) end
  if n >= 1024 then return string_format("%.1f kB", n / 1024) end
  return string_format("%d B", n)
end

commands[#commands + 1] = {
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
        return fail(ctx, { kind = "io", code = "FILE_EXISTS", message = path .. " exists (pass --force to overwrite)" })
      end
    end
    local quiet = ctx.values.quiet
    local tty = not quiet and stderr_is_tty()
    if not quiet then err_line(ctx, "downloading the final video of job " .. id .. " to " .. path) end
    local shown = false
    local cols = tty and progress.columns()
    local res, err = c.jobs:download(id, path, {
      -- on a terminal: one updating line; otherwise only the summary at the end
      on_progress = tty and function(done, total)
        done = tonumber(done) or 0
        total = tonumber(total)
        local text
        if total and total > 0 then
          -- the bar shrinks (then goes) so the line stays under the terminal's width
          local rest = string_format(" %3d%%  %s / %s", floor(done * 100 / total), human_bytes(done),
            human_bytes(total))
          local bw = cols - 1 - #rest - 2
          if bw > 24 then bw = 24 end
          text = (bw >= 5 and progress.bar(done * 100 / total, bw) or "") .. rest
        else
          text = human_bytes(done)
        end
        ctx.err:write("\r\27[K", progress.fit(text, cols - 1))
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

return {
  groups = { jobs = "video jobs: create one, follow it, list, download the result" },
  commands = commands,
}
