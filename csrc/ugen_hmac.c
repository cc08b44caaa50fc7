/*
 * ugen_hmac.c -- HMAC-SHA256: one-shot (core.hmac_sha256), keyed objects
 * (core.hmac_key, class ugen.hmac_key: the key schedule computed once and
 * reused, as a webhook receiver checks every delivery with the same secret),
 * and the constant-time compare that checks a MAC (core.consteq).
 */
#include <limits.h>
#include <string.h>

#include "ugen.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#if UGEN_HAVE_OPENSSL3
#include <openssl/core_names.h>
#include <openssl/params.h>
#endif

/* core.hmac_sha256(key, msg [, raw]) -> hex | raw bytes | nil, err */
static int ugen_hmac_sha256(lua_State *L)
{
  size_t klen, mlen;
  const char *key = luaL_checklstring(L, 1, &klen);
  const char *msg = luaL_checklstring(L, 2, &mlen);
  int raw = lua_toboolean(L, 3);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  char hex[2 * EVP_MAX_MD_SIZE];

  if (klen > (size_t)INT_MAX)
    return luaL_argerror(L, 1, "key too long");
  ERR_clear_error();
  if (HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, md, &mdlen) == NULL ||
      mdlen != 32)
    return ugen_err_push_openssl(L, "HMAC-SHA256 failed");
  if (raw) {
    lua_pushlstring(L, (const char *)md, mdlen);
  } else {
    ugen_hex(md, mdlen, hex);
    lua_pushlstring(L, hex, 2 * (size_t)mdlen);
  }
  OPENSSL_cleanse(md, sizeof md);
  return 1;
}

/* ---- keyed HMAC-SHA256: core.hmac_key(key) -> K ----------------------------
 * K holds an OpenSSL MAC context initialised once with the key; every K:hex()
 * re-initialises it with the same key (no key schedule, no algorithm fetch),
 * which is what makes a webhook check cheaper than one-shot HMAC(). The key
 * bytes themselves are not kept by us (OpenSSL keeps its padded copies and
 * cleanses them when the context is freed). */
typedef struct ugen_hmac_key {
#if UGEN_HAVE_OPENSSL3
  EVP_MAC *mac;
  EVP_MAC_CTX *ctx;
#else
  HMAC_CTX *ctx;
#endif
  int closed;
} ugen_hmac_key;

static ugen_hmac_key *ugen_hmac_key_check(lua_State *L)
{
  ugen_hmac_key *k = (ugen_hmac_key *)luaL_checkudata(L, 1, UGEN_HMAC_KEY_CLASS);
  if (k->closed)
    luaL_error(L, UGEN_HMAC_KEY_CLASS ": handle is closed");
  return k;
}

/* frees (and so cleanses) the context; idempotent */
static void ugen_hmac_key_free(ugen_hmac_key *k)
{
#if UGEN_HAVE_OPENSSL3
  EVP_MAC_CTX_free(k->ctx); /* NULL-safe */
  EVP_MAC_free(k->mac);
  k->mac = NULL;
#else
  HMAC_CTX_free(k->ctx);
#endif
  k->ctx = NULL;
  k->closed = 1;
}

/* K:close() / __gc / __close */
static int ugen_hmac_key_close(lua_State *L)
{
  ugen_hmac_key_free((ugen_hmac_key *)luaL_checkudata(L, 1, UGEN_HMAC_KEY_CLASS));
  return 0;
}

static int ugen_hmac_key_tostring(lua_State *L)
{
  ugen_hmac_key *k = (ugen_hmac_key *)luaL_checkudata(L, 1, UGEN_HMAC_KEY_CLASS);
  if (k->closed)
    lua_pushliteral(L, UGEN_HMAC_KEY_CLASS " (closed)");
  else
    lua_pushfstring(L, UGEN_HMAC_KEY_CLASS " (%p)", (void *)k);
  return 1;
}

/* core.hmac_key(key) -> K | nil, err (kind "crypto") */
static int ugen_hmac_key_new(lua_State *L)
{
  size_t klen;
  const char *key = luaL_checklstring(L, 1, &klen);
  ugen_hmac_key *k;
  int ok;

  luaL_argcheck(L, klen > 0, 1, "key is empty");
  luaL_argcheck(L, klen <= (size_t)INT_MAX, 1, "key too long");
  /* the userdata first, with its metatable: __gc frees whatever exists if a
   * later step fails or raises (out of memory) */
  k = (ugen_hmac_key *)lua_newuserdata(L, sizeof *k);
  memset(k, 0, sizeof *k);
  luaL_getmetatable(L, UGEN_HMAC_KEY_CLASS);
  lua_setmetatable(L, -2);
  ERR_clear_error();
#if UGEN_HAVE_OPENSSL3
  {
    OSSL_PARAM params[2];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    k->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    k->ctx = k->mac != NULL ? EVP_MAC_CTX_new(k->mac) : NULL;
    ok = k->ctx != NULL && EVP_MAC_init(k->ctx, (const unsigned char *)key, klen, params) == 1;
  }
#else
  k->ctx = HMAC_CTX_new();
  ok = k->ctx != NULL && HMAC_Init_ex(k->ctx, key, (int)klen, EVP_sha256(), NULL) == 1;
#endif
  if (!ok) {
    ugen_hmac_key_free(k);
    return ugen_err_push_openssl(L, "HMAC-SHA256 key setup failed");
  }
  return 1;
}

/* K:hex(part, ...) -> lowercase hex HMAC-SHA256 of the concatenated parts |
 * nil, err (kind "crypto"). Every part is checked before the MAC starts. */
static int ugen_hmac_key_hex(lua_State *L)
{
  ugen_hmac_key *k = ugen_hmac_key_check(L);
  int i, n = lua_gettop(L), ok;
  unsigned char md[EVP_MAX_MD_SIZE];
  char hex[2 * EVP_MAX_MD_SIZE];

  for (i = 2; i <= n; i++)
    luaL_checktype(L, i, LUA_TSTRING);
  ERR_clear_error();
#if UGEN_HAVE_OPENSSL3
  {
    size_t mdlen = 0;
    ok = EVP_MAC_init(k->ctx, NULL, 0, NULL) == 1; /* same key again */
    for (i = 2; ok && i <= n; i++) {
      size_t len;
      const char *p = lua_tolstring(L, i, &len);
      ok = EVP_MAC_update(k->ctx, (const unsigned char *)p, len) == 1;
    }
    ok = ok && EVP_MAC_final(k->ctx, md, &mdlen, sizeof md) == 1 && mdlen == 32;
  }
#else
  {
    unsigned int mdlen = 0;
    ok = HMAC_Init_ex(k->ctx, NULL, 0, NULL, NULL) == 1; /* same key again */
    for (i = 2; ok && i <= n; i++) {
      size_t len;
      const char *p = lua_tolstring(L, i, &len);
      ok = HMAC_Update(k->ctx, (const unsigned char *)p, len) == 1;
    }
    ok = ok && HMAC_Final(k->ctx, md, &mdlen) == 1 && mdlen == 32;
  }
#endif
  if (!ok)
    return ugen_err_push_openssl(L, "HMAC-SHA256 failed");
  ugen_hex(md, 32, hex); /* a MAC is not secret: no cleansing needed */
  lua_pushlstring(L, hex, 64);
  return 1;
}

static const luaL_Reg ugen_hmac_key_methods[] = {
  { "hex", ugen_hmac_key_hex },
  { "close", ugen_hmac_key_close },
  { NULL, NULL },
};

static const luaL_Reg ugen_hmac_key_meta[] = {
  { "__gc", ugen_hmac_key_close },
  { "__close", ugen_hmac_key_close },
  { "__tostring", ugen_hmac_key_tostring },
  { NULL, NULL },
};

/* core.consteq(a, b) -> boolean. Only the lengths may leak through
 * timing: equal-length inputs are compared with CRYPTO_memcmp. */
static int ugen_hmac_consteq(lua_State *L)
{
  size_t alen, blen;
  const char *a = luaL_checklstring(L, 1, &alen);
  const char *b = luaL_checklstring(L, 2, &blen);

  if (alen != blen)
    lua_pushboolean(L, 0);
  else
    lua_pushboolean(L, alen == 0 || CRYPTO_memcmp(a, b, alen) == 0);
  return 1;
}

static const luaL_Reg ugen_hmac_funcs[] = {
  { "hmac_sha256", ugen_hmac_sha256 },
  { "consteq", ugen_hmac_consteq },
  { "hmac_key", ugen_hmac_key_new },
  { NULL, NULL },
};

void ugen_hmac_register(lua_State *L)
{
  ugen_class(L, UGEN_HMAC_KEY_CLASS, ugen_hmac_key_meta, ugen_hmac_key_methods);
  ugen_setfuncs(L, ugen_hmac_funcs);
}
