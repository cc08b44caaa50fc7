/*
 * scripts/lua_host.c -- a minimal standalone Lua 5.4 interpreter for `make check`'s sanitizer
 * runs: built with -fsanitize=address,undefined and liblua5.4.a, it carries the sanitizer
 * runtime itself, so nothing is LD_PRELOADed and the processes the specs start (nginx for the
 * sandbox, curl) run unsanitized and unaffected. Usage as lua5.4: lua_host script [args...]
 * (the script gets `arg` and `...` like lua.c gives them). Symbols are exported (-Wl,-E) so
 * C modules (cjson, luasocket, ugen.core) resolve the Lua API from this executable.
 */
#include <stdio.h>
#include <stdlib.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static int traceback(lua_State *L)
{
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

int main(int argc, char **argv)
{
  lua_State *L;
  int i, status;

  if (argc < 2) {
    fprintf(stderr, "usage: %s script [args...]\n", argv[0]);
    return 2;
  }
  L = luaL_newstate();
  if (L == NULL)
    return 1;
  luaL_openlibs(L);
  lua_createtable(L, argc, 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, traceback);
  if (luaL_loadfile(L, argv[1]) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    lua_close(L);
    return 1;
  }
  for (i = 2; i < argc; i++)
    lua_pushstring(L, argv[i]);
  status = lua_pcall(L, argc - 2, 0, 1);
  if (status != LUA_OK)
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}
