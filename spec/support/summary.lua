-- busted output handler: busted's plain terminal output, plus one line
-- "<label>: N passed, N failed, N pending" on stdout and the same counts
-- appended to $UGEN_SUMMARY_FILE, so scripts/test.sh can print the suite's
-- closing line "N passed, N failed" that CI reads. Errors (in setup, teardown
-- or a spec file that does not load) count as failures.
--
-- No test passes by not running. A pending test (pending("..."), or a test
-- that calls pending()) is a FAILURE unless spec/allowed_pending.lua lists its
-- full name (describe names and test name joined by spaces, as busted prints
-- it) with a reason; listed ones count as pending and their reasons are
-- printed. `it("name")` without a function, which busted would drop without a
-- word, is registered as a pending test under the same rule.
-- UGEN_ALLOWED_PENDING names another list file (spec/unit/summary_spec.lua
-- uses it to test this handler); scripts/test.sh unsets it.
local LIST = os.getenv("UGEN_ALLOWED_PENDING") or "spec/allowed_pending.lua"

-- The list: { [full name] = "reason" }; anything else is an error that stops
-- the run before a test runs (busted cannot load this handler).
local function load_list(path)
  local chunk, err = loadfile(path)
  if not chunk then error("summary: cannot load the pending list " .. path .. ": " .. tostring(err), 0) end
  local list = chunk()
  if type(list) ~= "table" then error("summary: " .. path .. " must return a table", 0) end
  for name, reason in pairs(list) do
    if type(name) ~= "string" or type(reason) ~= "string" or not reason:find("%S") then
      error("summary: " .. path .. ": entry " .. tostring(name) .. " needs a reason (a non-empty string)", 0)
    end
  end
  return list
end

return function(options)
  local busted = require "busted"
  local base = require "busted.outputHandlers.plainTerminal"
  local handler = base(options)
  local allowed = load_list(LIST)
  local listed = {}        -- allowed pendings seen: name -> reason

  -- `it("name")` with no body: a pending test (busted would register nothing).
  -- The curried form it "name" (function ... end) is not used in this project.
  -- Installed in the root context's environment when the suite starts, before
  -- any spec file's code runs.
  local it, pending = busted.it, busted.pending
  local function it_checked(name, fn, ...)
    if fn == nil and type(name) == "string" then
      return pending(name)     -- a tail call: busted's trace names the spec's line
    end
    return it(name, fn, ...)
  end
  local function on_suite_start(root)
    root.env = root.env or {}
    root.env.it = it_checked
    return nil, true
  end

  -- After busted's own bookkeeping (priority 1) has filed the test as pending:
  -- an unlisted one is moved to the failures, so busted's exit status, its
  -- report and our counts all say "failed".
  local function on_test_end(element, parent, status)
    if status ~= "pending" then return nil, true end
    local name = handler.getFullName(element)
    if allowed[name] then
      listed[name] = allowed[name]
      return nil, true
    end
    local last, why = handler.pendings[#handler.pendings], nil
    if last and last.name == name then
      table.remove(handler.pendings)
      handler.pendingsCount = handler.pendingsCount - 1
      why = last.message
    end
    local msg = "pending test not listed in " .. LIST .. " (a test that does not run must be listed "
      .. "there with a reason): " .. name
    if why ~= nil then msg = msg .. "\npending reason: " .. tostring(why) end
    handler.failuresCount = handler.failuresCount + 1
    -- filed as a failed test (busted's own handlers file a failing non-test
    -- element a second time, as an error)
    local descriptor = element.descriptor
    element.descriptor = "it"
    busted.publish({ "failure", "it" }, element, parent, msg, element.trace)
    element.descriptor = descriptor
    return nil, true
  end

  local function on_suite_end()
    local passed = #handler.successes
    local failed = #handler.failures + #handler.errors
    local pend = #handler.pendings
    local label = os.getenv("UGEN_SUITE_LABEL") or "busted"
    local names = {}
    for name in pairs(listed) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      io.write(("%s: skipped (listed in %s): %s -- %s\n"):format(label, LIST, name, listed[name]))
    end
    io.write(("%s: %d passed, %d failed, %d pending\n"):format(label, passed, failed, pend))
    local path = os.getenv("UGEN_SUMMARY_FILE")
    if path then
      local f = assert(io.open(path, "a"))
      f:write(("%s %d %d %d\n"):format(label, passed, failed, pend))
      f:close()
    end
    io.flush()
    return nil, true
  end

  busted.subscribe({ "suite", "start" }, on_suite_start)
  busted.subscribe({ "test", "end" }, on_test_end)
  busted.subscribe({ "suite", "end" }, on_suite_end)
  return handler
end
