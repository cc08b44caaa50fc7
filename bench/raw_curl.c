/*
 * bench/raw_curl.c -- the C baseline for bench/http_get.lua: sequential GETs of one URL with
 * ONE reused libcurl easy handle (keep-alive), the body and header lines collected into memory
 * (as the SDK's engine does), status checked.
 *
 *   raw_curl [--cainfo FILE] URL N [HEADER...]    -> prints "raw_curl n=N seconds=S"
 *
 * --cainfo: the CA bundle for an https URL (CURLOPT_CAINFO, as the SDK's cainfo); libcurl's
 * defaults otherwise (HTTP/2 over TLS when the server offers it, the session cache of the handle).
 *
 * Exit 1 on any failed transfer or non-200 status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

typedef struct buf {
  char *p;
  size_t len, cap;
} buf;

static int buf_add(buf *b, const char *p, size_t n)
{
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    char *q;
    while (cap < b->len + n + 1)
      cap *= 2;
    q = realloc(b->p, cap);
    if (q == NULL)
      return 0;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 1;
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
  return buf_add((buf *)ud, p, size * n) ? size * n : 0;
}

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int one(CURL *h, buf *body, buf *hdrs)
{
  long status = 0;
  CURLcode rc;

  body->len = 0;
  hdrs->len = 0;
  rc = curl_easy_perform(h);
  if (rc != CURLE_OK) {
    fprintf(stderr, "raw_curl: %s\n", curl_easy_strerror(rc));
    return 0;
  }
  if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200) {
    fprintf(stderr, "raw_curl: HTTP status %ld\n", status);
    return 0;
  }
  return 1;
}

int main(int argc, char **argv)
{
  CURL *h;
  struct curl_slist *list = NULL;
  buf body = { NULL, 0, 0 }, hdrs = { NULL, 0, 0 };
  long i, n;
  double t0, t1;
  int a, ok = 1;
  const char *cainfo = NULL;

  if (argc >= 3 && strcmp(argv[1], "--cainfo") == 0) {
    cainfo = argv[2];
    argv += 2;
    argc -= 2;
  }
  if (argc < 3) {
    fprintf(stderr, "usage: raw_curl [--cainfo FILE] URL N [HEADER...]\n");
    return 2;
  }
  n = strtol(argv[2], NULL, 10);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return 1;
  h = curl_easy_init();
  if (h == NULL)
    return 1;
  for (a = 3; a < argc; a++) {
    struct curl_slist *l = curl_slist_append(list, argv[a]);
    if (l == NULL)
      return 1;
    list = l;
  }
  if (curl_easy_setopt(h, CURLOPT_URL, argv[1]) != CURLE_OK ||
      curl_easy_setopt(h, CURLOPT_HTTPHEADER, list) != CURLE_OK ||
      curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK ||
      curl_easy_setopt(h, CURLOPT_WRITEDATA, &body) != CURLE_OK ||
      curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_data) != CURLE_OK ||
      curl_easy_setopt(h, CURLOPT_HEADERDATA, &hdrs) != CURLE_OK ||
      curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
      curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "") != CURLE_OK ||
      curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L) != CURLE_OK) {
    fprintf(stderr, "raw_curl: setopt failed\n");
    return 1;
  }
  if (cainfo != NULL && curl_easy_setopt(h, CURLOPT_CAINFO, cainfo) != CURLE_OK) {
    fprintf(stderr, "raw_curl: CURLOPT_CAINFO failed\n");
    return 1;
  }
  for (i = 0; i < 50 && ok; i++) /* warm up: connection, caches */
    ok = one(h, &body, &hdrs);
  t0 = now();
  for (i = 0; i < n && ok; i++)
    ok = one(h, &body, &hdrs);
  t1 = now();
  curl_easy_cleanup(h);
  curl_slist_free_all(list);
  free(body.p);
  free(hdrs.p);
  curl_global_cleanup();
  if (!ok)
    return 1;
  printf("raw_curl n=%ld seconds=%.6f\n", n, t1 - t0);
  return 0;
}
