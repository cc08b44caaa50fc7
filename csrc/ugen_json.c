/*
 * ugen_json.c -- core.json_clean(v, null, keep_null): the in-place pass that
 * lua/ugen/json.lua runs over every decoded value (the policy -- what null
 * becomes, which numbers are integers -- is json.lua's; this is its loop in C,
 * because in Lua it cost as much as a third of the decode itself).
 *
 * Recursively over the tables of v (a table): members raw-equal to `null`
 * are removed unless keep_null is true; on Lua 5.3+ floats with an integral
 * value strictly inside +-2^53 become integers. Returns v. Tables nested
 * deeper than UGEN_JSON_MAX_DEPTH (cjson's decode limit is 128) are left
 * alone. Only existing fields are assigned during the traversal (allowed by
 * lua_next), no allocation besides the Lua stack.
 */
#include "ugen.h"

#define UGEN_JSON_MAX_DEPTH 200

static void ugen_json_clean_table(lua_State *L, int idx, int null_idx, int keep_null, int depth)
{
  if (depth > UGEN_JSON_MAX_DEPTH || !lua_checkstack(L, 6))
    return;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int t = lua_type(L, -1);
    if (t == LUA_TTABLE) {
      ugen_json_clean_table(L, lua_gettop(L), null_idx, keep_null, depth + 1);
    } else if (!keep_null && t == lua_type(L, null_idx) && lua_rawequal(L, -1, null_idx)) {
      lua_pushvalue(L, -2);
      lua_pushnil(L);
      lua_rawset(L, idx); /* removing an existing field during lua_next is allowed */
    }
#if LUA_VERSION_NUM >= 503
    else if (t == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      lua_Number n = lua_tonumber(L, -1);
      if (n > -9007199254740992.0 && n < 9007199254740992.0 && n == (lua_Number)(lua_Integer)n) {
        lua_pushvalue(L, -2);
        lua_pushinteger(L, (lua_Integer)n);
        lua_rawset(L, idx);
      }
    }
#endif
    lua_pop(L, 1);
  }
}

/* core.json_clean(v, null, keep_null) -> v */
static int ugen_json_clean(lua_State *L)
{
  int keep_null = lua_toboolean(L, 3);

  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  ugen_json_clean_table(L, 1, 2, keep_null, 0);
  lua_settop(L, 1);
  return 1;
}

static const luaL_Reg ugen_json_funcs[] = {
  { "json_clean", ugen_json_clean },
  { NULL, NULL },
};

void ugen_json_register(lua_State *L)
{
  ugen_setfuncs(L, ugen_json_funcs);
}
