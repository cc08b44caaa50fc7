-- ugen.batch.journal: the SQLite journal (real lua-sql-sqlite3, real files):
-- WAL + synchronous=FULL, rows added once, one state change per transaction,
-- durable across a close (and a kill -9 of a writer), readable while written.
local journal = require "ugen.batch.journal"

local function tmp()
  local p = os.tmpname()
  os.remove(p)
  return p .. ".sqlite"
end

local function cleanup(p)
  for _, s in ipairs({ "", "-wal", "-shm" }) do os.remove(p .. s) end
end

local ROWS = {
  { row = 1, line = 2, source = '{"a":1}', key = "batch-k1", body = '{"a":1,"idempotency_key":"batch-k1"}' },
  { row = 2, line = 3, source = '{"a":2}', invalid = { field = "segment_count", message = "too big" } },
  { row = 3, line = 5, source = "{\"quote\":\"it's\"}" },
}

describe("ugen.batch.journal", function()
  local path, j
  before_each(function()
    path = tmp()
    j = assert(journal.open(path))
  end)
  after_each(function()
    if j then j:close() end
    cleanup(path)
  end)

  it("is a WAL database with synchronous=FULL", function()
    local r = j:query("PRAGMA journal_mode")
    assert.are.equal("wal", r[1].journal_mode)
    r = j:query("PRAGMA synchronous")
    assert.are.equal("2", tostring(r[1].synchronous)) -- 2 = FULL
  end)

  it("adds rows once (pending or invalid), keeps meta, survives a close", function()
    assert(j:set_meta("batch_id", "b-1"))
    assert(j:add_rows(ROWS))
    assert(j:add_rows(ROWS)) -- again: nothing changes
    assert.are.same({ pending = 2, created = 0, completed = 0, failed = 0, invalid = 1 }, j:counts())
    j:close()
    j = assert(journal.open(path))
    assert.are.equal("b-1", j:meta("batch_id"))
    local rows = j:rows()
    assert.are.equal(3, #rows)
    assert.are.same({ 1, 2, 3 }, { rows[1].row, rows[2].row, rows[3].row })
    assert.are.equal("invalid", rows[2].state)
    assert.are.equal("segment_count", rows[2].field)
    assert.are.equal("too big", rows[2].reason)
    assert.are.equal("{\"quote\":\"it's\"}", rows[3].source) -- quoting is SQL-safe
    assert.are.equal(5, rows[3].line)
    assert.are.equal("batch-k1", rows[1].key) -- the key and body are journaled with the row
    assert.are.equal('{"a":1,"idempotency_key":"batch-k1"}', rows[1].body)
    assert.is_nil(rows[3].key)
  end)

  it("records state changes; false clears a column; credits add up over finished rows", function()
    assert(j:add_rows(ROWS))
    assert(j:set(1, { key = "k1", body = "{}" }))
    assert(j:set(1, { state = "created", job_id = "job-1", reason = "was slow" }))
    assert(j:set(1, { state = "completed", video_url = "http://v/1.mp4", credits = 89, reason = false }))
    assert(j:set(3, { state = "failed", credits = 0, reason = "Keyframe QA failed" }))
    local e = j:row(1)
    assert.are.equal("completed", e.state)
    assert.are.equal("job-1", e.job_id)
    assert.are.equal(89, e.credits)
    assert.is_nil(e.reason)
    assert.are.equal("k1", e.key)
    assert.truthy(e.updated_at:match("^%d%d%d%d%-%d%d%-%d%dT"))
    assert.are.equal(89, j:credits())
    assert.are.same({ pending = 0, created = 0, completed = 1, failed = 1, invalid = 1 }, j:counts())
  end)

  it("refuses to set a column that is not a state field", function()
    assert(j:add_rows(ROWS))
    assert.has_error(function() j:set(1, { row = 9 }) end)
    assert.has_error(function() j:set(1, { nonsense = 1 }) end)
  end)

  it("another connection reads what was committed while the writer stays open", function()
    assert(j:add_rows(ROWS))
    assert(j:set(1, { state = "created", job_id = "job-1" }))
    local r = assert(journal.open(path))
    assert.are.equal("job-1", r:row(1).job_id)
    r:close()
  end)

  it("a write committed by a process killed with kill -9 right after is on disk", function()
    j:close()
    j = nil
    local lua = arg and arg[-1] or "lua5.4"
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(([[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      local sub = (type(jit) == "table" and "luajit") or _VERSION:match("%%d+%%.%%d+")
      package.cpath = "build/" .. sub .. "/?.so;" .. package.cpath
      local j = assert(require("ugen.batch.journal").open(%q))
      assert(j:add_rows({ { row = 1, line = 2, source = "{}" } }))
      assert(j:set(1, { state = "created", job_id = "job-k" }))
      io.stdout:write("written\n"); io.stdout:flush()
      os.execute("kill -9 $PPID")  -- the shell's parent: this interpreter, before any close
    ]]):format(path))
    f:close()
    local p = io.popen("cd " .. (os.getenv("PWD") or ".") .. " && " .. lua .. " " .. script .. " 2>&1")
    local out = p:read("*a")
    p:close()
    os.remove(script)
    assert.truthy(out:find("written", 1, true), out)
    j = assert(journal.open(path))
    local e = j:row(1)
    assert.are.equal("created", e.state)
    assert.are.equal("job-k", e.job_id)
  end)

  it("lock: one holder at a time; released by release() and by the death of the holder (kill -9)", function()
    local a = assert(journal.lock(path))
    local b, err = journal.lock(path)
    assert.is_nil(b)
    assert.are.equal("conflict", err.kind)
    assert.are.equal("BATCH_RUNNING", err.code)
    a:release()
    a:release() -- idempotent
    b = assert(journal.lock(path))
    b:release()
    -- a process that holds the lock and is killed: the OS drops its file lock
    local lua = arg and arg[-1] or "lua5.4"
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(([[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      local sub = (type(jit) == "table" and "luajit") or _VERSION:match("%%d+%%.%%d+")
      package.cpath = "build/" .. sub .. "/?.so;" .. package.cpath
      assert(require("ugen.batch.journal").lock(%q))
      io.stdout:write("locked\n"); io.stdout:flush()
      os.execute("kill -9 $PPID")
    ]]):format(path))
    f:close()
    local p = io.popen(lua .. " " .. script .. " 2>&1")
    local out = p:read("*a")
    p:close()
    assert.truthy(out:find("locked", 1, true), out)
    os.remove(script)
    local c = assert(journal.lock(path))
    c:release()
    os.remove(path .. "-lock")
  end)

  it("a path that cannot be a database is an io error, not a raise", function()
    local dir = os.tmpname() -- a file: a directory under it cannot exist
    local r, err = journal.open(dir .. "/sub/j.sqlite")
    os.remove(dir)
    assert.is_nil(r)
    assert.are.equal("io", err.kind)
  end)
end)
