/*
 * ugen_result.c -- what a finished transfer returns: the values copied out
 * of its easy handle when it finishes (ugen_result_capture), then, on
 * t:result() or e:request, the res table or nil and an err table
 * (ugen_result_push).
 */
#include <string.h>

#include "ugen_engine.h"

/* ---- captured when the transfer finishes ------------------------------ */

/* a CURLINFO_*_TIME_T value in microseconds, -1 when libcurl cannot give it */
static curl_off_t ugen_result_info_time(CURL *easy, CURLINFO info)
{
  curl_off_t v = 0;
  if (curl_easy_getinfo(easy, info, &v) != CURLE_OK || v < 0)
    v = -1;
  return v;
}

/* Copies everything result() needs out of the easy handle (the timings only
 * when the request asked for them: req.timing). */
void ugen_result_capture(ugen_transfer *t)
{
  CURL *easy = t->easy;
  long status = 0, version = 0, reqsize = 0, hdrsize = 0;
  char *url = NULL;

  if (curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
    status = 0;
  if (curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version) != CURLE_OK)
    version = 0;
  if (curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &reqsize) != CURLE_OK)
    reqsize = 0;
  if (curl_easy_getinfo(easy, CURLINFO_HEADER_SIZE, &hdrsize) != CURLE_OK)
    hdrsize = 0;
  t->status = status;
  t->http_version = version;
  t->sent = t->fail == F_RESEND || reqsize > 0 || hdrsize > 0 || status > 0 || t->ulnow > 0;
  if (t->timing) {
    long n = 0;
    t->t_namelookup = ugen_result_info_time(easy, CURLINFO_NAMELOOKUP_TIME_T);
    t->t_connect = ugen_result_info_time(easy, CURLINFO_CONNECT_TIME_T);
    t->t_appconnect = ugen_result_info_time(easy, CURLINFO_APPCONNECT_TIME_T);
    t->t_pretransfer = ugen_result_info_time(easy, CURLINFO_PRETRANSFER_TIME_T);
    t->t_starttransfer = ugen_result_info_time(easy, CURLINFO_STARTTRANSFER_TIME_T);
    t->t_total = ugen_result_info_time(easy, CURLINFO_TOTAL_TIME_T);
    t->t_redirect = ugen_result_info_time(easy, CURLINFO_REDIRECT_TIME_T);
    if (curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &n) != CURLE_OK || n < 0)
      n = -1;
    t->nconnects = n;
  }
  t->url.len = 0;
  if (curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK && url != NULL &&
      t->engine != NULL)
    (void)ugen_transfer_buf_add(t->engine, &t->url, url, strlen(url));
}

/* ---- results ---------------------------------------------------------- */

/* timing[k] = seconds; left out when libcurl could not measure it */
static void ugen_result_set_time(lua_State *L, const char *k, curl_off_t us)
{
  if (us < 0)
    return;
  lua_pushnumber(L, (lua_Number)us / 1e6);
  lua_setfield(L, -2, k);
}

const char *ugen_result_version_name(long v)
{
  switch (v) {
  case CURL_HTTP_VERSION_1_0:
    return "1.0";
  case CURL_HTTP_VERSION_1_1:
    return "1.1";
  case CURL_HTTP_VERSION_2_0:
    return "2";
#if UGEN_HAVE_CURL_HTTP3
  case CURL_HTTP_VERSION_3:
    return "3";
#endif
  default:
    return NULL;
  }
}

static void ugen_result_push_res(lua_State *L, ugen_transfer *t)
{
  const char *ver = ugen_result_version_name(t->http_version);
  size_t off = 0, i = 1;
  int map_ok;

  lua_createtable(L, 0, 8);
  lua_pushinteger(L, (lua_Integer)t->status);
  lua_setfield(L, -2, "status");
  if (ver != NULL) {
    lua_pushstring(L, ver);
    lua_setfield(L, -2, "http_version");
  }
  /* the flat list, and the same headers as a map while every name is unique
   * and already in ugen.headers' normal form (lowercase, no '_') */
  lua_createtable(L, (int)(t->nheaders * 2), 0);
  lua_createtable(L, 0, (int)t->nheaders);
  map_ok = 1;
  while (off < t->hdrs.len) {
    size_t nlen = strlen(t->hdrs.p + off), vlen;
    const char *name = t->hdrs.p + off;
    off += nlen + 1;
    if (off >= t->hdrs.len) /* records are name\0value\0: never cut, but stay in bounds */
      break;
    vlen = strlen(t->hdrs.p + off);
    lua_pushlstring(L, name, nlen);
    lua_pushlstring(L, t->hdrs.p + off, vlen);
    off += vlen + 1;
    lua_pushvalue(L, -2);
    lua_rawseti(L, -5, (int)i++);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -5, (int)i++);
    if (map_ok) {
      lua_pushvalue(L, -2);
      lua_rawget(L, -4);
      map_ok = lua_isnil(L, -1) && memchr(name, '_', nlen) == NULL;
      lua_pop(L, 1);
    }
    if (map_ok)
      lua_rawset(L, -3);
    else
      lua_pop(L, 2);
  }
  if (map_ok)
    lua_setfield(L, -3, "header_map");
  else
    lua_pop(L, 1);
  lua_setfield(L, -2, "headers");
  if (t->out_mode != OUT_FILE) {
    lua_pushlstring(L, t->body.p != NULL ? t->body.p : "", t->body.len);
    lua_setfield(L, -2, "body");
  }
  lua_pushinteger(L, (lua_Integer)t->size);
  lua_setfield(L, -2, "size");
  if (t->url.len > 0) {
    lua_pushlstring(L, t->url.p, t->url.len);
    lua_setfield(L, -2, "url");
  }
  if (!t->timing)
    return;
  lua_createtable(L, 0, 8);
  ugen_result_set_time(L, "namelookup", t->t_namelookup);
  ugen_result_set_time(L, "connect", t->t_connect);
  ugen_result_set_time(L, "appconnect", t->t_appconnect);
  ugen_result_set_time(L, "pretransfer", t->t_pretransfer);
  ugen_result_set_time(L, "starttransfer", t->t_starttransfer);
  ugen_result_set_time(L, "total", t->t_total);
  ugen_result_set_time(L, "redirect", t->t_redirect);
  if (t->nconnects >= 0) {
    lua_pushboolean(L, t->nconnects == 0);
    lua_setfield(L, -2, "reused");
  }
  lua_setfield(L, -2, "timing");
}

/* Pushes `res` or `nil, err` for a finished transfer whose user value
 * table is at uv; returns the number of values. */
int ugen_result_push(lua_State *L, ugen_transfer *t, int uv)
{
  int fail = t->fail;

  if (fail == F_NOMEM)
    return luaL_error(L, "not enough memory for the response");
  if (fail == F_NONE && t->code == CURLE_FILESIZE_EXCEEDED)
    fail = F_TOO_LARGE;
  /* PROTOCOLS allows http and https: only REDIR_PROTOCOLS refuses a URL */
  if (fail == F_NONE && t->https_only && t->code == CURLE_UNSUPPORTED_PROTOCOL)
    fail = F_INSECURE_REDIRECT;
  if (fail == F_NONE && t->code == CURLE_OK) {
    ugen_result_push_res(L, t);
    return 1;
  }
  lua_pushnil(L);
  switch (fail) {
  case F_TOO_LARGE:
    ugen_err_new(L, "too_large", "response body exceeds max_body");
    break;
  case F_ABORTED:
    ugen_err_new(L, "aborted", "transfer aborted by on_progress");
    break;
  case F_ENGINE_CLOSED:
    ugen_err_new(L, "aborted", "engine closed");
    break;
  case F_INSECURE_REDIRECT:
    ugen_err_new(L, "insecure_redirect", "refused a redirect from https to a URL that is not https");
    break;
  case F_RESEND:
    ugen_err_new(L, "network", "connection lost after the request was sent (the server may have "
                               "processed it); not sent again: the request is not idempotent");
    break;
  case F_IO:
    ugen_err_new(L, "io", t->msg);
    break;
  case F_CALLBACK:
    lua_rawgeti(L, uv, UV_CAUSE);
    if (lua_type(L, -1) == LUA_TSTRING)
      lua_pushfstring(L, "on_progress raised: %s", lua_tostring(L, -1));
    else
      lua_pushfstring(L, "on_progress raised a %s value", luaL_typename(L, -1));
    ugen_err_new(L, "callback", lua_tostring(L, -1));
    lua_insert(L, -3);
    lua_pop(L, 1);
    lua_setfield(L, -2, "cause");
    break;
  case F_SETUP:
    if (t->msg[0] != '\0')
      ugen_err_new(L, t->code == CURLE_READ_ERROR ? "io" : ugen_err_curl_kind(t->code), t->msg);
    else
      ugen_err_new_curl(L, t->code, t->errbuf);
    break;
  default:
    ugen_err_new_curl(L, t->code, t->errbuf);
    break;
  }
  lua_pushinteger(L, (lua_Integer)t->code);
  lua_setfield(L, -2, "curl_code");
  lua_pushboolean(L, t->sent);
  lua_setfield(L, -2, "sent");
  return 2;
}
