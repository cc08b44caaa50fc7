/*
 * ugen_core.c -- luaopen_ugen_core: one-time library initialisation,
 * version fields and registration of every part of the private core; the
 * helpers the other files share (ugen_class, ugen_hex) and core.hex.
 * Safe to run more than once per process and per state (busted's
 * insulation, hosts that reload modules): curl_global_init runs once,
 * metatables are reused.
 */
#include <openssl/crypto.h>

#include "ugen.h"

/* Define UGEN_NO_CURL_GLOBAL_INIT when the host initialises libcurl itself
 * (curl_global_init is not thread-safe in every libcurl build). */
#ifndef UGEN_NO_CURL_GLOBAL_INIT
static int ugen_core_curl_ready = 0;
#endif

static int ugen_core_global_init(lua_State *L)
{
#ifndef UGEN_NO_CURL_GLOBAL_INIT
  if (!ugen_core_curl_ready) {
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK)
      return luaL_error(L, "ugen.core: curl_global_init failed: %s", curl_easy_strerror(rc));
    ugen_core_curl_ready = 1;
  }
#else
  (void)L;
#endif
  return 0;
}

void ugen_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods)
{
  (void)luaL_newmetatable(L, name); /* reused when it exists already */
  ugen_setfuncs(L, meta);
  lua_newtable(L);
  ugen_setfuncs(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
}

void ugen_hex(const unsigned char *in, size_t n, char *out)
{
  static const char digits[] = "0123456789abcdef";
  size_t i;

  for (i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 0x0f];
  }
}

/* core.hex(s) -> lowercase hex */
static int ugen_core_hex(lua_State *L)
{
  size_t len, i = 0;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  luaL_Buffer b;

  luaL_buffinit(L, &b);
  while (i < len) {
    size_t chunk = len - i;
    char *p = luaL_prepbuffer(&b);
    if (chunk > LUAL_BUFFERSIZE / 2)
      chunk = LUAL_BUFFERSIZE / 2;
    ugen_hex(s + i, chunk, p);
    luaL_addsize(&b, 2 * chunk);
    i += chunk;
  }
  luaL_pushresult(&b);
  return 1;
}

/* core.cas(t, key, expected, new) -> boolean: t[key] = new (raw) if t[key] is
 * raw-equal to expected. One C call, so no Lua hook can run in the middle of
 * it: a host that yields Lua code from a count hook (HAProxy's forced yields)
 * cannot interleave two claims of the same field. */
static int ugen_core_cas(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  luaL_argcheck(L, !lua_isnil(L, 2), 2, "key must not be nil");
  lua_settop(L, 4);
  lua_pushvalue(L, 2);
  lua_rawget(L, 1);
  if (!lua_rawequal(L, -1, 3)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 4);
  lua_rawset(L, 1);
  lua_pushboolean(L, 1);
  return 1;
}

UGEN_API int luaopen_ugen_core(lua_State *L)
{
  const curl_version_info_data *cv;

  ugen_core_global_init(L);
  cv = curl_version_info(CURLVERSION_NOW);

  lua_newtable(L);
  lua_pushliteral(L, UGEN_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lua_pushstring(L, cv != NULL && cv->version != NULL ? cv->version : LIBCURL_VERSION);
  lua_setfield(L, -2, "curl_version");
  lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
  lua_setfield(L, -2, "openssl_version");
  lua_pushstring(L, cv != NULL && cv->ssl_version != NULL ? cv->ssl_version : "");
  lua_setfield(L, -2, "curl_ssl_version");
  lua_pushcfunction(L, ugen_core_hex);
  lua_setfield(L, -2, "hex");
  lua_pushcfunction(L, ugen_core_cas);
  lua_setfield(L, -2, "cas");

  ugen_hmac_register(L);
  ugen_random_register(L);
  ugen_time_register(L);
  ugen_json_register(L);
  ugen_url_register(L);
  ugen_engine_register(L);
  ugen_transfer_register(L);
  ugen_output_register(L);
  return 1;
}
