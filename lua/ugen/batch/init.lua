-- ugen.batch: a product catalogue to videos, one job per row, crash-safe,
-- exactly once, within a budget (docs/batch.md).
--
--   ugen.batch.run{ client =, input = "products.csv" | rows = { {...}, ... },
--                   journal =, format =, columns =, defaults =, ignore =,
--                   max_credits =, concurrency = 10, poll_interval = 10,
--                   job_timeout = 3600, download = DIR, on_progress = fn(stats),
--                   on_row = fn(entry) } -> summary | nil, err
--   ugen.batch.status{ journal = } -> summary | nil, err
--   ugen.batch.report{ journal = [, csv = "out.csv"] } -> entries | nil, err
--   ugen.batch.journal_path(input) -> the default journal next to the input
--
-- Exactly once: each row's idempotency key is an HMAC of the row (its
-- number and canonical content) under the batch id, which is made once and
-- kept in the journal; the body sent is fixed in the journal before it is
-- first sent. A row is "created" in the journal only after the API answered
-- with its job; a row still "pending" after a crash is sent again with the
-- same key and body, and the API answers with the job the first attempt made.
--
-- One scheduler: `concurrency` tasks on the client's runtime (client:spawn)
-- take rows from one queue; each row goes upload -> create -> wait ->
-- download within its task, so at most `concurrency` rows are in flight.

local args = require "ugen.args"
local errors = require "ugen.errors"
local crypto = require "ugen.crypto"
local json = require "ugen.json"
local retry = require "ugen.retry"
local input = require "ugen.batch.input"
local journal_mod = require "ugen.batch.journal"

local type, pairs, ipairs, tostring, tonumber, error = type, pairs, ipairs, tostring, tonumber, error
local string_format, concat = string.format, table.concat
local math_min, math_max, math_huge = math.min, math.max, math.huge

local argerror = args.argerror

local _M = { _VERSION = "0.1.0", input = input, journal = journal_mod }

_M.DEFAULT_CONCURRENCY = 10
_M.DEFAULT_POLL_INTERVAL = 10
_M.DEFAULT_JOB_TIMEOUT = 3600

-- give up on a row's create after this many retryable failures in a row
-- (network, 5xx: the row stays pending, a re-run resends it with its key)
local MAX_CREATE_FAILURES = 8
local MAX_WAIT = 60 -- longest single wait on a 402/429 without Retry-After

-- The fields of jobs:create that change a job's price (sent to credits:estimate)
local PRICE_FIELDS = { "segment_count", "segment_duration", "video_resolution", "music_enabled",
                       "voice_settings", "custom_caption_options", "qai_enabled" }

function _M.journal_path(path)
  return path .. ".batch.sqlite"
end

---------------------------------------------------------------------------
-- arguments

local RUN_OPTS = {
  client = true, input = true, rows = true, journal = true, format = true, columns = true, defaults = true,
  ignore = true, max_credits = true, concurrency = true, poll_interval = true, job_timeout = true,
  download = true, on_progress = true, on_row = true,
}

local function check_run(o)
  if type(o) ~= "table" then argerror(1, "run", "table expected, got " .. type(o), 3) end
  for k in pairs(o) do
    if not RUN_OPTS[k] then argerror(1, "run", "unknown option '" .. tostring(k) .. "'", 3) end
  end
  local c = o.client
  if type(c) ~= "table" or type(c.jobs) ~= "table" or type(c.spawn) ~= "function" then
    argerror(1, "run", "opts.client must be a ugen client (ugen.new{...})", 3)
  end
  if (o.input == nil) == (o.rows == nil) then argerror(1, "run", "give opts.input (a file) or opts.rows", 3) end
  if o.input ~= nil and (type(o.input) ~= "string" or o.input == "") then
    argerror(1, "run", "opts.input must be a file path", 3)
  end
  if o.rows ~= nil and type(o.rows) ~= "table" then argerror(1, "run", "opts.rows must be a table", 3) end
  if o.rows ~= nil and o.journal == nil then argerror(1, "run", "opts.journal is required with opts.rows", 3) end
  for _, k in ipairs({ "journal", "download" }) do
    if o[k] ~= nil and (type(o[k]) ~= "string" or o[k] == "") then
      argerror(1, "run", "opts." .. k .. " must be a path", 3)
    end
  end
  if o.format ~= nil and o.format ~= "csv" and o.format ~= "jsonl" then
    argerror(1, "run", "opts.format must be \"csv\" or \"jsonl\"", 3)
  end
  for _, k in ipairs({ "columns", "defaults", "ignore" }) do
    if o[k] ~= nil and type(o[k]) ~= "table" then argerror(1, "run", "opts." .. k .. " must be a table", 3) end
  end
  for _, k in ipairs({ "max_credits", "poll_interval", "job_timeout" }) do
    local v = o[k]
    if v ~= nil and (type(v) ~= "number" or v ~= v or v <= 0) then
      argerror(1, "run", "opts." .. k .. " must be a positive number", 3)
    end
  end
  local cc = o.concurrency
  if cc ~= nil and (type(cc) ~= "number" or cc < 1 or cc ~= math.floor(cc)) then
    argerror(1, "run", "opts.concurrency must be a positive integer", 3)
  end
  for _, k in ipairs({ "on_progress", "on_row" }) do
    if o[k] ~= nil and type(o[k]) ~= "function" then argerror(1, "run", "opts." .. k .. " must be a function", 3) end
  end
end

local function journal_of(fname, o)
  if type(o) ~= "table" then argerror(1, fname, "table expected, got " .. type(o), 3) end
  local path = o.journal or (type(o.input) == "string" and _M.journal_path(o.input))
  if type(path) ~= "string" then argerror(1, fname, "opts.journal (or opts.input) expected", 3) end
  local f = io.open(path, "rb")
  if not f then
    return nil, errors.new{ kind = "io", message = "no journal at " .. path .. " (run the batch first)", path = path }
  end
  f:close()
  return journal_mod.open(path)
end

---------------------------------------------------------------------------
-- status and report (read the journal only)

local function summarize(j)
  local counts = j:counts()
  local total = 0
  for _, n in pairs(counts) do total = total + n end
  return {
    batch_id = j:meta("batch_id"), journal = j.path, input = j:meta("input"), total = total,
    pending = counts.pending, created = counts.created, completed = counts.completed,
    failed = counts.failed, invalid = counts.invalid, credits_spent = j:credits(),
    done = counts.pending == 0 and counts.created == 0,
  }
end

function _M.status(o)
  local j, err = journal_of("status", o)
  if not j then return nil, err end
  local s = summarize(j)
  j:close()
  return s
end

_M.REPORT_COLUMNS = { "row", "line", "state", "job_id", "video_url", "credits", "field", "reason", "file" }

function _M.report(o)
  local j, err = journal_of("report", o)
  if not j then return nil, err end
  local rows, rerr = j:rows()
  j:close()
  if not rows then return nil, rerr end
  local out = {}
  for i, r in ipairs(rows) do
    local e = {}
    for _, k in ipairs(_M.REPORT_COLUMNS) do e[k] = r[k] end
    out[i] = e
  end
  if o.csv ~= nil then
    local ok, werr = input.write_csv(o.csv, _M.REPORT_COLUMNS, out)
    if not ok then return nil, werr end
  end
  return out
end

---------------------------------------------------------------------------
-- run

local function key_of(batch_id, row)
  return "batch-" .. crypto.hmac_hex(batch_id, tostring(row.row), "\n", row.source)
end

local function shape_of(params)
  local s = { model_id = params.video_model }
  for _, k in ipairs(PRICE_FIELDS) do s[k] = params[k] end
  return s, input.canonical(s)
end

-- a call that is safe to repeat (estimate, balance, upload), retried on
-- retryable failures, 429 and 402 waits included
local function waitable(err)
  return err.retryable or err.kind == "rate_limit" or (err.kind == "insufficient_credits" and err.retry_after ~= nil)
end

-- (network and 5xx: 6 attempts; 429 and 402 with Retry-After: waited up to 30 times)
local function patient(rt, fn)
  local fails, waits = 0, 0
  while true do
    local res, err = fn()
    if res then return res end
    if not waitable(err) then return nil, err end
    if err.kind == "rate_limit" or err.kind == "insufficient_credits" then
      waits = waits + 1
      if waits > 30 then return nil, err end
      rt.sleep(math_min(MAX_WAIT, err.retry_after or retry.delay(math_min(waits, 8))))
    else
      fails = fails + 1
      if fails >= 6 then return nil, err end
      rt.sleep(retry.delay(fails, err.retry_after))
    end
  end
end

local function decode_body(s)
  local v = json.decode(s)
  if type(v) ~= "table" then return nil end
  local ksp = v.key_selling_points
  if type(ksp) == "table" then json.array(ksp) end
  return v
end

-- Read the input, open the journal, reconcile -> j, entries (journal rows), batch_id | nil, err
local function prepare(o)
  local rows, err
  if o.rows then
    rows = input.rows(o)
  else
    local base = o.input:match("^(.*)/[^/]*$") or "."
    rows, err = input.read{ path = o.input, format = o.format, columns = o.columns, defaults = o.defaults,
                            ignore = o.ignore, base_dir = base }
    if not rows then return nil, err end
  end
  local path = o.journal or _M.journal_path(o.input)
  local lock
  lock, err = journal_mod.lock(path)
  if not lock then return nil, err end
  local j
  j, err = journal_mod.open(path)
  if not j then lock:release(); return nil, err end
  j.lock = lock
  local batch_id = j:meta("batch_id")
  if not batch_id then
    batch_id = crypto.uuid4()
    local ok, merr = j:set_meta("batch_id", batch_id)
    if not ok then j:close(); return nil, merr end
    j:set_meta("input", o.input or "(rows)")
    j:set_meta("created_at", os.date("!%Y-%m-%dT%H:%M:%SZ"))
  end
  local existing = j:rows() or {}
  if #existing > 0 then
    -- the same batch again: the input must be the one journaled
    local changed = {}
    if #existing ~= #rows then
      changed[1] = string_format("%d rows now, %d in the journal", #rows, #existing)
    end
    for i, r in ipairs(rows) do
      local e = existing[i]
      if e and e.source ~= r.source and #changed < 5 then changed[#changed + 1] = "row " .. r.row end
    end
    if #changed > 0 then
      j:close()
      return nil, errors.new{ kind = "validation", code = "INPUT_CHANGED", retryable = false,
        message = "the input differs from the batch in " .. path .. " (" .. concat(changed, ", ")
          .. "): resume with the same input, or start a new batch with another --journal" }
    end
  end
  -- each valid row's key, and its body unless an image is still to be uploaded, are
  -- journaled with the row (rows already journaled keep theirs)
  for _, r in ipairs(rows) do
    if not r.invalid then
      r.key = key_of(batch_id, r)
      if not r.image_path then
        local b = {}
        for k, v in pairs(r.params) do b[k] = v end
        b.idempotency_key = r.key
        r.body = json.encode(b)
      end
    end
  end
  local ok, aerr = j:add_rows(rows)
  if not ok then j:close(); return nil, aerr end
  local entries = j:rows()
  for i, e in ipairs(entries) do
    local r = rows[i]
    e.params, e.image_path = r.params, r.image_path
    if e.state == "pending" and r.invalid then
      -- valid when journaled, not any more (a newer SDK's rules): never sent now
      local sok, serr = j:set(e.row, { state = "invalid", field = r.invalid.field, reason = r.invalid.message })
      if not sok then j:close(); return nil, serr end
      e.state, e.field, e.reason = "invalid", r.invalid.field, r.invalid.message
    end
  end
  return j, entries, batch_id
end

function _M.run(o)
  check_run(o)
  local client = o.client
  local rt = client.runtime
  local concurrency = o.concurrency or _M.DEFAULT_CONCURRENCY
  local poll = o.poll_interval or _M.DEFAULT_POLL_INTERVAL
  local job_timeout = o.job_timeout or _M.DEFAULT_JOB_TIMEOUT
  local started = rt.now()

  local j, entries, batch_id = prepare(o)
  if not j then return nil, entries end

  local st = { pending = 0, created = 0, completed = 0, failed = 0, invalid = 0 }
  for _, e in ipairs(entries) do st[e.state] = st[e.state] + 1 end
  local S = {
    batch_id = batch_id, journal = j.path, total = #entries, spent = j:credits(), held = 0,
    finished_now = 0, stopped = nil, last_error = nil, to_download = 0,
  }

  local function stats()
    local el = rt.now() - started
    local remaining = st.pending + st.created
    local eta
    if S.finished_now > 0 and remaining > 0 then eta = el / S.finished_now * remaining end
    if remaining == 0 then eta = 0 end
    -- with opts.download, a completed row without its file is not done yet
    return { batch_id = batch_id, journal = j.path, total = S.total, pending = st.pending, created = st.created,
             completed = st.completed, failed = st.failed, invalid = st.invalid, credits_spent = S.spent,
             credits_held = S.held, elapsed = el, eta = eta, stopped = S.stopped,
             downloads_missing = o.download and S.to_download or nil,
             done = remaining == 0 and S.to_download == 0 }
  end
  local function progress()
    if o.on_progress then o.on_progress(stats()) end
  end

  -- journal a row's change; the in-memory entry follows only once it is on disk
  local function set(e, changes)
    local ok, err = j:set(e.row, changes)
    if not ok then error(err, 0) end -- the journal is gone: nothing more can be done safely
    if changes.state and changes.state ~= e.state then
      st[e.state] = st[e.state] - 1
      st[changes.state] = st[changes.state] + 1
    end
    for k, v in pairs(changes) do
      if v == false then e[k] = nil else e[k] = v end
    end
    if o.on_row then o.on_row(e) end
    progress()
  end

  -- Budget: the whole batch first
  local estimates = {}
  local function estimate(params)
    local shape, key = shape_of(params)
    if estimates[key] then return estimates[key] end
    local est, err = patient(rt, function() return client.credits:estimate(shape) end)
    if not est then return nil, err end
    local total = tonumber(est.total_credits)
    if not total then return nil, errors.new{ kind = "decode", message = "credits:estimate gave no total_credits" } end
    estimates[key] = total
    return total
  end
  local need = S.spent
  for _, e in ipairs(entries) do
    if (e.state == "pending" or e.state == "created") and e.params then
      local est, err = estimate(e.params)
      if not est then j:close(); return nil, err end
      e.estimate = est
      need = need + est
    end
  end
  S.needed = need
  if o.max_credits and need > o.max_credits then
    j:close()
    return nil, errors.new{ kind = "insufficient_credits", code = "BUDGET_EXCEEDED", retryable = false,
      details = { required = need, budget = o.max_credits },
      message = string_format("the batch needs about %d credits (%d spent, the rest estimated), over the"
        .. " budget of %d: nothing was sent", need, S.spent, o.max_credits) }
  end
  local bal, berr = patient(rt, function() return client.credits:balance() end)
  if not bal then j:close(); return nil, berr end
  S.available = tonumber(bal.available_credits) or math_huge

  -- the rows to work on, in order; rows created by an earlier run hold their estimate
  local queue, qh = {}, 1
  for _, e in ipairs(entries) do
    if e.state == "created" then
      e.hold = e.estimate or 0
      S.held = S.held + e.hold
      queue[#queue + 1] = e
    elseif e.state == "pending" or (e.state == "completed" and o.download and not e.file) then
      if e.state == "completed" then S.to_download = S.to_download + 1 end
      queue[#queue + 1] = e
    end
  end

  local function release(e, consumed, reserved)
    local hold = e.hold or 0
    S.held = S.held - hold
    e.hold = nil
    if reserved then S.available = S.available + reserved - (consumed or 0) end
  end

  local function wait_turn(e)
    -- budget and available credits, before anything is sent for this row
    local est = e.estimate or 0
    local refreshed = false
    while true do
      if S.stopped then return false end
      local over_budget = o.max_credits and (S.spent + S.held + est > o.max_credits)
      local over_avail = est > S.available
      if not over_budget and not over_avail then break end
      if S.held <= 0 then
        -- nothing else in flight that could free credits: look once more, then stop
        if over_avail and not over_budget and not refreshed then
          refreshed = true
          local b = patient(rt, function() return client.credits:balance() end)
          if b then S.available = tonumber(b.available_credits) or S.available end
        else
          S.stopped = over_budget and "budget" or "credits"
          progress()
          return false
        end
      else
        rt.sleep(math_min(poll, 0.5)) -- jobs in flight will change the numbers
      end
    end
    e.hold = est
    S.held = S.held + est
    S.available = S.available - est
    return true
  end

  local function unhold(e)
    S.available = S.available + (e.hold or 0)
    release(e)
  end

  local function upload(e)
    local res, err = patient(rt, function()
      return client.uploads:product_image({ file = e.image_path })
    end)
    if not res then return nil, err end
    local b = {}
    for k, v in pairs(e.params) do b[k] = v end
    b.product_image_url = res.url
    b.idempotency_key = e.key
    local body = json.encode(b)
    set(e, { body = body })
    return true
  end

  local function create(e)
    local fails, waits = 0, 0
    while true do
      local body = decode_body(e.body)
      local job, err = client.jobs:create(body)
      if job then
        local reserved = tonumber(job.credits_reserved)
        if reserved then
          S.held = S.held - e.hold + reserved
          S.available = S.available + e.hold - reserved
          e.hold = reserved
        end
        set(e, { state = "created", job_id = job.job_id, reason = false })
        return true
      end
      S.last_error = err
      local k = err.kind
      if k == "rate_limit" or k == "insufficient_credits" then
        -- waited, never a row failure
        waits = waits + 1
        if k == "insufficient_credits" and S.held - (e.hold or 0) <= 0 and not err.retry_after and waits > 5 then
          S.stopped = "credits"
          unhold(e)
          progress()
          return false
        end
        rt.sleep(math_min(MAX_WAIT, err.retry_after or retry.delay(math_min(waits, 8))))
      elseif k == "validation" then
        local f = err.fields and err.fields[1]
        unhold(e)
        set(e, { state = "invalid", field = f and f.loc and tostring(f.loc[2]) or "?",
                 reason = "rejected by the API: " .. tostring(err.message) })
        return false
      elseif err.retryable then
        fails = fails + 1
        if fails >= MAX_CREATE_FAILURES then
          unhold(e)
          set(e, { reason = "not sent after " .. fails .. " attempts (re-run to resume): " .. tostring(err.message) })
          return false
        end
        rt.sleep(retry.delay(fails, err.retry_after))
      else
        -- auth, conflict, ...: the API refused this row; it was not created
        unhold(e)
        set(e, { state = "failed", reason = tostring(err.message), credits = 0 })
        return false
      end
      if S.stopped then unhold(e); return false end
    end
  end

  local function await(e)
    -- one deadline for the row; errors of the polls that may pass (network, 5xx, 429,
    -- a 402 with Retry-After) do not end the wait
    local deadline = rt.now() + job_timeout
    local job, err
    while true do
      job, err = client.jobs:wait(e.job_id, { interval = poll, timeout = math_max(0.001, deadline - rt.now()) })
      if job or err.kind == "job_failed" or err.code == "WAIT_TIMEOUT" or not waitable(err)
         or rt.now() >= deadline then
        break
      end
      rt.sleep(math_min(poll, math_max(0, deadline - rt.now())))
    end
    if job then
      local c = tonumber(job.credits_consumed) or 0
      release(e, c, tonumber(job.credits_reserved) or e.hold)
      S.spent = S.spent + c
      S.finished_now = S.finished_now + 1
      if o.download then S.to_download = S.to_download + 1 end
      set(e, { state = "completed", video_url = job.final_video_url, credits = c, reason = false })
      return true
    end
    if err.kind == "job_failed" then
      local fj = err.job or {}
      local c = tonumber(fj.credits_consumed) or 0
      release(e, c, tonumber(fj.credits_reserved) or e.hold)
      S.spent = S.spent + c
      S.finished_now = S.finished_now + 1
      set(e, { state = "failed", credits = c, reason = tostring(err.message) })
      return false
    end
    -- timeout or a lasting error: the job is still the row's; a re-run waits again
    release(e)
    S.last_error = err
    set(e, { reason = "not finished: " .. tostring(err.message) })
    return false
  end

  local function download(e)
    local ok = os.execute("mkdir -p '" .. o.download:gsub("'", "'\\''") .. "'")
    if not ok then return end
    local path = string_format("%s/row-%d-%s.mp4", (o.download:gsub("(.)/+$", "%1")), e.row, e.job_id)
    local res, err = client.jobs:download({ job_id = e.job_id, final_video_url = e.video_url }, path)
    if res then
      S.to_download = S.to_download - 1
      set(e, { file = path, reason = false })
    else
      S.last_error = err
      set(e, { reason = "download failed: " .. tostring(err.message) })
    end
  end

  local function process(e)
    if e.state == "pending" then
      if not wait_turn(e) then return end
      if not e.body then
        local ok, err = upload(e)
        if not ok then
          unhold(e)
          if err.retryable or err.kind == "rate_limit" then
            set(e, { reason = "upload failed (re-run to resume): " .. tostring(err.message) })
          else
            set(e, { state = "invalid", field = "product_image_url",
                     reason = "upload refused: " .. tostring(err.message) })
          end
          return
        end
      end
      if not create(e) then return end
    end
    if e.state == "created" then await(e) end
    if e.state == "completed" and o.download and not e.file and e.video_url then download(e) end
  end

  local function worker()
    while true do
      local e = queue[qh]
      if e == nil then return end
      qh = qh + 1
      process(e)
    end
  end

  progress()
  local handles = {}
  for _ = 1, math_min(concurrency, #queue) do handles[#handles + 1] = client:spawn(worker) end
  local failure
  while #handles > 0 do
    local h, ok, err = rt.join_any(handles, 1)
    if h then
      for k = #handles, 1, -1 do
        if handles[k] == h then table.remove(handles, k) end
      end
      if not ok and not failure then
        failure = err
        for _, other in ipairs(handles) do rt.cancel(other) end
        handles = {}
      end
    else
      progress()
    end
  end
  local final = stats()
  final.last_error = S.last_error
  final.needed = S.needed
  j:close()
  if failure then
    if errors.is(failure) then return nil, failure end
    error(failure, 0)
  end
  progress()
  return final
end

return _M
