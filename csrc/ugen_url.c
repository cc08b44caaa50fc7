/*
 * ugen_url.c -- core.url_encode(s): RFC 3986 percent-encoding of one URL
 * component, the one implementation behind lua/ugen/url.lua's
 * encode_component (path segments, query names and values).
 *
 * Every byte outside the unreserved set (ALPHA / DIGIT / "-" / "." / "_" /
 * "~", ASCII only, whatever the C locale) becomes "%XX" (upper-case hex).
 * A string with nothing to encode (ids, the common case) is returned as it
 * is: no copy, no allocation. Written in C because the Lua pattern test it
 * replaces cost ~10k instructions per request (a bracket class re-parsed at
 * every byte of the id).
 */
#include "ugen.h"

static unsigned char ugen_url_safe[256];

static void ugen_url_init(void)
{
  const char *extra = "-._~";
  int c;

  for (c = '0'; c <= '9'; c++)
    ugen_url_safe[c] = 1;
  for (c = 'A'; c <= 'Z'; c++)
    ugen_url_safe[c] = 1;
  for (c = 'a'; c <= 'z'; c++)
    ugen_url_safe[c] = 1;
  for (; *extra != '\0'; extra++)
    ugen_url_safe[(unsigned char)*extra] = 1;
}

/* core.url_encode(s) -> s with every byte outside the unreserved set as %XX */
static int ugen_url_encode(lua_State *L)
{
  static const char hexdig[] = "0123456789ABCDEF";
  size_t len, i, first;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  luaL_Buffer b;

  for (first = 0; first < len && ugen_url_safe[s[first]]; first++)
    ;
  if (first == len) {
    lua_settop(L, 1);
    return 1;
  }
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, (const char *)s, first);
  for (i = first; i < len; i++) {
    if (ugen_url_safe[s[i]]) {
      luaL_addchar(&b, (char)s[i]);
    } else {
      luaL_addchar(&b, '%');
      luaL_addchar(&b, hexdig[s[i] >> 4]);
      luaL_addchar(&b, hexdig[s[i] & 15]);
    }
  }
  luaL_pushresult(&b);
  return 1;
}

static const luaL_Reg ugen_url_funcs[] = {
  { "url_encode", ugen_url_encode },
  { NULL, NULL },
};

void ugen_url_register(lua_State *L)
{
  ugen_url_init();
  ugen_setfuncs(L, ugen_url_funcs);
}
