-- The only tests that may end pending (not run) in `make test`, each with the
-- reason it cannot run there. spec/support/summary.lua (the output handler
-- scripts/test.sh uses) FAILS the run for any pending test not listed here:
-- pending("..."), pending() called inside a test, and it("...") without a
-- function. A missing tool is never a reason: scripts/deps.sh installs the
-- tools, and specs that need one fail without it (spec/support/tools.lua).
--
-- Key: the test's full name as busted prints it (describe names and the test
-- name joined by spaces). Value: the reason (a non-empty string).
return {
  ["ugen.core engine lifecycle supports <close> variables on Lua 5.4"] =
    "`<close>` is Lua 5.4 syntax: the chunk does not compile on 5.1, 5.2, 5.3 or LuaJIT",
  ["ugen.scheduler (unit) a cancelled task that catches the error gets it again at its next wait"] =
    "PUC Lua 5.1 cannot yield across pcall, so a task cannot catch the cancel and wait again "
    .. "(LuaJIT and 5.2+ can, and run it)",
  ["client:step interrupted by the host (forced yields) completes every job when step is yielded part-way "
    .. "and re-entered from other host tasks"] =
    "a count hook can yield only on Lua 5.3/5.4 (HAProxy's Lua); LuaJIT and 5.1 cannot yield from hooks",
}
