-- ugen.observe: logging and hooks (docs/observability.md).
--
-- What the pipeline reports about each request, and to whom: a logger
-- (`logger = function(level, msg, fields)`, or io.stderr when only UGEN_LOG is
-- set) and the on_request / on_response / on_retry hooks, from ugen.new and
-- from a call's opts (both run: the client's first, then the call's).
--
--   observe.config(opts, env_level, level) -> obs | nil   ugen.new: checks logger, log_level, on_request,
--       on_response, on_retry, timings (raises "ugen.new: ..." at the caller of ugen.new) and
--       env_level (UGEN_LOG's value); nil when nothing is configured, so a client without
--       observers costs the pipeline one nil test per call
--   observe.CALL_KEYS                            the per-call opts this module reads
--   observe.check_call(opts, n, fname, level)    per-call hooks/timings checked (args.argerror)
--   observe.for_call(obs, opts) -> obs | nil     the client's observers plus the call's
--   observe.request(obs, info)                   before an attempt is sent
--   observe.response(obs, info)                  after an attempt: a response or a transport error
--   observe.retry(obs, info)                     before the backoff sleep of a retry
--   observe.format(fields) -> "event=... k=v"    the log line (logfmt: stable, greppable)
--
-- The pipeline builds the info tables only when a logger or hook will read them,
-- scrubbed with ugen.errors' redaction before any observer sees them (every
-- registered secret removed from the URL and header values, credential headers'
-- values replaced whole, errors through errors.redact). A logger or hook that raises does not break the call: the
-- error is caught (pcall) and reported once per function on io.stderr.

local errors = require "ugen.errors"
local args = require "ugen.args"

local type, pairs, tostring, pcall, error, ipairs, setmetatable =
  type, pairs, tostring, pcall, error, ipairs, setmetatable
local string_format, string_gsub, string_match, math_floor =
  string.format, string.gsub, string.match, math.floor
local concat = table.concat

local _M = { _VERSION = "0.1.0" }

local LEVELS = { info = 1, debug = 2 }
local HOOKS = { "on_request", "on_response", "on_retry" }

_M.CALL_KEYS = { on_request = true, on_response = true, on_retry = true, timings = true }

---------------------------------------------------------------------------
-- log lines

-- logfmt value: bare when it has no space, '=', quote, backslash or control character, else
-- quoted (quote and backslash escaped with a backslash, control characters as errors show them)
local function value_text(v)
  local tv = type(v)
  if tv == "number" then
    if v == math_floor(v) and v > -1e15 and v < 1e15 then return string_format("%d", v) end
    return string_format("%.3f", v)
  end
  if tv ~= "string" then v = tostring(v) end
  -- bare: printable ASCII but space, '"', '=' and '\\' (an anchored match of one class of 4
  -- ranges: one pass, no restart per position)
  if string_match(v, "^[]-~!#-<>-[]+$") then return v end
  return '"' .. errors.escape_controls((string_gsub(v, '["\\]', "\\%0"))) .. '"'
end

-- the keys of a log line, in this order (then nothing else)
local ORDER = { "event", "method", "path", "status", "attempt", "retry", "max_retries", "wait_s", "reason",
                "duration_ms", "error", "code", "request_id", "connect_ms", "tls_ms", "ttfb_ms", "total_ms",
                "reused" }

function _M.format(fields)
  local parts = {}
  for _, k in ipairs(ORDER) do
    local v = fields[k]
    if v ~= nil then parts[#parts + 1] = k .. "=" .. value_text(v) end
  end
  return concat(parts, " ")
end

local function default_logger(level, msg)
  io.stderr:write("ugen level=", level, " ", msg, "\n")
end

---------------------------------------------------------------------------
-- configuration

local function check_fn(v, what, level)
  if v ~= nil and type(v) ~= "function" then
    error("ugen.new: option '" .. what .. "' must be a function (got " .. args.describe_type(v) .. ")", level + 1)
  end
end

local function level_of(v, what, level)
  local n = LEVELS[v]
  if n then return n end
  -- (an unexpected value is shown only when it looks like a level word: it may be anything)
  local shown = type(v) == "string" and string_match(v, "^[%w_-]+$") and #v <= 16 and (" (got '" .. v .. "')") or ""
  error("ugen.new: " .. what .. " must be 'debug' or 'info'" .. shown, level + 1)
end

function _M.config(opts, env_level, level)
  level = (level or 1) + 1
  for _, k in ipairs(HOOKS) do check_fn(opts[k], k, level) end
  check_fn(opts.logger, "logger", level)
  if opts.timings ~= nil and type(opts.timings) ~= "boolean" then
    error("ugen.new: option 'timings' must be a boolean (got " .. args.describe_type(opts.timings) .. ")", level)
  end
  local lvl
  if opts.log_level ~= nil then
    lvl = level_of(opts.log_level, "option 'log_level'", level)
  elseif env_level ~= nil and env_level ~= "" then
    lvl = level_of(env_level, "environment variable UGEN_LOG", level)
  end
  local logger = opts.logger
  if logger == nil and lvl then logger = default_logger end
  if logger and not lvl then lvl = LEVELS.info end
  if not (logger or opts.on_request or opts.on_response or opts.on_retry or opts.timings) then return nil end
  -- report: someone to tell about each attempt (else only meta.timing is wanted)
  local obs = { logger = logger, level = logger and lvl or 0,
                report = (logger or opts.on_request or opts.on_response or opts.on_retry) ~= nil }
  for _, k in ipairs(HOOKS) do
    if opts[k] then obs[k] = { opts[k] } end
  end
  return obs
end

function _M.check_call(opts, n, fname, level)
  for k in pairs(_M.CALL_KEYS) do
    local v = opts[k]
    if k == "timings" then
      if v ~= nil and type(v) ~= "boolean" then
        args.argerror(n, fname, "opts.timings must be a boolean", level + 1)
      end
    elseif v ~= nil and type(v) ~= "function" then
      args.argerror(n, fname, "opts." .. k .. " must be a function", level + 1)
    end
  end
end

-- a call's observers: the client's (run first) and the call's own
function _M.for_call(obs, opts)
  if not (opts.on_request or opts.on_response or opts.on_retry or opts.timings) then return obs end
  local o = { logger = obs and obs.logger, level = obs and obs.level or 0,
              report = (obs and obs.report) or (opts.on_request or opts.on_response or opts.on_retry) ~= nil }
  for _, k in ipairs(HOOKS) do
    local list = obs and obs[k]
    if opts[k] then
      local l = {}
      if list then for i = 1, #list do l[i] = list[i] end end
      l[#l + 1] = opts[k]
      list = l
    end
    o[k] = list
  end
  return o
end

---------------------------------------------------------------------------
-- running observers

local reported = setmetatable({}, { __mode = "k" })

-- fn(...) under pcall; an error is shown once per function (scrubbed of secrets)
local function run(fn, what, a, b, c)
  local ok, err = pcall(fn, a, b, c)
  if not ok and not reported[fn] then
    reported[fn] = true
    local msg = errors.escape_controls(errors.scrub_string(tostring(err), errors.secret_list()))
    io.stderr:write("ugen: ", what, " raised (ignored; reported once): ", msg, "\n")
  end
end

local function run_hooks(list, what, info)
  if list then
    for i = 1, #list do run(list[i], what, info) end
  end
end

local function ms(s) return s and s * 1000 or nil end

local function log(obs, lvl, fields)
  run(obs.logger, "logger", lvl, _M.format(fields), fields)
end

function _M.request(obs, info)
  if obs.level >= 2 then
    log(obs, "debug", { event = "request", method = info.method, path = info.path, attempt = info.attempt })
  end
  run_hooks(obs.on_request, "on_request", info)
end

function _M.response(obs, info)
  if obs.level >= 1 then
    local e = info.error
    local f = { event = "response", method = info.method, path = info.path, status = info.status,
                attempt = info.attempt, duration_ms = ms(info.duration), request_id = info.request_id,
                error = e and e.kind, code = e and e.code }
    local t = info.timing
    if obs.level >= 2 and t then
      f.connect_ms, f.tls_ms, f.ttfb_ms, f.total_ms = ms(t.connect), ms(t.appconnect), ms(t.starttransfer),
        ms(t.total)
      f.reused = t.reused
    end
    log(obs, "info", f)
  end
  run_hooks(obs.on_response, "on_response", info)
end

function _M.retry(obs, info)
  if obs.level >= 1 then
    local e = info.error
    log(obs, "info", { event = "retry", method = info.method, path = info.path, status = info.status,
      attempt = info.attempt, retry = info.retry, max_retries = info.max_retries, wait_s = info.wait,
      reason = info.reason, error = e and e.kind, code = e and e.code, request_id = info.request_id })
  end
  run_hooks(obs.on_retry, "on_retry", info)
end

-- why a retry happens, one word: "rate_limited" (429), "server_error" (5xx),
-- "request_timeout" (408), else the error's kind ("network", "timeout")
function _M.reason(err)
  local st = err.status
  if st == 429 then return "rate_limited" end
  if st == 408 then return "request_timeout" end
  if st and st >= 500 then return "server_error" end
  return err.kind
end

return _M
