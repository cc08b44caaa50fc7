/*
 * ugen_random.c -- core.random_bytes(n): bytes from the OpenSSL CSPRNG
 * (idempotency keys, uuid4, webhook secrets, multipart boundaries).
 */
#include "ugen.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#define UGEN_RANDOM_MAX (1024 * 1024)

/* core.random_bytes(n) -> n bytes | nil, err (kind "crypto");
 * raises unless 1 <= n <= UGEN_RANDOM_MAX */
static int ugen_random_bytes(lua_State *L)
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

static const luaL_Reg ugen_random_funcs[] = {
  { "random_bytes", ugen_random_bytes },
  { NULL, NULL },
};

void ugen_random_register(lua_State *L)
{
  ugen_setfuncs(L, ugen_random_funcs);
}
