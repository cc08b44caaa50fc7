-- busted output handler: busted's plain terminal output, plus one line
-- "<label>: N passed, N failed" on stdout and the same counts appended to
-- $UGEN_SUMMARY_FILE, so scripts/test.sh can print the suite's closing line
-- "N passed, N failed" that CI reads. Errors (in setup, teardown or a spec
-- file that does not load) count as failures.
return function(options)
  local busted = require "busted"
  local base = require "busted.outputHandlers.plainTerminal"
  local handler = base(options)

  local function on_suite_end()
    local passed = #handler.successes
    local failed = #handler.failures + #handler.errors
    local label = os.getenv("UGEN_SUITE_LABEL") or "busted"
    io.write(("%s: %d passed, %d failed, %d pending\n"):format(label, passed, failed, #handler.pendings))
    local path = os.getenv("UGEN_SUMMARY_FILE")
    if path then
      local f = assert(io.open(path, "a"))
      f:write(("%s %d %d %d\n"):format(label, passed, failed, #handler.pendings))
      f:close()
    end
    io.flush()
    return nil, true
  end

  busted.subscribe({ "suite", "end" }, on_suite_end)
  return handler
end
