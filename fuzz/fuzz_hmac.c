/*
 * fuzz/fuzz_hmac.c -- libFuzzer target for the C core's crypto entry points as Lua calls them
 * (the values come from outside: webhook secrets, timestamps, bodies and signature headers):
 * core.hmac_sha256(key, msg [, raw]), core.consteq(a, b), core.hex(s), the webhook check
 * shape consteq(hmac_sha256(secret, ts .. "." .. body), signature), and keyed HMAC objects
 * (core.hmac_key(secret):hex(part, ...), reused, then closed: what ugen.webhook.verify runs). The whole core
 * (every csrc .c file) is compiled with the sanitizers and loaded into a real Lua 5.4 state through
 * luaopen_ugen_core; each call runs under lua_pcall.
 *
 * Input: byte 0 = operation, bytes 1-2 = split point; the rest is cut there into two strings.
 * Checked against OpenSSL called directly: HMAC hex == hex(raw) == HMAC(); consteq(a, b) ==
 * (a equals b); consteq(a, a); hex is 2n lowercase digits; the webhook check accepts exactly
 * the right signature; a keyed object gives HMAC() of the concatenated parts on every reuse.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/hmac.h>
#include <openssl/evp.h>

#include "ugen.h"
#include <lualib.h>

#define CHECK(c)                                                                 \
  do {                                                                           \
    if (!(c)) {                                                                  \
      fprintf(stderr, "fuzz_hmac: invariant failed: %s (line %d)\n", #c, __LINE__); \
      abort();                                                                   \
    }                                                                            \
  } while (0)

static lua_State *L;
static int core_ref = LUA_NOREF;

static void tohex(const unsigned char *in, size_t n, char *out)
{
  static const char d[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = d[in[i] >> 4];
    out[2 * i + 1] = d[in[i] & 15];
  }
}

/* core[name](args on the stack...) -> nres results, or abort on a Lua error */
static void call(const char *name, int nargs, int nres)
{
  int base = lua_gettop(L) - nargs;
  lua_rawgeti(L, LUA_REGISTRYINDEX, core_ref);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  lua_insert(L, base + 1);
  if (lua_pcall(L, nargs, nres, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_hmac: core.%s raised: %s\n", name, lua_tostring(L, -1));
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const char *a, *b;
  size_t alen, blen, cut;
  int op;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  char hex[64];

  if (L == NULL) {
    L = luaL_newstate();
    CHECK(L != NULL);
    luaL_openlibs(L);
    luaopen_ugen_core(L);
    core_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (size < 3)
    return 0;
  op = data[0] % 5;
  cut = ((size_t)data[1] << 8 | data[2]) % (size - 2);
  a = (const char *)data + 3;
  alen = cut;
  b = a + cut;
  blen = size - 3 - cut;

  switch (op) {
  case 0: { /* hmac_sha256(a, b) hex and raw vs OpenSSL */
    const char *h, *r;
    size_t hl, rl;
    lua_pushlstring(L, a, alen);
    lua_pushlstring(L, b, blen);
    call("hmac_sha256", 2, 1);
    lua_pushlstring(L, a, alen);
    lua_pushlstring(L, b, blen);
    lua_pushboolean(L, 1);
    call("hmac_sha256", 3, 1);
    h = lua_tolstring(L, -2, &hl);
    r = lua_tolstring(L, -1, &rl);
    CHECK(h != NULL && r != NULL && hl == 64 && rl == 32);
    CHECK(HMAC(EVP_sha256(), a, (int)alen, (const unsigned char *)b, blen, md, &mdlen) != NULL && mdlen == 32);
    CHECK(memcmp(r, md, 32) == 0);
    tohex(md, 32, hex);
    CHECK(memcmp(h, hex, 64) == 0);
    lua_pop(L, 2);
    break;
  }
  case 1: { /* consteq(a, b) == (a == b); consteq(a, a) */
    int eq = alen == blen && memcmp(a, b, alen) == 0;
    lua_pushlstring(L, a, alen);
    lua_pushlstring(L, b, blen);
    call("consteq", 2, 1);
    CHECK(lua_isboolean(L, -1) && lua_toboolean(L, -1) == eq);
    lua_pop(L, 1);
    lua_pushlstring(L, a, alen);
    lua_pushlstring(L, a, alen);
    call("consteq", 2, 1);
    CHECK(lua_toboolean(L, -1) == 1);
    lua_pop(L, 1);
    break;
  }
  case 2: { /* hex(a .. b) */
    const char *h;
    size_t hl, i, n = alen + blen;
    lua_pushlstring(L, a, n);
    call("hex", 1, 1);
    h = lua_tolstring(L, -1, &hl);
    CHECK(h != NULL && hl == 2 * n);
    for (i = 0; i < hl; i++)
      CHECK((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f'));
    for (i = 0; i < n; i++) {
      char two[2];
      tohex((const unsigned char *)a + i, 1, two);
      CHECK(h[2 * i] == two[0] && h[2 * i + 1] == two[1]);
    }
    lua_pop(L, 1);
    break;
  }
  case 3: { /* the webhook check: secret = a, "ts.body" = b, signature = first 64 bytes of b */
    size_t sl = blen < 64 ? blen : 64;
    int want;
    if (alen == 0)
      break;
    CHECK(HMAC(EVP_sha256(), a, (int)alen, (const unsigned char *)b, blen, md, &mdlen) != NULL);
    tohex(md, 32, hex);
    want = sl == 64 && memcmp(hex, b, 64) == 0;
    lua_pushlstring(L, a, alen);
    lua_pushlstring(L, b, blen);
    call("hmac_sha256", 2, 1);
    lua_pushlstring(L, b, sl);
    call("consteq", 2, 1);
    CHECK(lua_toboolean(L, -1) == want);
    lua_pop(L, 1);
    /* and the right signature is always accepted */
    lua_pushlstring(L, a, alen);
    lua_pushlstring(L, b, blen);
    call("hmac_sha256", 2, 1);
    lua_pushlstring(L, hex, 64);
    call("consteq", 2, 1);
    CHECK(lua_toboolean(L, -1) == 1);
    lua_pop(L, 1);
    break;
  }
  default: { /* keyed: k = hmac_key(a); k:hex(b[0, half), ".", b[half, n)) twice == HMAC(a, b1 . b2) */
    size_t half = blen / 2, round;
    unsigned char *msg;
    const char *h;
    size_t hl;
    if (alen == 0)
      break;
    msg = (unsigned char *)malloc(blen + 1);
    CHECK(msg != NULL);
    memcpy(msg, b, half);
    msg[half] = '.';
    memcpy(msg + half + 1, b + half, blen - half);
    CHECK(HMAC(EVP_sha256(), a, (int)alen, msg, blen + 1, md, &mdlen) != NULL && mdlen == 32);
    free(msg);
    tohex(md, 32, hex);
    lua_pushlstring(L, a, alen);
    call("hmac_key", 1, 1);
    CHECK(lua_isuserdata(L, -1));
    for (round = 0; round < 2; round++) {
      lua_getfield(L, -1, "hex");
      lua_pushvalue(L, -2);
      lua_pushlstring(L, b, half);
      lua_pushliteral(L, ".");
      lua_pushlstring(L, b + half, blen - half);
      CHECK(lua_pcall(L, 4, 1, 0) == LUA_OK);
      h = lua_tolstring(L, -1, &hl);
      CHECK(h != NULL && hl == 64 && memcmp(h, hex, 64) == 0);
      lua_pop(L, 1);
    }
    lua_getfield(L, -1, "close");
    lua_pushvalue(L, -2);
    CHECK(lua_pcall(L, 1, 0, 0) == LUA_OK);
    lua_pop(L, 1);
    break;
  }
  }
  CHECK(lua_gettop(L) == 0);
  return 0;
}
