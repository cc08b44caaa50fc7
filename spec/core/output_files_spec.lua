-- Issue 12, item 7, in the C core: an output file is written only when it is
-- a regular file with one link. The engine (req.output, req.resume_from) and
-- the output_* functions the ngx transport writes with never follow a
-- symbolic link, never append through a hard link, never resume from either.
local core = require "ugen.core"
local httpd = require "support.httpd_ctl"
local util = require "support.util"

local read_file, write_file, run, q = util.read_file, util.write_file, util.run, util.q

local function pattern(n, offset)
  local t = {}
  for i = offset or 0, (offset or 0) + n - 1 do t[#t + 1] = string.char((i * 7 + 3) % 251) end
  return table.concat(t)
end

local function is_symlink(path) return run("test -L " .. q(path)) end

describe("ugen.core output files", function()
  local dir, srv, e
  local seq = 0

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(run("mkdir -p " .. q(dir)))
    srv = httpd.start()
    e = core.engine()
  end)

  teardown(function()
    if e then e:close() end
    if srv then srv.stop() end
    if dir then run("rm -rf " .. q(dir)) end
  end)

  -- a fresh name, a victim file with `content`, and name -> victim as a symbolic (or hard) link
  local function planted(content, hard)
    seq = seq + 1
    local name, victim = dir .. "/out" .. seq, dir .. "/victim" .. seq
    write_file(victim, content)
    assert(run(("ln %s %s %s"):format(hard and "" or "-s", q(victim), q(name))))
    return name, victim
  end

  it("output_size: a regular file's size; nil when absent, a link, a hard-linked file or a directory", function()
    local name, victim = planted("12345")
    assert.is_nil(core.output_size(name))
    assert.equal(5, core.output_size(victim))
    local hard = planted("abc", true)
    assert.is_nil(core.output_size(hard))
    assert.is_nil(core.output_size(dir .. "/absent"))
    assert.is_nil(core.output_size(dir))
  end)

  it("output_prepare replaces a link by a new empty file; with keep it refuses links and short files", function()
    local name, victim = planted("VICTIM")
    local ok, err = core.output_prepare(name, 3)
    assert.is_nil(ok); assert.matches("symbolic link", err)
    assert(core.output_prepare(name))
    assert.is_false(is_symlink(name)); assert.equal("", read_file(name)); assert.equal("VICTIM", read_file(victim))
    local hard, hvictim = planted("VICTIM", true)
    ok, err = core.output_prepare(hard, 2)
    assert.is_nil(ok); assert.matches("one link", err)
    assert.equal("VICTIM", read_file(hvictim))
    write_file(name, "0123456789")
    assert(core.output_prepare(name, 4))
    assert.equal("0123", read_file(name))
    ok, err = core.output_prepare(name, 40)
    assert.is_nil(ok); assert.matches("shorter", err)
  end)

  it("a FIFO at the name: output_size nil, resuming refused at once, starting over replaces it", function()
    seq = seq + 1
    local fifo = dir .. "/fifo" .. seq
    assert(run("mkfifo " .. q(fifo)))
    assert.is_nil(core.output_size(fifo))
    local ok, err = core.output_prepare(fifo, 1)         -- no reader: must not wait for one
    assert.is_nil(ok); assert.is_string(err)
    assert(core.output_prepare(fifo))
    assert.is_true(run("test -f " .. q(fifo)))
  end)

  it("output_append never writes through a symbolic or hard link", function()
    local name, victim = planted("VICTIM")
    local ok, err = core.output_append(name, "more")
    assert.is_nil(ok); assert.matches("symbolic link", err)
    local hard, hvictim = planted("VICTIM", true)
    ok, err = core.output_append(hard, "more")
    assert.is_nil(ok); assert.matches("one link", err)
    assert.equal("VICTIM", read_file(victim)); assert.equal("VICTIM", read_file(hvictim))
    write_file(dir .. "/plain", "ab")
    assert(core.output_append(dir .. "/plain", "cd"))
    assert.equal("abcd", read_file(dir .. "/plain"))
  end)

  it("req.output: a symbolic link at the output is replaced, its target untouched", function()
    local name, victim = planted("VICTIM")
    local res = assert(e:request { url = srv.base .. "/bytes?n=1000", output = name })
    assert.equal(200, res.status)
    assert.equal("VICTIM", read_file(victim))
    assert.is_false(is_symlink(name)); assert.equal(pattern(1000), read_file(name))
    -- a dangling link: its target is not created
    seq = seq + 1
    local dangling, target = dir .. "/dangling" .. seq, dir .. "/never" .. seq
    assert(run(("ln -s %s %s"):format(q(target), q(dangling))))
    assert(e:request { url = srv.base .. "/bytes?n=10", output = dangling })
    assert.is_nil(read_file(target))
  end)

  it("req.resume_from through a symbolic or hard link: an io error, nothing appended", function()
    for _, hard in ipairs{ false, true } do
      local name, victim = planted(pattern(500), hard)
      local res, err = e:request { url = srv.base .. "/range?n=1000", output = name, resume_from = 500 }
      assert.is_nil(res)
      assert.equal("io", err.kind)
      assert.equal(pattern(500), read_file(victim))
    end
    -- a regular file resumes
    seq = seq + 1
    local name = dir .. "/regular" .. seq
    write_file(name, pattern(500))
    local res = assert(e:request { url = srv.base .. "/range?n=1000", output = name, resume_from = 500 })
    assert.equal(206, res.status)
    assert.equal(pattern(1000), read_file(name))
  end)
end)
