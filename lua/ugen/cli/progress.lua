-- ugen.cli.progress: job progress rendering for `ugen ... --wait`.
--
-- On a terminal: one line rewritten in place ("\r" + erase), with the stage
-- name, its position in the pipeline, a bar, the percent and the elapsed time.
-- Otherwise: one plain line per change of status, stage or percent, so logs and
-- pipes get a readable history. Written to `out` (stderr by default) so stdout
-- stays for results (the job id, the final video URL, --json documents).

local endpoints = require "ugen.endpoints"

local _M = { _VERSION = "0.1.0" }

local mt = { __index = _M }

local floor, tostring, type = math.floor, tostring, type
local string_rep, string_format = string.rep, string.format

local STAGE_INDEX = {}
for i, s in ipairs(endpoints.stages) do STAGE_INDEX[s] = i end
local NSTAGES = #endpoints.stages

local BAR_WIDTH = 24

local function clock()
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and socket.gettime then return socket.gettime end
  return os.time
end

--- Elapsed seconds as m:ss (or h:mm:ss).
function _M.elapsed_text(s)
  s = floor(s + 0.5)
  local h, m, sec = floor(s / 3600), floor(s / 60) % 60, s % 60
  if h > 0 then return string_format("%d:%02d:%02d", h, m, sec) end
  return string_format("%d:%02d", m, sec)
end

--- The bar for a percentage, e.g. "[######------------------]".
function _M.bar(percent)
  local p = percent or 0
  if p < 0 then p = 0 elseif p > 100 then p = 100 end
  local full = floor(p * BAR_WIDTH / 100 + 0.5)
  return "[" .. string_rep("#", full) .. string_rep("-", BAR_WIDTH - full) .. "]"
end

local function percent_of(job)
  local p = tonumber(job.progress_percent)
  if p == nil then return nil end
  if p < 0 then p = 0 elseif p > 100 then p = 100 end
  return p
end

local function pct_text(p)
  if p == nil then return "  ?%" end
  if p == floor(p) then return string_format("%3d%%", p) end
  return string_format("%5.1f%%", p)
end

-- Describe the stage: "generation (4/8)".
local function stage_text(stage)
  if type(stage) ~= "string" then return "waiting" end
  local i = STAGE_INDEX[stage]
  if i then return string_format("%s (%d/%d)", stage, i, NSTAGES) end
  return stage
end

--- new{out = io.stderr, tty = bool, now = fn}
function _M.new(opts)
  opts = opts or {}
  local self = setmetatable({
    out = opts.out or io.stderr,
    tty = opts.tty and true or false,
    now = opts.now or clock(),
    last_key = nil,
    open_line = false,
  }, mt)
  self.start = self.now()
  return self
end

function _M:elapsed()
  return self.now() - self.start
end

--- Render a job snapshot (a job table from the API).
function _M:update(job)
  if type(job) ~= "table" then return end
  local p = percent_of(job)
  local status = job.status and tostring(job.status) or "?"
  local stage = stage_text(job.current_stage)
  local el = _M.elapsed_text(self:elapsed())
  if self.tty then
    local line = string_format("%-18s %s %s  %s  %s", stage, _M.bar(p), pct_text(p), el, status)
    self.out:write("\r\27[K", line)
    self.open_line = true
  else
    local key = status .. "|" .. tostring(job.current_stage) .. "|" .. tostring(p)
    if key == self.last_key then return end
    self.last_key = key
    self.out:write(string_format("[%s] %-18s %s %s\n", el, stage, pct_text(p), status))
  end
  self.out:flush()
end

--- End the progress display (leaves the terminal on a fresh line).
function _M:finish()
  if self.open_line then
    self.out:write("\n")
    self.out:flush()
    self.open_line = false
  end
end

--- Is file descriptor `fd` (1 or 2) a terminal? Uses the POSIX `test -t`.
-- UGEN_TTY=1/0 overrides (for tests and for CI logs that want either style).
function _M.isatty(fd)
  local force = os.getenv("UGEN_TTY")
  if force == "1" then return true elseif force == "0" then return false end
  local r = os.execute("test -t " .. tostring(fd))
  return r == true or r == 0
end

return _M
