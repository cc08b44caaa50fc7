/*
 * ugen_hmac.c -- HMAC-SHA256 (one-shot HMAC(), caller-supplied output
 * buffer), constant-time compare, CSPRNG bytes and hex encoding.
 */
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "ugen.h"

#define UGEN_RANDOM_MAX (1024 * 1024)

void ugen_hmac_tohex(const unsigned char *in, size_t n, char *out)
{
  static const char digits[] = "0123456789abcdef";
  size_t i;

  for (i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 0x0f];
  }
}

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
    ugen_hmac_tohex(md, mdlen, hex);
    lua_pushlstring(L, hex, 2 * (size_t)mdlen);
  }
  OPENSSL_cleanse(md, sizeof md);
  return 1;
}

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

/* core.random_bytes(n) -> n bytes | nil, err */
static int ugen_hmac_random_bytes(lua_State *L)
{
  lua_Integer n = luaL_checkinteger(L, 1);
  unsigned char small[256];
  unsigned char *buf = small;

  luaL_argcheck(L, n >= 1 && n <= UGEN_RANDOM_MAX, 1, "must be between 1 and 1048576");
  if ((size_t)n > sizeof small)
    buf = (unsigned char *)lua_newuserdata(L, (size_t)n); /* Lua-owned scratch */
  ERR_clear_error();
  if (RAND_bytes(buf, (int)n) != 1)
    return ugen_err_push_openssl(L, "RAND_bytes failed");
  lua_pushlstring(L, (const char *)buf, (size_t)n);
  OPENSSL_cleanse(buf, (size_t)n);
  return 1;
}

/* core.hex(s) -> lowercase hex */
static int ugen_hmac_hex(lua_State *L)
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
    ugen_hmac_tohex(s + i, chunk, p);
    luaL_addsize(&b, 2 * chunk);
    i += chunk;
  }
  luaL_pushresult(&b);
  return 1;
}

static const luaL_Reg ugen_hmac_funcs[] = {
  { "hmac_sha256", ugen_hmac_sha256 },
  { "consteq", ugen_hmac_consteq },
  { "random_bytes", ugen_hmac_random_bytes },
  { "hex", ugen_hmac_hex },
  { NULL, NULL },
};

void ugen_hmac_register(lua_State *L)
{
  ugen_setfuncs(L, ugen_hmac_funcs);
}
