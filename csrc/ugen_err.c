/*
 * ugen_err.c -- runtime failures as values: `nil, err` where err is a plain
 * table {kind = ..., message = ..., ...}. The Lua layer adds the shared
 * error metatable. Nothing here raises except on out-of-memory.
 */
#include <string.h>

#include <openssl/err.h>

#include "ugen.h"

void ugen_err_new(lua_State *L, const char *kind, const char *msg)
{
  lua_createtable(L, 0, 6);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
}

/* Drains the OpenSSL error queue into one message (the queue is left
 * empty) and returns nil, {kind = "crypto", message = ...}. */
int ugen_err_push_openssl(lua_State *L, const char *what)
{
  luaL_Buffer b;
  unsigned long code;
  int first = 1;
  char line[256];

  lua_pushnil(L);
  luaL_buffinit(L, &b);
  luaL_addstring(&b, what);
  while ((code = ERR_get_error()) != 0) {
    ERR_error_string_n(code, line, sizeof line);
    luaL_addstring(&b, first ? ": " : "; ");
    luaL_addstring(&b, line);
    first = 0;
  }
  if (first)
    luaL_addstring(&b, ": unknown OpenSSL error");
  ERR_clear_error();
  luaL_pushresult(&b);
  ugen_err_new(L, "crypto", lua_tostring(L, -1));
  lua_remove(L, -2);
  return 2;
}

const char *ugen_err_curl_kind(CURLcode code)
{
  switch (code) {
  case CURLE_OPERATION_TIMEDOUT:
    return "timeout";
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_USE_SSL_FAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
#if UGEN_HAVE_CURLE_SSL_CLIENTCERT
  case CURLE_SSL_CLIENTCERT:
#endif
    return "tls";
  default:
    return "network";
  }
}

void ugen_err_new_curl(lua_State *L, CURLcode code, const char *errbuf)
{
  const char *kind = ugen_err_curl_kind(code);
  const char *msg = curl_easy_strerror(code);

  if (errbuf != NULL && errbuf[0] != '\0') {
    size_t n = strlen(errbuf);
    while (n > 0 && (errbuf[n - 1] == '\n' || errbuf[n - 1] == '\r'))
      n--;
    lua_pushfstring(L, "%s: ", msg);
    lua_pushlstring(L, errbuf, n);
    lua_concat(L, 2);
  } else {
    lua_pushstring(L, msg);
  }
  ugen_err_new(L, kind, lua_tostring(L, -1));
  lua_remove(L, -2);
  lua_pushinteger(L, (lua_Integer)code);
  lua_setfield(L, -2, "curl_code");
}
