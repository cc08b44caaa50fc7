/*
 * ugen_compat.h -- the only place with Lua, LuaJIT, libcurl and OpenSSL
 * version checks. The sources target the Lua 5.3 C API; the shims below
 * provide the few functions used that older versions lack, and the 5.4
 * user-value API is wrapped so callers always see "one user value".
 */
#ifndef UGEN_COMPAT_H
#define UGEN_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <curl/curl.h>
#include <openssl/opensslv.h>

/* ---- Lua -------------------------------------------------------------- */

#if !defined(LUA_VERSION_NUM) || LUA_VERSION_NUM < 501
#error "ugen.core needs Lua 5.1 or newer (or LuaJIT)"
#elif LUA_VERSION_NUM >= 505
#error "ugen.core has not been ported to Lua 5.5 yet"
#endif

#ifndef LUA_OK
#define LUA_OK 0
#endif

#if LUA_VERSION_NUM >= 504
/* 5.4: full userdata carry n user values; we always use exactly one. */
#define ugen_newuserdata(L, sz) lua_newuserdatauv((L), (sz), 1)
#define ugen_setuservalue(L, idx) ((void)lua_setiuservalue((L), (idx), 1))
#define ugen_getuservalue(L, idx) ((void)lua_getiuservalue((L), (idx), 1))
#elif LUA_VERSION_NUM >= 502
#define ugen_newuserdata(L, sz) lua_newuserdata((L), (sz))
#define ugen_setuservalue(L, idx) lua_setuservalue((L), (idx))
#define ugen_getuservalue(L, idx) ((void)lua_getuservalue((L), (idx)))
#else
/* 5.1 / LuaJIT: the environment table stands in for the user value, so
 * the value must always be a table. */
#define ugen_newuserdata(L, sz) lua_newuserdata((L), (sz))
#define ugen_setuservalue(L, idx) ((void)lua_setfenv((L), (idx)))
#define ugen_getuservalue(L, idx) lua_getfenv((L), (idx))
#endif

#if LUA_VERSION_NUM >= 502
#define ugen_rawlen(L, idx) lua_rawlen((L), (idx))
#define ugen_setfuncs(L, l) luaL_setfuncs((L), (l), 0)
#define ugen_absindex(L, idx) lua_absindex((L), (idx))
#define ugen_rawgetp(L, idx, p) ((void)lua_rawgetp((L), (idx), (p)))
#define ugen_rawsetp(L, idx, p) lua_rawsetp((L), (idx), (p))
#define ugen_testudata(L, idx, tn) luaL_testudata((L), (idx), (tn))
#else
#define ugen_rawlen(L, idx) lua_objlen((L), (idx))

static inline int ugen_absindex(lua_State *L, int idx)
{
  return (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
}

static inline void ugen_setfuncs(lua_State *L, const luaL_Reg *l)
{
  for (; l->name != NULL; l++) {
    lua_pushcfunction(L, l->func);
    lua_setfield(L, -2, l->name);
  }
}

/* t[p] where p is a light userdata key; t at idx. Never raises. */
static inline void ugen_rawgetp(lua_State *L, int idx, const void *p)
{
  idx = ugen_absindex(L, idx);
  lua_pushlightuserdata(L, (void *)(size_t)p);
  lua_rawget(L, idx);
}

/* t[p] = top-of-stack (popped). */
static inline void ugen_rawsetp(lua_State *L, int idx, const void *p)
{
  idx = ugen_absindex(L, idx);
  lua_pushlightuserdata(L, (void *)(size_t)p);
  lua_insert(L, -2);
  lua_rawset(L, idx);
}

static inline void *ugen_testudata(lua_State *L, int idx, const char *tname)
{
  void *p = lua_touserdata(L, idx);
  if (p == NULL || !lua_getmetatable(L, idx))
    return NULL;
  luaL_getmetatable(L, tname);
  if (!lua_rawequal(L, -1, -2))
    p = NULL;
  lua_pop(L, 2);
  return p;
}
#endif

/* ---- libcurl ---------------------------------------------------------- */

#define UGEN_CURL_PREREQ(maj, min, pat) \
  (LIBCURL_VERSION_NUM >= (((maj) << 16) | ((min) << 8) | (pat)))

#if !UGEN_CURL_PREREQ(7, 66, 0)
#error "ugen.core needs libcurl 7.66.0 or newer (curl_multi_poll)"
#endif

/* CURLINFO_*_TIME_T and CURLINFO_*_T sizes: 7.61.0 / 7.55.0 */
#define UGEN_HAVE_CURL_TIME_T UGEN_CURL_PREREQ(7, 61, 0)
/* CURLOPT_PROTOCOLS_STR / CURLOPT_REDIR_PROTOCOLS_STR: 7.85.0 */
#define UGEN_HAVE_CURL_PROTOCOLS_STR UGEN_CURL_PREREQ(7, 85, 0)
/* CURL_LOCK_DATA_PSL: 7.61.0 */
#define UGEN_HAVE_CURL_SHARE_PSL UGEN_CURL_PREREQ(7, 61, 0)
/* CURLINFO_HTTP_VERSION: 7.50.0; CURL_HTTP_VERSION_3: 7.66.0 */
#define UGEN_HAVE_CURL_HTTP3 UGEN_CURL_PREREQ(7, 66, 0)
/* CURLMOPT_MAX_CONCURRENT_STREAMS: 7.67.0 */
#define UGEN_HAVE_CURL_MAX_STREAMS UGEN_CURL_PREREQ(7, 67, 0)
/* CURLOPT_PREREQFUNCTION: 7.80.0 */
#define UGEN_HAVE_CURL_PREREQFUNC UGEN_CURL_PREREQ(7, 80, 0)
/* CURLE_SSL_CLIENTCERT: 7.77.0 */
#define UGEN_HAVE_CURLE_SSL_CLIENTCERT UGEN_CURL_PREREQ(7, 77, 0)

/* ---- OpenSSL ---------------------------------------------------------- */

#define UGEN_OPENSSL_PREREQ(maj, min, pat) \
  (OPENSSL_VERSION_NUMBER >= (((maj) << 28) | ((min) << 20) | ((pat) << 4)))

#if !UGEN_OPENSSL_PREREQ(1, 1, 0)
#error "ugen.core needs OpenSSL 1.1.0 or newer"
#endif

/* OpenSSL_version(OPENSSL_VERSION) exists since 1.1.0; OpenSSL 3 keeps it. */
#define UGEN_HAVE_OPENSSL3 UGEN_OPENSSL_PREREQ(3, 0, 0)

#endif /* UGEN_COMPAT_H */
