/* Test-only: HAProxy's tune.lua.forced-yield for plain Lua 5.3/5.4
 * (spec/integration/forced_yield_spec.lua builds it with cc).
 * fy.set(co, n) installs a count hook on coroutine co (and, as Lua copies hooks
 * to threads created from it, on the coroutines it creates) that yields every n
 * VM instructions where yielding is possible, as HAProxy's hlua hook does: a
 * Lua function called from C (a libcurl callback) is not interrupted.
 * fy.clear(co) removes it. */
#include <lua.h>
#include <lauxlib.h>

static void fy_hook(lua_State *L, lua_Debug *ar)
{
  if (ar->event == LUA_HOOKCOUNT && lua_isyieldable(L))
    lua_yield(L, 0);
}

static int fy_set(lua_State *L)
{
  lua_State *co = lua_tothread(L, 1);
  int n = (int)luaL_checkinteger(L, 2);
  luaL_argcheck(L, co != NULL, 1, "coroutine expected");
  luaL_argcheck(L, n > 0, 2, "positive count expected");
  lua_sethook(co, fy_hook, LUA_MASKCOUNT, n);
  return 0;
}

static int fy_clear(lua_State *L)
{
  lua_State *co = lua_tothread(L, 1);
  luaL_argcheck(L, co != NULL, 1, "coroutine expected");
  lua_sethook(co, NULL, 0, 0);
  return 0;
}

int luaopen_forced_yield(lua_State *L);
int luaopen_forced_yield(lua_State *L)
{
  lua_newtable(L);
  lua_pushcfunction(L, fy_set);
  lua_setfield(L, -2, "set");
  lua_pushcfunction(L, fy_clear);
  lua_setfield(L, -2, "clear");
  return 1;
}
