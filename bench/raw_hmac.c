/*
 * bench/raw_hmac.c -- the C baseline for bench/webhook.lua: what a webhook check costs in plain
 * C with OpenSSL: build "timestamp.body", HMAC-SHA256 it with the secret, hex-encode, compare
 * with the received signature in constant time (CRYPTO_memcmp).
 *
 *   raw_hmac N BODY_BYTES [keyed]   -> prints "raw_hmac n=N seconds=S"
 *
 * Default: one-shot HMAC() per check (what a plain C receiver writes). With "keyed": one
 * EVP_MAC context set up with the key once and re-initialised per check (the same technique as
 * the SDK's ugen.hmac_key), the fastest C we know for this check.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time, as bench/webhook.lua measures */
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void tohex(const unsigned char *in, size_t n, char *out)
{
  static const char d[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = d[in[i] >> 4];
    out[2 * i + 1] = d[in[i] & 15];
  }
}

/* one verification; returns 1 when sig matches */
static int verify(const char *secret, const char *ts, const char *body, size_t blen, const char *sig,
                  char *msg)
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  char hex[64];
  size_t tl = strlen(ts);

  memcpy(msg, ts, tl);
  msg[tl] = '.';
  memcpy(msg + tl + 1, body, blen);
  if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg, tl + 1 + blen, md,
           &mdlen) == NULL || mdlen != 32)
    return 0;
  tohex(md, 32, hex);
  return CRYPTO_memcmp(hex, sig, 64) == 0;
}

/* the same check with a pre-keyed EVP_MAC context */
static int verify_keyed(EVP_MAC_CTX *ctx, const char *ts, const char *body, size_t blen, const char *sig)
{
  unsigned char md[EVP_MAX_MD_SIZE];
  size_t mdlen = 0;
  char hex[64];

  if (EVP_MAC_init(ctx, NULL, 0, NULL) != 1 || EVP_MAC_update(ctx, (const unsigned char *)ts, strlen(ts)) != 1 ||
      EVP_MAC_update(ctx, (const unsigned char *)".", 1) != 1 ||
      EVP_MAC_update(ctx, (const unsigned char *)body, blen) != 1 ||
      EVP_MAC_final(ctx, md, &mdlen, sizeof md) != 1 || mdlen != 32)
    return 0;
  tohex(md, 32, hex);
  return CRYPTO_memcmp(hex, sig, 64) == 0;
}

int main(int argc, char **argv)
{
  const char *secret = "whsec_0123456789abcdef0123456789abcdef";
  const char *ts = "1767225600";
  long i, n, ok = 0;
  size_t blen;
  char *body, *msg, sig[65];
  double t0, t1;

  if (argc < 3) {
    fprintf(stderr, "usage: raw_hmac N BODY_BYTES\n");
    return 2;
  }
  n = strtol(argv[1], NULL, 10);
  blen = (size_t)strtol(argv[2], NULL, 10);
  body = malloc(blen + 1);
  msg = malloc(blen + 64);
  if (body == NULL || msg == NULL)
    return 1;
  for (i = 0; i < (long)blen; i++)
    body[i] = (char)('a' + i % 26);
  {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t tl = strlen(ts);
    memcpy(msg, ts, tl);
    msg[tl] = '.';
    memcpy(msg + tl + 1, body, blen);
    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg, tl + 1 + blen, md,
             &mdlen) == NULL)
      return 1;
    tohex(md, 32, sig);
    sig[64] = '\0';
  }
  if (argc > 3 && strcmp(argv[3], "keyed") == 0) {
    OSSL_PARAM params[2];
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (ctx == NULL || EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) != 1)
      return 1;
    t0 = now();
    for (i = 0; i < n; i++)
      ok += verify_keyed(ctx, ts, body, blen, sig);
    t1 = now();
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
  } else {
    t0 = now();
    for (i = 0; i < n; i++)
      ok += verify(secret, ts, body, blen, sig, msg);
    t1 = now();
  }
  free(body);
  free(msg);
  if (ok != n) {
    fprintf(stderr, "raw_hmac: %ld of %ld failed\n", n - ok, n);
    return 1;
  }
  printf("raw_hmac n=%ld seconds=%.6f\n", n, t1 - t0);
  return 0;
}
