/*
 * ugen_request.c -- a request table becomes a transfer in the engine's multi
 * handle (ugen_request_new_transfer, for e:submit and e:request): every
 * field is read and checked (raising on programmer errors) before the easy
 * handle is touched, then every option a pooled handle lost in
 * curl_easy_reset is set again, each setopt checked (ugen_request_apply).
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "ugen_engine.h"

#define UGEN_DEFAULT_CONNECT_TIMEOUT 10.0
#define UGEN_DEFAULT_TIMEOUT 60.0
#define UGEN_MAX_REDIRS 5L

/* ceil for 0 <= x <= 1e15 without libm */
static double ugen_request_ceil(double x)
{
  double r = (double)(long long)x;
  return r < x ? r + 1.0 : r;
}

/* ---- request setup ---------------------------------------------------- */


static int ugen_request_field(lua_State *L, int req, const char *k, int type, const char *tname)
{
  int ty;
  lua_getfield(L, req, k);
  ty = lua_type(L, -1);
  if (ty == LUA_TNIL)
    return 0;
  if (ty != type)
    luaL_argerror(L, UGEN_REQ_ARG,
                  lua_pushfstring(L, "req.%s: %s expected, got %s", k, tname, luaL_typename(L, -1)));
  return 1;
}

static double ugen_request_seconds(lua_State *L, int req, const char *k, double dflt)
{
  double s = dflt;
  if (ugen_request_field(L, req, k, LUA_TNUMBER, "number")) {
    s = (double)lua_tonumber(L, -1);
    if (!(s > 0 && s <= 1e7))
      luaL_argerror(L, UGEN_REQ_ARG, lua_pushfstring(L, "req.%s: must be > 0 seconds", k));
  }
  lua_pop(L, 1);
  return s;
}

static curl_off_t ugen_request_count(lua_State *L, int req, const char *k)
{
  curl_off_t v = -1;
  if (ugen_request_field(L, req, k, LUA_TNUMBER, "number")) {
    double d = (double)lua_tonumber(L, -1);
    if (!ugen_engine_is_integer(d))
      luaL_argerror(L, UGEN_REQ_ARG,
                    lua_pushfstring(L, "req.%s: must be a non-negative integer", k));
    v = (curl_off_t)d;
  }
  lua_pop(L, 1);
  return v;
}

static long ugen_request_ms(double s)
{
  double ms = ugen_request_ceil(s * 1000.0);
  return ms < 1 ? 1L : (ms > (double)LONG_MAX ? LONG_MAX : (long)ms);
}

static const char *ugen_request_string(lua_State *L, int req, const char *k, size_t *len)
{
  const char *s = NULL;
  if (ugen_request_field(L, req, k, LUA_TSTRING, "string"))
    s = lua_tolstring(L, -1, len);
  /* the value stays on the stack (pinned) until the caller's settop */
  return s;
}

static int ugen_request_token(const char *s)
{
  static const char extra[] = "!#$%&'*+-.^_`|~";
  if (*s == '\0')
    return 0;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          strchr(extra, c) != NULL))
      return 0;
  }
  return 1;
}

/* "https://..." in any letter case */
static int ugen_request_is_https(const char *url)
{
  static const char https[] = "https://";
  size_t i;
  for (i = 0; i < sizeof https - 1; i++) {
    char c = url[i];
    if (c >= 'A' && c <= 'Z')
      c = (char)(c - 'A' + 'a');
    if (c != https[i])
      return 0;
  }
  return 1;
}

#define UGEN_SETOPT(t, opt, val)                                 \
  do {                                                           \
    CURLcode rc_ = curl_easy_setopt((t)->easy, (opt), (val));    \
    if (rc_ != CURLE_OK)                                         \
      return rc_;                                                \
  } while (0)

/* Applies req (at index req) to t. Raises on programmer errors; returns a
 * CURLcode for libcurl/runtime failures. uv: t's user value table. */
static CURLcode ugen_request_apply(lua_State *L, ugen_engine *e, ugen_transfer *t, int req, int uv)
{
  size_t len = 0, body_len = 0;
  const char *url, *method, *body, *s;
  int has_mime, follow = 0, https;
  double connect_timeout, timeout, low_speed;

  /* read and check every field before touching the handle */
  url = ugen_request_string(L, req, "url", &len);
  if (url == NULL)
    luaL_argerror(L, UGEN_REQ_ARG, "req.url: string expected, got nil");
  if (strlen(url) != len)
    luaL_argerror(L, UGEN_REQ_ARG, "req.url: contains a NUL byte");
  method = ugen_request_string(L, req, "method", &len);
  if (method != NULL && (!ugen_request_token(method) || strlen(method) != len))
    luaL_argerror(L, UGEN_REQ_ARG, "req.method: not an HTTP method token");
  if (ugen_request_field(L, req, "body", LUA_TSTRING, "string")) {
    body = lua_tolstring(L, -1, &body_len);
    lua_rawseti(L, uv, UV_BODY); /* pinned for libcurl */
  } else {
    body = NULL;
    lua_pop(L, 1);
  }
  has_mime = ugen_request_field(L, req, "mime", LUA_TTABLE, "table");
  lua_pop(L, 1);
  if (has_mime && body != NULL)
    luaL_argerror(L, UGEN_REQ_ARG, "req.body and req.mime are mutually exclusive");
  if (method == NULL)
    method = (body != NULL || has_mime) ? "POST" : "GET";
  if (strcmp(method, "HEAD") == 0 && (body != NULL || has_mime))
    luaL_argerror(L, UGEN_REQ_ARG, "req.body: a HEAD request has no body");
  connect_timeout = ugen_request_seconds(L, req, "connect_timeout", UGEN_DEFAULT_CONNECT_TIMEOUT);
  timeout = ugen_request_seconds(L, req, "timeout", UGEN_DEFAULT_TIMEOUT);
  low_speed = ugen_request_seconds(L, req, "low_speed_time", 0.0);
  t->max_body = ugen_request_count(L, req, "max_body");
  t->resume_from = ugen_request_count(L, req, "resume_from");
  if (ugen_request_field(L, req, "output", LUA_TSTRING, "string")) {
    t->out_path = lua_tolstring(L, -1, &len);
    if (strlen(t->out_path) != len)
      luaL_argerror(L, UGEN_REQ_ARG, "req.output: contains a NUL byte");
    lua_rawseti(L, uv, UV_OUTPUT);
  } else {
    lua_pop(L, 1);
  }
  if (t->resume_from >= 0 && t->out_path == NULL)
    luaL_argerror(L, UGEN_REQ_ARG, "req.resume_from needs req.output");
  if (t->resume_from == 0)
    t->resume_from = -1;
  lua_getfield(L, req, "follow");
  follow = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (ugen_request_field(L, req, "idempotent", LUA_TBOOLEAN, "boolean"))
    t->once = !lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (ugen_request_field(L, req, "timing", LUA_TBOOLEAN, "boolean"))
    t->timing = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (ugen_request_field(L, req, "on_progress", LUA_TFUNCTION, "function")) {
    lua_rawseti(L, uv, UV_PROGRESS);
    t->has_progress = 1;
  } else {
    lua_pop(L, 1);
  }
  /* headers: a list of "Name: value" strings */
  if (ugen_request_field(L, req, "headers", LUA_TTABLE, "table")) {
    int hi, hn = (int)ugen_rawlen(L, -1);
    for (hi = 1; hi <= hn; hi++) {
      struct curl_slist *l;
      size_t hl;
      const char *h;
      lua_rawgeti(L, -1, hi);
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_argerror(L, UGEN_REQ_ARG,
                      lua_pushfstring(L, "req.headers[%d]: string expected, got %s", hi,
                                      luaL_typename(L, -1)));
      h = lua_tolstring(L, -1, &hl);
      if (strlen(h) != hl || strchr(h, '\r') != NULL || strchr(h, '\n') != NULL)
        luaL_argerror(L, UGEN_REQ_ARG,
                      lua_pushfstring(L, "req.headers[%d]: contains CR, LF or NUL", hi));
      l = curl_slist_append(t->headers, h); /* copies h */
      if (l == NULL)
        luaL_error(L, "not enough memory");
      t->headers = l;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);

  /* the handle: everything a pooled handle lost in curl_easy_reset */
  UGEN_SETOPT(t, CURLOPT_PRIVATE, (void *)t);
  UGEN_SETOPT(t, CURLOPT_NOSIGNAL, 1L);
  UGEN_SETOPT(t, CURLOPT_SHARE, e->share);
  UGEN_SETOPT(t, CURLOPT_ERRORBUFFER, t->errbuf);
  UGEN_SETOPT(t, CURLOPT_WRITEFUNCTION, ugen_transfer_write_cb);
  UGEN_SETOPT(t, CURLOPT_WRITEDATA, (void *)t);
  UGEN_SETOPT(t, CURLOPT_HEADERFUNCTION, ugen_transfer_header_cb);
  UGEN_SETOPT(t, CURLOPT_HEADERDATA, (void *)t);
  UGEN_SETOPT(t, CURLOPT_XFERINFOFUNCTION, ugen_transfer_xferinfo_cb);
  UGEN_SETOPT(t, CURLOPT_XFERINFODATA, (void *)t);
  UGEN_SETOPT(t, CURLOPT_NOPROGRESS, 0L);
  UGEN_SETOPT(t, CURLOPT_SSL_VERIFYPEER, 1L);
  UGEN_SETOPT(t, CURLOPT_SSL_VERIFYHOST, 2L);
#if UGEN_HAVE_CURL_PROTOCOLS_STR
  UGEN_SETOPT(t, CURLOPT_PROTOCOLS_STR, "http,https");
  UGEN_SETOPT(t, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
  UGEN_SETOPT(t, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
  UGEN_SETOPT(t, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  UGEN_SETOPT(t, CURLOPT_ACCEPT_ENCODING, "");
  UGEN_SETOPT(t, CURLOPT_TCP_KEEPALIVE, 1L);
  UGEN_SETOPT(t, CURLOPT_URL, url);
  UGEN_SETOPT(t, CURLOPT_CONNECTTIMEOUT_MS, ugen_request_ms(connect_timeout));
  UGEN_SETOPT(t, CURLOPT_TIMEOUT_MS, ugen_request_ms(timeout));
  if (low_speed > 0) {
    UGEN_SETOPT(t, CURLOPT_LOW_SPEED_LIMIT, 1L);
    UGEN_SETOPT(t, CURLOPT_LOW_SPEED_TIME, (long)ugen_request_ceil(low_speed));
  }
  if ((s = ugen_request_string(L, req, "cainfo", &len)) != NULL)
    UGEN_SETOPT(t, CURLOPT_CAINFO, s); /* libcurl copies strings */
  if ((s = ugen_request_string(L, req, "capath", &len)) != NULL)
    UGEN_SETOPT(t, CURLOPT_CAPATH, s);
  https = ugen_request_is_https(url);
  t->plain = !(https && e->has_h2);
  if (!t->plain) {
    /* HTTP/2 when the server offers it (libcurl's default since 7.62, said
     * here), HTTP/1.1 otherwise. Started while a connection to the origin is
     * being set up, wait for it to tell whether it multiplexes rather than
     * open another: 1,000 requests started together share a few connections. */
    UGEN_SETOPT(t, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    UGEN_SETOPT(t, CURLOPT_PIPEWAIT, 1L);
  }
  if (t->once) {
    /* Not idempotent: libcurl must not send it twice (ugen_transfer_prereq_cb).
     * Over plain HTTP (HTTP/1.1) it also takes a new connection: a kept-alive
     * one may be closed by the server just as the request goes out, and then
     * the request would fail for nothing; a new connection costs no TLS
     * handshake. Over https it shares the multiplexed connections like any
     * request (a fresh connection would be joined by other streams anyway). */
#if UGEN_HAVE_CURL_PREREQFUNC
    UGEN_SETOPT(t, CURLOPT_PREREQFUNCTION, ugen_transfer_prereq_cb);
    UGEN_SETOPT(t, CURLOPT_PREREQDATA, (void *)t);
    if (!https)
      UGEN_SETOPT(t, CURLOPT_FRESH_CONNECT, 1L);
#else
    /* no prereq callback before 7.80: a fresh connection is never re-sent on
     * HTTP/1.1 (on HTTP/2 only while no other transfer joins it) */
    UGEN_SETOPT(t, CURLOPT_FRESH_CONNECT, 1L);
#endif
  }
  if (follow) {
    UGEN_SETOPT(t, CURLOPT_FOLLOWLOCATION, 1L);
    UGEN_SETOPT(t, CURLOPT_MAXREDIRS, UGEN_MAX_REDIRS);
    /* a request made over TLS is never redirected off it (https -> http) */
    if (ugen_request_is_https(url)) {
      t->https_only = 1;
#if UGEN_HAVE_CURL_PROTOCOLS_STR
      UGEN_SETOPT(t, CURLOPT_REDIR_PROTOCOLS_STR, "https");
#else
      UGEN_SETOPT(t, CURLOPT_REDIR_PROTOCOLS, (long)CURLPROTO_HTTPS);
#endif
    }
  }
  if (t->resume_from > 0)
    UGEN_SETOPT(t, CURLOPT_RESUME_FROM_LARGE, t->resume_from);
  if (t->max_body >= 0 && t->out_path == NULL)
    UGEN_SETOPT(t, CURLOPT_MAXFILESIZE_LARGE, t->max_body);
  if (t->headers != NULL)
    UGEN_SETOPT(t, CURLOPT_HTTPHEADER, t->headers);

  /* method and body */
  if (has_mime) {
    CURLcode rc;
    lua_getfield(L, req, "mime");
    rc = ugen_mime_build(L, lua_gettop(L), t->easy, &t->mime, t->msg);
    lua_pop(L, 1);
    if (rc != CURLE_OK)
      return rc;
    UGEN_SETOPT(t, CURLOPT_MIMEPOST, t->mime);
    if (strcmp(method, "POST") != 0)
      UGEN_SETOPT(t, CURLOPT_CUSTOMREQUEST, method);
  } else if (strcmp(method, "GET") == 0 && body == NULL) {
    UGEN_SETOPT(t, CURLOPT_HTTPGET, 1L);
  } else if (strcmp(method, "HEAD") == 0) {
    UGEN_SETOPT(t, CURLOPT_NOBODY, 1L);
  } else {
    if (body == NULL && (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                         strcmp(method, "PATCH") == 0)) {
      body = ""; /* explicit empty body: Content-Length: 0 */
      body_len = 0;
    }
    if (body != NULL) {
      UGEN_SETOPT(t, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
      UGEN_SETOPT(t, CURLOPT_POSTFIELDS, body);
    }
    if (strcmp(method, "POST") != 0)
      UGEN_SETOPT(t, CURLOPT_CUSTOMREQUEST, method);
  }
  return CURLE_OK;
}

/* ---- the new transfer ------------------------------------------------ */

/* Creates a transfer for the request table at index 2 of the engine at
 * index 1, leaves it on the stack and returns it. Raises on programmer
 * errors. A runtime setup failure gives a transfer that is already done
 * (its result is the error). */
ugen_transfer *ugen_request_new_transfer(lua_State *L, ugen_engine *e, int sync)
{
  ugen_transfer *t;
  int tidx, uv;
  CURLcode rc;

  luaL_checktype(L, UGEN_REQ_ARG, LUA_TTABLE);
  luaL_checkstack(L, 40, "ugen.engine");
  t = (ugen_transfer *)ugen_newuserdata(L, sizeof *t);
  memset(t, 0, sizeof *t);
  t->fd = -1;
  t->resume_from = -1;
  t->max_body = -1;
  t->state = T_NEW;
  t->sync = sync;
  tidx = lua_gettop(L);
  lua_createtable(L, UV_SLOTS, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, UV_ENGINE);
  ugen_setuservalue(L, tidx);
  luaL_getmetatable(L, UGEN_TRANSFER_CLASS);
  lua_setmetatable(L, tidx);

  t->easy = ugen_engine_acquire(e);
  if (t->easy == NULL)
    luaL_error(L, "not enough memory (curl_easy_init)");
  t->engine = e;
  ugen_engine_link_active(e, t);

  ugen_getuservalue(L, tidx);
  uv = lua_gettop(L);
  rc = ugen_request_apply(L, e, t, UGEN_REQ_ARG, uv);
  lua_settop(L, tidx);
  if (rc == CURLE_OK) {
    CURLMcode mc;
    /* an HTTP/1.1 transfer raises the per-host limit before libcurl sees it */
    e->nplain += t->plain;
    mc = ugen_engine_host_limit(e);
    if (mc == CURLM_OK)
      mc = curl_multi_add_handle(e->multi, t->easy);
    if (mc != CURLM_OK) {
      e->nplain -= t->plain;
      rc = CURLE_FAILED_INIT;
      (void)snprintf(t->msg, sizeof t->msg, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
    }
  }
  /* anchor: the engine keeps t alive until e:run hands it out */
  ugen_getuservalue(L, 1);
  lua_pushvalue(L, tidx);
  ugen_rawsetp(L, -2, t);
  lua_pop(L, 1);
  t->anchored = 1;
  if (rc != CURLE_OK) {
    t->code = rc;
    if (t->fail == F_NONE)
      t->fail = F_SETUP;
    ugen_engine_drop_easy(e, t);
    ugen_engine_unlink(e, t, 0);
    t->state = T_DONE;
    if (!sync)
      ugen_engine_push_done(e, t);
    return t;
  }
  t->in_multi = 1;
  t->state = T_RUNNING;
  e->inflight++;
  return t;
}
