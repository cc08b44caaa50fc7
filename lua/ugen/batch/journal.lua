-- ugen.batch.journal: the batch's durable record, one SQLite file (Debian's
-- lua-sql-sqlite3, `require "luasql.sqlite3"`).
--
--   journal.open(path) -> j | nil, err       creates the file and its tables
--   j:meta(key) -> string | nil              batch id, input name, ...
--   j:set_meta(key, value)
--   j:add_rows(rows)                         rows not yet journaled, in ONE transaction:
--                                            state "invalid" (with field, reason) or "pending"
--                                            (with key, and body when known)
--   j:row(n) -> entry | nil                  entry = { row, line, state, key, source, body,
--   j:rows() -> { entry, ... } (by row)        job_id, video_url, credits, reason, field,
--                                              file, updated_at }
--   j:set(n, changes) -> true | nil, err     one UPDATE = one transaction
--   j:counts() -> { pending =, created =, completed =, failed =, invalid = }
--   j:credits() -> credits of completed and failed rows
--   j:close()
--   journal.lock(path) -> lock | nil, err    one run per journal at a time: an exclusive
--                                            SQLite lock on path.."-lock", held until
--                                            lock:release() or the process ends (kill -9
--                                            included: the OS drops the file lock)
--
-- States: pending (key and body fixed, maybe sent), created (job_id: the
-- server has the job), completed (video_url, credits), failed (reason,
-- credits), invalid (field, reason: never sent).
--
-- Durability: WAL journal mode with synchronous=FULL, so every committed
-- change is on disk before j:set returns (a kill -9 or a power cut loses at
-- most the change being made). Each state change is one statement in
-- autocommit, i.e. one transaction. Readers (`ugen batch status`) can read
-- while a run writes (WAL). busy_timeout 5 s.

local errors = require "ugen.errors"

local type, pairs, ipairs, tostring, tonumber, pcall, require, setmetatable =
  type, pairs, ipairs, tostring, tonumber, pcall, require, setmetatable
local string_format, concat = string.format, table.concat
local math_floor, math_type = math.floor, rawget(math, "type")

local _M = { _VERSION = "0.1.0" }
local J = {}
local mt = { __index = J, __name = "ugen.batch.journal" }

_M.STATES = { "pending", "created", "completed", "failed", "invalid" }

local COLUMNS = { "row", "line", "state", "key", "source", "body", "job_id", "video_url", "credits",
                  "reason", "field", "file", "updated_at" }
local SETTABLE = { state = true, key = true, body = true, job_id = true, video_url = true, credits = true,
                   reason = true, field = true, file = true }

local SCHEMA = {
  "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)",
  "CREATE TABLE IF NOT EXISTS rows (row INTEGER PRIMARY KEY, line INTEGER, state TEXT NOT NULL,"
    .. " key TEXT, source TEXT, body TEXT, job_id TEXT, video_url TEXT, credits INTEGER,"
    .. " reason TEXT, field TEXT, file TEXT, updated_at TEXT)",
}

local function io_err(msg, path)
  return errors.new{ kind = "io", message = msg, path = path, retryable = false }
end

local function literal(conn, v)
  if v == nil then return "NULL" end
  if type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "NULL" end
    if (math_type and math_type(v) == "integer") or v == math_floor(v) then return string_format("%d", v) end
    return string_format("%.17g", v)
  end
  return "'" .. conn:escape(tostring(v)) .. "'"
end

local function now_text()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

function _M.open(path)
  if type(path) ~= "string" or path == "" then
    require("ugen.args").argerror(1, "open", "journal path expected", 2)
  end
  local ok, driver = pcall(require, "luasql.sqlite3")
  if not ok then
    return nil, io_err("the journal needs lua-sql-sqlite3 (Debian: apt install lua-sql-sqlite3): "
      .. tostring(driver):match("^[^\n]*"))
  end
  local env = driver.sqlite3()
  local conn, err = env:connect(path)
  if not conn then
    env:close()
    return nil, io_err("cannot open the journal " .. path .. ": " .. tostring(err), path)
  end
  local self = setmetatable({ env = env, conn = conn, path = path }, mt)
  for _, sql in ipairs({ "PRAGMA busy_timeout = 5000", "PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL" }) do
    local cur = conn:execute(sql)
    if type(cur) == "userdata" then cur:close() end
  end
  for _, sql in ipairs(SCHEMA) do
    local r, e = conn:execute(sql)
    if not r then
      self:close()
      return nil, io_err("cannot use " .. path .. " as a journal: " .. tostring(e), path)
    end
  end
  return self
end

local L = {}
local lock_mt = { __index = L, __name = "ugen.batch.journal.lock" }

function _M.lock(path)
  local ok, driver = pcall(require, "luasql.sqlite3")
  if not ok then return nil, io_err("the journal needs lua-sql-sqlite3: " .. tostring(driver):match("^[^\n]*")) end
  local env = driver.sqlite3()
  local conn, err = env:connect(path .. "-lock")
  if not conn then
    env:close()
    return nil, io_err("cannot open the lock " .. path .. "-lock: " .. tostring(err), path)
  end
  local r, e = conn:execute("BEGIN EXCLUSIVE")
  if not r then
    conn:close()
    env:close()
    local busy = tostring(e):lower():find("locked", 1, true)
    return nil, errors.new{ kind = "conflict", code = busy and "BATCH_RUNNING" or nil, retryable = false, path = path,
      message = busy and ("another run is using the journal " .. path .. " (one run per journal at a time)")
        or ("cannot lock " .. path .. "-lock: " .. tostring(e)) }
  end
  return setmetatable({ env = env, conn = conn }, lock_mt)
end

function L:release()
  if self.conn then
    self.conn:execute("ROLLBACK")
    self.conn:close()
    self.env:close()
  end
  self.conn, self.env = nil, nil
end
lock_mt.__gc = L.release
lock_mt.__close = L.release

function J:exec(sql)
  local r, e = self.conn:execute(sql)
  if r == nil then return nil, io_err("journal " .. self.path .. ": " .. tostring(e), self.path) end
  return r
end

function J:query(sql)
  local cur, e = self.conn:execute(sql)
  if not cur then return nil, io_err("journal " .. self.path .. ": " .. tostring(e), self.path) end
  local out = {}
  while true do
    local t = cur:fetch({}, "a")
    if not t then break end
    out[#out + 1] = t
  end
  cur:close()
  return out
end

function J:meta(k)
  local r = self:query("SELECT v FROM meta WHERE k = " .. literal(self.conn, k))
  return r and r[1] and r[1].v or nil
end

function J:set_meta(k, v)
  return self:exec("INSERT OR REPLACE INTO meta (k, v) VALUES (" .. literal(self.conn, k) .. ", "
    .. literal(self.conn, v) .. ")")
end

local function entry(t)
  if not t then return nil end
  t.row = tonumber(t.row)
  t.line = tonumber(t.line)
  t.credits = tonumber(t.credits)
  return t
end

function J:add_rows(rows)
  local c = self.conn
  local ok, err = self:exec("BEGIN IMMEDIATE")
  if not ok then return nil, err end
  local stamp = literal(c, now_text())
  for _, r in ipairs(rows) do
    local state = r.invalid and "invalid" or "pending"
    local sql = "INSERT OR IGNORE INTO rows (row, line, state, key, body, source, reason, field, updated_at)"
      .. " VALUES (" .. concat({ literal(c, r.row), literal(c, r.line), literal(c, state), literal(c, r.key),
                  literal(c, r.body), literal(c, r.source), literal(c, r.invalid and r.invalid.message),
                  literal(c, r.invalid and r.invalid.field), stamp }, ", ") .. ")"
    ok, err = self:exec(sql)
    if not ok then
      self:exec("ROLLBACK")
      return nil, err
    end
  end
  return self:exec("COMMIT")
end

function J:row(n)
  local r = self:query("SELECT * FROM rows WHERE row = " .. literal(self.conn, n))
  return r and entry(r[1])
end

function J:rows()
  local r, err = self:query("SELECT * FROM rows ORDER BY row")
  if not r then return nil, err end
  for _, t in ipairs(r) do entry(t) end
  return r
end

-- changes: { state =, job_id =, ... }; a key set to false is cleared (NULL)
function J:set(n, changes)
  local c = self.conn
  local sets = {}
  for _, k in ipairs(COLUMNS) do
    local v = changes[k]
    if v ~= nil then
      if not SETTABLE[k] then error("journal: column '" .. k .. "' cannot be set", 2) end
      sets[#sets + 1] = k .. " = " .. (v == false and "NULL" or literal(c, v))
    end
  end
  for k in pairs(changes) do
    if not SETTABLE[k] then error("journal: column '" .. tostring(k) .. "' cannot be set", 2) end
  end
  sets[#sets + 1] = "updated_at = " .. literal(c, now_text())
  return self:exec("UPDATE rows SET " .. concat(sets, ", ") .. " WHERE row = " .. literal(c, n))
end

function J:counts()
  local t = { pending = 0, created = 0, completed = 0, failed = 0, invalid = 0 }
  local r = self:query("SELECT state, COUNT(*) AS n FROM rows GROUP BY state") or {}
  for _, x in ipairs(r) do t[x.state] = tonumber(x.n) end
  return t
end

function J:credits()
  local r = self:query("SELECT SUM(credits) AS c FROM rows WHERE state IN ('completed', 'failed')")
  return r and r[1] and tonumber(r[1].c) or 0
end

function J:close()
  if self.conn then self.conn:close() end
  if self.env then self.env:close() end
  self.conn, self.env = nil, nil
  if self.lock then self.lock:release() end -- the run's lock (ugen.batch sets j.lock)
  self.lock = nil
end
mt.__close = J.close
mt.__gc = J.close

return _M
