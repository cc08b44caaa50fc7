-- Every ```lua block of README.md and docs/*.md runs as written, against a real
-- sandbox (docs/developing.md, "The documentation is tested"):
--   * each block (or chain of blocks, below) runs in a new Lua process (the
--     interpreter running this spec, this tree's SDK on its paths) with
--     UGEN_BASE_URL, UGEN_API_KEY (a freshly reset sandbox tenant) and
--     UGEN_WEBHOOK_SECRET set, in an empty directory holding mug.png and
--     loop.mp3, and must exit 0;
--   * an HTML comment on the line before the fence declares another mode:
--       <!-- snippet: continue -->   appended to the previous block of the file
--                                    (the chain runs once, as one chunk)
--       <!-- snippet: nginx -->      run inside a real nginx (content phase), same env
--       <!-- snippet: host=NAME spec/hosts/NAME_spec.lua -->   compiled; the named
--                                    spec (which runs the real host) must exist
--       <!-- snippet: fragment -->   compiled only (rare)
--     anything else before a lua fence fails, naming the block.

local S = require "support.sandbox"
local L = require "support.lua_in_nginx"
local util = require "support.util"
local samples = require "support.media_samples"

local INTERP = (type(jit) == "table") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
local SUB = (type(jit) == "table") and "luajit" or _VERSION:match("%d+%.%d+")
local TENANT = "acme"
local SPEED = 1e6
local load = loadstring or load -- luacheck: ignore 113 (5.1: loadstring)

local function root()
  return (util.capture("pwd"):gsub("%s+$", ""))
end

local doc_files = require("support.docs").files

-- The lua blocks of one markdown file:
-- { { file =, line =, mode = "run"|"continue"|"nginx"|"fragment"|"host"|"bad", host =, spec =, code = } }
local function blocks_of(file)
  local text = assert(util.read_file(file), file)
  local out, n, prev = {}, 0, nil
  local fence -- the open fence: { lang =, line =, lines = }
  for line in (text .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    if fence then
      if line:match("^%s*```%s*$") then
        if fence.lang == "lua" then
          local b = { file = file, line = fence.line, mode = "run", code = table.concat(fence.lines, "\n") .. "\n" }
          local decl = fence.prev and fence.prev:match("^%s*<!%-%-%s*snippet:%s*(.-)%s*%-%->%s*$")
          if decl then
            local host, spec = decl:match("^host=(%S+)%s+(%S+)$")
            if decl == "continue" or decl == "nginx" or decl == "fragment" then b.mode = decl
            elseif host then b.mode, b.host, b.spec = "host", host, spec
            else b.mode, b.bad = "bad", "unknown snippet declaration '" .. decl .. "'" end
          elseif fence.prev and fence.prev:match("^%s*<!%-%-%s*snippet") then
            b.mode, b.bad = "bad", "malformed snippet declaration: " .. fence.prev
          end
          out[#out + 1] = b
        end
        fence = nil
      else
        fence.lines[#fence.lines + 1] = line
      end
    else
      local lang = line:match("^%s*```(%S*)")
      if lang then fence = { lang = lang, line = n, lines = {}, prev = prev } end
    end
    if not line:match("^%s*$") then prev = line end
  end
  assert(not fence, file .. ":" .. (fence and fence.line or 0) .. ": unclosed ``` block")
  return out
end

-- Group the blocks of every file into the units that run: a run block and the
-- continue blocks after it form one chain.
local function units()
  local list, problems = {}, {}
  for _, file in ipairs(doc_files()) do
    local last
    for _, b in ipairs(blocks_of(file)) do
      local where = b.file .. ":" .. b.line
      if b.mode == "bad" then
        problems[#problems + 1] = where .. ": " .. b.bad
      elseif b.mode == "continue" then
        if not last or last.mode ~= "run" then
          problems[#problems + 1] = where .. ": <!-- snippet: continue --> without a runnable block before it"
        else
          last.code = last.code .. b.code
          last.where = last.where .. "+" .. b.line
        end
      else
        local u = { mode = b.mode, code = b.code, where = where, host = b.host, spec = b.spec }
        list[#list + 1] = u
        last = u
      end
    end
  end
  return list, problems
end

-- What some blocks print, checked against the comments beside them in the
-- docs: the block of `file` whose code contains `has` -> a Lua pattern.
local OUTPUT = {
  { file = "README.md", has = 'client.jobs:get("no-such-job")',
    output = "^not_found\t404\tJOB_NOT_FOUND\nugen: not_found error %(HTTP 404%) JOB_NOT_FOUND: [^\n]*\n$" },
  { file = "README.md", has = "ugen.webhook.sign(secret, ts, body)",
    output = "^j1\thttps://cdn%.example/v%.mp4\n200\n$" },
  { file = "README.md", has = "client.credits:estimate",
    output = "^%d+\n" },
  { file = "docs/webhooks.md", has = "REPLAYED", output = "^200\ttable: [^\n]*\t2\n409\n$" },
  { file = "docs/reference.md", has = "segmnt_count = 2",
    output = "segmnt_count\textra_forbidden\tUnknown field 'segmnt_count'; did you mean 'segment_count'%?\n" },
  { file = "docs/reference.md", has = "max_credits = 100",
    output = "^%d+ credits > budget 100: not created\n$" },
  { file = "docs/reference.md", has = 'client:request("GET", "/personas")', output = "\nROUTE_NOT_FOUND\n$" },
  { file = "docs/errors.md", has = "segment_count = 11", output = "^body%.segment_count\t[^\n]+\n$" },
  { file = "docs/sandbox.md", has = "X-Sandbox-Fault", output = "^%d+\t200\n$" },
  { file = "docs/openresty.md", has = "create_and_wait", output = "^%d+ completed\n$" },
}

local function expected_output(u)
  for _, c in ipairs(OUTPUT) do
    if u.where:match("^[^:]+") == c.file and u.code:find(c.has, 1, true) then
      c.used = (c.used or 0) + 1
      return c.output
    end
  end
end

local function sh_env(env)
  local parts = {}
  for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. util.q(v) end
  table.sort(parts)
  return "env " .. table.concat(parts, " ")
end

describe("docs snippets (README.md, docs/*.md) run as written", function()
  local list, problems = units()
  local env, dir, ngx_srv
  local secret = require("ugen.webhook").new_secret()

  setup(function()
    S.info()
    -- a job runs through its stages within a millisecond: the first poll of
    -- a wait finds it finished, so the documented intervals (10 s) cost nothing
    S.speed(SPEED)
    env = { UGEN_BASE_URL = S.info().base_url, UGEN_API_KEY = S.tenant[TENANT].api_key,
            UGEN_WEBHOOK_SECRET = secret }
  end)
  teardown(function()
    if ngx_srv then ngx_srv.stop() end
    S.speed()
    S.reset(TENANT)
  end)

  -- a fresh directory with the files the snippets name
  local function workdir()
    dir = S.tmpdir()
    util.write_file(dir .. "/mug.png", samples.png)
    util.write_file(dir .. "/loop.mp3", samples.mp3)
    return dir
  end

  it("every lua block has a runnable or declared mode", function()
    assert.same({}, problems)
    assert.is_true(#list >= 10, "found only " .. #list .. " lua blocks")
  end)

  for _, u in ipairs(list) do
    local want = expected_output(u)
    it(u.where .. " (" .. u.mode .. (u.host and (" " .. u.host) or "") .. ")", function()
      local fn, cerr = load(u.code, "=" .. u.where)
      assert(fn, "does not compile: " .. tostring(cerr))
      if u.mode == "fragment" then return end
      if u.mode == "host" then
        assert(util.read_file(u.spec), u.where .. ": the spec it names, " .. u.spec .. ", does not exist")
        return
      end
      S.reset(TENANT)
      local d = workdir()
      util.write_file(d .. "/snippet.lua", u.code)
      if u.mode == "nginx" then
        ngx_srv = ngx_srv or L.start(env)
        local r = ngx_srv.run_file(d .. "/snippet.lua")
        assert(r.status == 200, ("%s in nginx: HTTP %s\n%s\n%s"):format(u.where, tostring(r.status), r.body,
          ngx_srv.log():sub(-2000)))
        if want then assert(r.body:find(want), ("%s printed:\n%s"):format(u.where, r.body)) end
        return
      end
      local R = root()
      local prelude = ("package.path = %q .. package.path; package.cpath = %q .. package.cpath")
        :format(R .. "/lua/?.lua;" .. R .. "/lua/?/init.lua;", R .. "/build/" .. SUB .. "/?.so;")
      local cmd = ("cd %s && %s %s -e %s snippet.lua >out.txt 2>&1; echo $? >rc.txt")
        :format(util.q(d), sh_env(env), INTERP, util.q(prelude))
      util.run(cmd)
      local rc = tonumber(util.read_file(d .. "/rc.txt"))
      local out = util.read_file(d .. "/out.txt") or ""
      assert(rc == 0, ("%s exited with %s:\n%s\n(a block that only makes sense elsewhere declares it on the"
        .. " line before its fence: <!-- snippet: nginx -->, <!-- snippet: host=NAME spec/hosts/NAME_spec.lua -->"
        .. " or <!-- snippet: fragment -->; docs/developing.md)"):format(u.where, tostring(rc), out))
      if want then assert(out:find(want), ("%s printed (expected to match %q):\n%s"):format(u.where, want, out)) end
    end)
  end

  it("every output check found its block, once", function()
    for _, c in ipairs(OUTPUT) do assert.equal(1, c.used, c.file .. ": " .. c.has) end
  end)

  it("a lua block with an unknown declaration is refused (the check itself)", function()
    local d = S.tmpdir()
    local md = d .. "/x.md"
    util.write_file(md, "text\n\n<!-- snippet: sometimes -->\n```lua\nprint(1)\n```\n")
    local b = blocks_of(md)
    assert.equal(1, #b)
    assert.equal("bad", b[1].mode)
    assert.matches("unknown snippet declaration 'sometimes'", b[1].bad, 1, true)
    util.write_file(md, "<!-- snippet: host=tarantool spec/hosts/none_spec.lua -->\n```lua\nprint(1)\n```\n"
      .. "```sh\necho hi\n```\n<!-- snippet: continue -->\n```lua\nprint(2)\n```\n")
    b = blocks_of(md)
    assert.equal(2, #b)
    assert.equal("host", b[1].mode); assert.equal("spec/hosts/none_spec.lua", b[1].spec)
    assert.equal("continue", b[2].mode)
  end)
end)
