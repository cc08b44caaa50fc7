-- ugen.cli.context: what every `ugen` command does with the context of its run.
--
-- A command's run(ctx) gets ctx = { out =, err = (files), values = (its
-- flags, parsed), pos = (its positional arguments), json = (--json given),
-- command = "jobs get" }. This module holds the one implementation of: the
-- exit statuses, usage errors, lines printed with the run's secrets scrubbed,
-- JSON printing, error reports, and the SDK client made from the global flags
-- and the environment.

local output = require "ugen.cli.output"
local errors = require "ugen.errors"

local _M = { _VERSION = "0.1.0" }

local type, ipairs, pairs, tostring, pcall, error, select, setmetatable, getmetatable, require =
  type, ipairs, pairs, tostring, pcall, error, select, setmetatable, getmetatable, require

_M.EXIT = { ok = 0, error = 1, usage = 2, job_failed = 3, over_budget = 4, interrupted = 130 }
local EXIT = _M.EXIT

_M.DEFAULT_BASE_URL = "https://api.u-gen.ai/api/v1"

-- Raised (as a table) for usage errors deep inside a command; ugen.cli.main
-- turns it into one line and exit 2.
local USAGE = {}

--- Raise a usage error (exit 2, `msg` on one line).
function _M.usage_error(msg) error(setmetatable({ msg = msg }, USAGE), 0) end

--- Is e a usage error raised by usage_error? (Its message is e.msg.)
function _M.is_usage(e)
  return getmetatable(e) == USAGE
end

--- An environment variable, nil when unset or empty.
function _M.env(name)
  local v = os.getenv(name)
  if v == "" then return nil end
  return v
end
local env = _M.env

-- The secrets this run was given (API key, JWT, webhook secrets, credential
-- headers): scrubbed from every line printed through out_line/err_line, so a
-- server echoing them back, in an error or in a success body, cannot make the
-- CLI print them. (ugen.errors scrubs the SDK's errors already; this also
-- covers results.)
function _M.add_secret(ctx, ...)
  ctx.secret_values = ctx.secret_values or {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "string" then ctx.secret_values[#ctx.secret_values + 1] = v end
  end
  ctx.secret_forms = errors.secret_forms(ctx.secret_values)
end
local add_secret = _M.add_secret

--- s with the run's secrets scrubbed.
function _M.scrub(ctx, s)
  if ctx.secret_forms and #ctx.secret_forms > 0 then return errors.scrub_string(s, ctx.secret_forms) end
  return s
end
local scrub = _M.scrub

--- One value from server data for a line of human output (controls escaped).
function _M.show(v)
  return output.scalar(v == nil and "" or (type(v) == "string" and v or tostring(v)))
end

--- A line on stdout (results).
function _M.out_line(ctx, s)
  ctx.out:write(scrub(ctx, s), "\n")
  ctx.out:flush()
end
local out_line = _M.out_line

--- A line on stderr (progress, diagnostics).
function _M.err_line(ctx, s)
  ctx.err:write(scrub(ctx, s), "\n")
  ctx.err:flush()
end
local err_line = _M.err_line

--- v as one JSON document on stdout (secret-named keys redacted, secrets scrubbed).
function _M.print_json(ctx, v)
  out_line(ctx, output.to_json(v))
end
local print_json = _M.print_json

--- JSON without redaction: for values that are meant to be shown (a new
-- secret the user asked for, the sandbox's local test credentials).
function _M.print_raw_json(ctx, v)
  ctx.out:write(output.json_text(v), "\n")
  ctx.out:flush()
end

--- Report an error (a line on stderr; with --json, the error document on
-- stdout) and return the exit status: `code`, default EXIT.error.
function _M.fail(ctx, err, code)
  err_line(ctx, "error: " .. output.error_text(err))
  if ctx.json then print_json(ctx, output.error_table(err)) end
  return code or EXIT.error
end

local CREDENTIAL_HEADERS = { authorization = true, ["x-api-key"] = true, cookie = true,
                             ["proxy-authorization"] = true }

--- The run's SDK client, made on first use from the global flags (then env,
-- then defaults); its credentials join the run's secrets.
function _M.client(ctx)
  if ctx.client_obj then return ctx.client_obj end
  local g = ctx.values
  local key = g.api_key or env("UGEN_API_KEY")
  local jwt = g.jwt or env("UGEN_JWT")
  if not key and not jwt then
    _M.usage_error("missing API key: pass --api-key or set UGEN_API_KEY (or --jwt / UGEN_JWT)")
  end
  local headers
  for _, h in ipairs(g.header or {}) do
    local name, value = h:match("^%s*([%w!#$%%&'*+%-.^_`|~]+)%s*:%s*(.-)%s*$")
    -- the value is not echoed: a header may carry a credential
    if not name then _M.usage_error("--header expects 'Name: value' (a header name, a colon, a value)") end
    headers = headers or {}
    headers[name] = value
  end
  add_secret(ctx, key, jwt)
  for name, value in pairs(headers or {}) do
    if CREDENTIAL_HEADERS[name:lower()] then
      add_secret(ctx, value, value:match("^%a+%s+(.+)$"))
    end
  end
  local opts = {
    api_key = key, jwt = jwt, headers = headers,
    base_url = g.base_url or env("UGEN_BASE_URL") or _M.DEFAULT_BASE_URL,
    cainfo = g.cainfo or env("UGEN_CAINFO"),
    timeout = g.request_timeout, max_retries = g.max_retries,
  }
  -- the SDK is loaded only by the commands that talk to the API
  local ok, c = pcall(require("ugen").new, opts)
  if not ok then
    -- a bad option value (e.g. a malformed base URL) is a usage error
    _M.usage_error(tostring(c):gsub("^[^:]*:%d+: ", ""))
  end
  if not c then _M.usage_error("cannot create the client") end
  ctx.client_obj = c
  return c
end

return _M
