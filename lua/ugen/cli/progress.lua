-- ugen.cli.progress: job progress rendering for `ugen ... --wait`.
--
-- On a terminal: one line rewritten in place ("\r" + erase), with the stage
-- name, its position in the pipeline, a bar, the percent and the elapsed time,
-- never wider than the terminal less one column (see line and columns).
-- Otherwise: one plain line per change of status, stage or percent, so logs and
-- pipes get a readable history. Written to `out` (stderr by default) so stdout
-- stays for results (the job id, the final video URL, --json documents).

local endpoints = require "ugen.endpoints"

local _M = { _VERSION = "0.1.0" }

local mt = { __index = _M }

local floor, tostring, tonumber, type, pcall = math.floor, tostring, tonumber, type, pcall
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

local function pct_text(p)
  if p == nil then return "  ?%" end
  if p == floor(p) then return string_format("%3d%%", p) end
  return string_format("%5.1f%%", p)
end

--- The bar for a percentage, e.g. "[######------------------]"; `width`
-- inner cells (default 24).
function _M.bar(percent, width)
  local w = width or BAR_WIDTH
  local p = percent or 0
  if p < 0 then p = 0 elseif p > 100 then p = 100 end
  local full = floor(p * w / 100 + 0.5)
  return "[" .. string_rep("#", full) .. string_rep("-", w - full) .. "]"
end

--- The terminal's width in columns: COLUMNS when set (a positive integer),
-- else what `stty size` says of the terminal on stderr, else 80.
function _M.columns()
  local n = tonumber(os.getenv("COLUMNS") or "")
  if n and n >= 1 and n == floor(n) then return n end
  -- stty reads the size of its stdin: our stderr (errors of stty itself discarded)
  local ok, p = pcall(io.popen, "stty size <&2 2>/dev/null")
  if ok and p then
    local text = p:read("*a") or ""
    p:close()
    local cols = tonumber(text:match("^%s*%d+%s+(%d+)"))
    if cols and cols >= 1 then return cols end
  end
  return 80
end

--- s cut to at most n bytes (hence columns, for ASCII), without leaving half of a UTF-8 character.
function _M.fit(s, n)
  if #s <= n then return s end
  s = s:sub(1, n > 0 and n or 0)
  -- a cut multi-byte character: drop its lead byte and the continuation bytes kept
  local lead = s:find("[\192-\255][\128-\191]*$")
  if lead then s = s:sub(1, lead - 1) end
  return s
end
local fit = _M.fit

--- The line for a terminal `cols` columns wide, never longer than cols - 1 (a
-- line as long as the terminal wraps on some terminals, and a wrapped line is not
-- erased by the next "\r\27[K", so it would repeat): the bar shrinks (at
-- least 5 cells), then goes; the rest is cut.
function _M.line(stage, p, el, status, cols)
  local avail = (cols or 80) - 1
  local head = string_format("%-18s ", stage)
  local rest = string_format(" %s  %s  %s", pct_text(p), el, status)
  local bw = avail - #head - #rest - 2
  if bw > BAR_WIDTH then bw = BAR_WIDTH end
  if bw >= 5 then return fit(head .. _M.bar(p, bw) .. rest, avail) end
  return fit(stage .. rest, avail)
end

local function percent_of(job)
  local p = tonumber(job.progress_percent)
  if p == nil then return nil end
  if p < 0 then p = 0 elseif p > 100 then p = 100 end
  return p
end


-- Describe the stage: "generation (4/8)".
local function stage_text(stage)
  if type(stage) ~= "string" then return "waiting" end
  local i = STAGE_INDEX[stage]
  if i then return string_format("%s (%d/%d)", stage, i, NSTAGES) end
  return stage
end

--- new{out = io.stderr, tty = bool, now = fn, cols = the terminal's width (default: columns())}
function _M.new(opts)
  opts = opts or {}
  local self = setmetatable({
    out = opts.out or io.stderr,
    tty = opts.tty and true or false,
    cols = opts.cols,
    now = opts.now or clock(),
    last_key = nil,
    open_line = false,
  }, mt)
  if self.tty and not self.cols then self.cols = _M.columns() end
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
    self.out:write("\r\27[K", _M.line(stage, p, el, status, self.cols))
    self.open_line = true
  else
    local key = status .. "|" .. tostring(job.current_stage) .. "|" .. tostring(p)
    if key == self.last_key then return end
    self.last_key = key
    self.out:write(string_format("[%s] %-18s %s %s\n", el, stage, pct_text(p), status))
  end
  self.out:flush()
end

--- One job's state in a few words: "generation (4/8)  45% processing".
function _M.summary(job)
  local p = percent_of(job)
  return string_format("%s %s %s", stage_text(job.current_stage), pct_text(p),
    job.status and tostring(job.status) or "?")
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
