/*
 * ugen_json.c -- core.json_clean(v, null, keep_null): the SDK's rule for a
 * value fresh out of cjson.decode, applied by lua/ugen/json.lua's decode on
 * every PUC Lua (the one implementation of the rule; on LuaJIT, where it
 * reduces to dropping nulls, json.lua runs it as a JIT-compiled loop, which
 * is faster there than any C function reached through the C API).
 *
 * The rule, over v and recursively over its tables:
 *   - a value raw-equal to `null` (cjson.null) is removed (a table member
 *     disappears, an array element becomes a hole; v itself becomes nil)
 *     unless keep_null is true;
 *   - on Lua 5.3+ a float with an integral value strictly inside +-2^53
 *     becomes an integer (cjson 2.1.0 decodes every number as a float).
 * Returns v (tables are changed in place). Tables nested deeper than
 * UGEN_JSON_MAX_DEPTH (cjson's decode limit is 128) are left alone. Only
 * existing fields are assigned during the traversal (allowed by lua_next),
 * no allocation besides the Lua stack.
 */
#include "ugen.h"

#define UGEN_JSON_MAX_DEPTH 200

#if LUA_VERSION_NUM >= 503
/* the number at idx as an integer when the rule makes it one: 1 and *out set, else 0 */
static int ugen_json_integral(lua_State *L, int idx, lua_Integer *out)
{
  lua_Number n;

  if (lua_isinteger(L, idx))
    return 0;
  n = lua_tonumber(L, idx);
  if (n > -9007199254740992.0 && n < 9007199254740992.0 && n == (lua_Number)(lua_Integer)n) {
    *out = (lua_Integer)n;
    return 1;
  }
  return 0;
}
#endif

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
    else if (t == LUA_TNUMBER) {
      lua_Integer i;
      if (ugen_json_integral(L, -1, &i)) {
        lua_pushvalue(L, -2);
        lua_pushinteger(L, i);
        lua_rawset(L, idx);
      }
    }
#endif
    lua_pop(L, 1);
  }
}

/* core.json_clean(v, null, keep_null) -> v after the rule (see the top of this file) */
static int ugen_json_clean(lua_State *L)
{
  int keep_null = lua_toboolean(L, 3);

  luaL_checkany(L, 2);
  lua_settop(L, 2);
  switch (lua_type(L, 1)) {
  case LUA_TTABLE:
    ugen_json_clean_table(L, 1, 2, keep_null, 0);
    break;
#if LUA_VERSION_NUM >= 503
  case LUA_TNUMBER: {
    lua_Integer i;
    if (ugen_json_integral(L, 1, &i)) {
      lua_pushinteger(L, i);
      return 1;
    }
    break;
  }
#endif
  default:
    if (!keep_null && lua_rawequal(L, 1, 2)) {
      lua_pushnil(L); /* a top-level null */
      return 1;
    }
    break;
  }
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
