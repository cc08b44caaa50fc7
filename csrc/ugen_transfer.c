/*
 * ugen_transfer.c -- one transfer of an engine: its buffers, its libcurl
 * callbacks (body, headers, progress, the re-send guard), its Lua methods
 * (done, result, progress, http_version) and its idempotent close. The easy
 * handle's options come from ugen_request.c, the result table from
 * ugen_result.c; the state is in ugen_engine.h.
 *
 * Callbacks never raise: body and header bytes go into buffers allocated
 * with the state's allocator (lua_getallocf); only the progress callback
 * enters Lua, under lua_pcall, on the thread that called e:run/e:request.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ugen_engine.h"

/* ---- memory through the Lua allocator (never raises) ------------------ */

static int ugen_transfer_buf_reserve(ugen_engine *e, ugen_buf *b, size_t extra)
{
  size_t need, cap;
  char *p;

  if (extra > ((size_t)-1) - b->len - 1)
    return 0;
  need = b->len + extra + 1;
  if (need <= b->cap)
    return 1;
  cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap = (cap > ((size_t)-1) / 2) ? need : cap * 2;
  p = (char *)e->allocf(e->allocud, b->p, b->p ? b->cap : 0, cap);
  if (p == NULL)
    return 0;
  b->p = p;
  b->cap = cap;
  return 1;
}

int ugen_transfer_buf_add(ugen_engine *e, ugen_buf *b, const char *s, size_t n)
{
  if (!ugen_transfer_buf_reserve(e, b, n))
    return 0;
  if (n > 0)
    memcpy(b->p + b->len, s, n);
  b->len += n;
  return 1;
}

static void ugen_transfer_buf_free(lua_Alloc allocf, void *ud, ugen_buf *b)
{
  if (b->p != NULL)
    (void)allocf(ud, b->p, b->cap, 0);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ---- transfer helpers ------------------------------------------------- */

void ugen_transfer_close_fd(ugen_transfer *t)
{
  if (t->fd >= 0) {
    (void)close(t->fd);
    t->fd = -1;
  }
}

/* t->msg = "what: path[: detail]" */
void ugen_transfer_set_msg(ugen_transfer *t, int fail, const char *what, const char *path,
                                  const char *detail)
{
  if (t->fail == F_NONE || t->fail == F_SETUP)
    t->fail = fail;
  if (detail != NULL)
    (void)snprintf(t->msg, sizeof t->msg, "%s: %s: %s", what, path, detail);
  else
    (void)snprintf(t->msg, sizeof t->msg, "%s: %s", what, path);
}

/* Opens t's output file (see ugen_output_open). */
int ugen_transfer_open_output(ugen_transfer *t)
{
  int fd = ugen_output_open(t->out_path, t->resume_from, t->msg, sizeof t->msg);

  if (fd < 0) {
    if (t->fail == F_NONE || t->fail == F_SETUP)
      t->fail = F_IO;
    return 0;
  }
  t->fd = fd;
  return 1;
}

/* ---- libcurl callbacks (never raise) ---------------------------------- */

size_t ugen_transfer_write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
  ugen_transfer *t = (ugen_transfer *)ud;
  size_t n = size * nmemb;

  if (t->closing)
    return 0;
  if (t->out_path != NULL && t->out_mode == OUT_UNDECIDED) {
    long code = 0;
    /* only a 2xx body goes to the file; an error body stays in memory */
    if (curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code >= 200 &&
        code < 300) {
      if (!ugen_transfer_open_output(t))
        return 0;
      t->out_mode = OUT_FILE;
    } else {
      curl_off_t cl = -1;
      t->out_mode = OUT_MEMORY;
      /* an error body announced over the cap: refused before any of it is kept
       * (without an output file CURLOPT_MAXFILESIZE does this) */
      if (t->max_body >= 0 &&
          curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK &&
          cl > t->max_body) {
        t->fail = F_TOO_LARGE;
        return 0;
      }
    }
  }
  if (t->out_mode == OUT_FILE) {
    size_t off = 0;
    while (off < n) {
      ssize_t w = write(t->fd, ptr + off, n - off);
      if (w < 0) {
        if (errno == EINTR)
          continue;
        ugen_transfer_set_msg(t, F_IO, "cannot write output file", t->out_path,
                              strerror(errno));
        return 0;
      }
      off += (size_t)w;
    }
    t->size += (curl_off_t)n;
    return n;
  }
  if (t->max_body >= 0 && (curl_off_t)(t->body.len + n) > t->max_body) {
    t->fail = F_TOO_LARGE;
    return 0;
  }
  if (t->engine == NULL || !ugen_transfer_buf_add(t->engine, &t->body, ptr, n)) {
    t->fail = F_NOMEM;
    return 0;
  }
  t->size += (curl_off_t)n;
  return n;
}

/* Header lines go into t->hdrs as "name\0value\0" records; a status line
 * starts a new response (100-continue, redirects, auth) and clears them.
 * The parsing itself is ugen_hdr_parse (ugen_hdr.c, fuzzed separately). */
size_t ugen_transfer_header_cb(char *buf, size_t size, size_t nitems, void *ud)
{
  ugen_transfer *t = (ugen_transfer *)ud;
  ugen_engine *e = t->engine;
  size_t total = size * nitems;
  ugen_hdr_line l;

  if (t->closing)
    return 0;
  if (e == NULL) {
    t->fail = F_NOMEM;
    return 0;
  }
  switch (ugen_hdr_parse(buf, total, &l)) {
  case UGEN_HDR_STATUS:
    t->hdrs.len = 0;
    t->nheaders = 0;
    return total;
  case UGEN_HDR_FOLD:
    if (t->nheaders == 0)
      return total;
    t->hdrs.len--; /* drop the value's terminator */
    if (!ugen_transfer_buf_add(e, &t->hdrs, " ", 1) ||
        !ugen_transfer_buf_add(e, &t->hdrs, buf + l.value_off, l.value_len) ||
        !ugen_transfer_buf_add(e, &t->hdrs, "", 1)) {
      t->fail = F_NOMEM;
      return 0;
    }
    return total;
  case UGEN_HDR_FIELD:
    if (!ugen_transfer_buf_reserve(e, &t->hdrs, l.line_len + 2)) {
      t->fail = F_NOMEM;
      return 0;
    }
    t->hdrs.len += ugen_hdr_record(buf, &l, t->hdrs.p + t->hdrs.len);
    t->nheaders++;
    return total;
  default:
    return total;
  }
}

int ugen_transfer_xferinfo_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow,
                                   curl_off_t ultotal, curl_off_t ulnow)
{
  ugen_transfer *t = (ugen_transfer *)ud;
  ugen_engine *e = t->engine;
  lua_State *L;
  int top, status, abort_ = 0;

  t->dltotal = dltotal;
  t->dlnow = dlnow;
  t->ultotal = ultotal;
  t->ulnow = ulnow;
  if (t->closing)
    return 1;
  if (!t->has_progress || e == NULL || e->L == NULL)
    return 0;
  L = e->L;
  if (!lua_checkstack(L, 8))
    return 0;
  top = lua_gettop(L);
  ugen_rawgetp(L, e->anchors, t);     /* top+1: transfer */
  if (lua_type(L, -1) != LUA_TUSERDATA) {
    lua_settop(L, top);
    return 0;
  }
  ugen_getuservalue(L, -1);           /* top+2: its user value */
  lua_rawgeti(L, -1, UV_PROGRESS);    /* top+3: on_progress */
  lua_pushnumber(L, (lua_Number)dltotal);
  lua_pushnumber(L, (lua_Number)dlnow);
  lua_pushnumber(L, (lua_Number)ultotal);
  lua_pushnumber(L, (lua_Number)ulnow);
  status = lua_pcall(L, 4, 1, 0);
  if (status != LUA_OK) {
    /* slot UV_CAUSE lies in the preallocated array part: no allocation */
    lua_rawseti(L, top + 2, UV_CAUSE);
    t->fail = F_CALLBACK;
    abort_ = 1;
  } else if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
    t->fail = F_ABORTED;
    abort_ = 1;
  }
  lua_settop(L, top);
  if (t->closing) /* on_progress closed its own transfer */
    abort_ = 1;
  return abort_;
}

#if UGEN_HAVE_CURL_PREREQFUNC
/* CURLOPT_PREREQFUNCTION of a request that is not idempotent: libcurl calls
 * it each time it is about to send the request. libcurl sends a request
 * again by itself when the connection it went out on dies before any
 * response byte and that connection counts as reused -- on HTTP/2 every
 * connection another transfer joined counts, so a fresh connection is no
 * protection there -- and the server may already have processed it
 * (spec/integration/h2_spec.lua). A second start that is not a redirect is
 * that re-send: refused, the transfer fails (kind "network", sent = true).
 * Never calls Lua. */
int ugen_transfer_prereq_cb(void *ud, char *conn_primary_ip, char *conn_local_ip,
                                 int conn_primary_port, int conn_local_port)
{
  ugen_transfer *t = (ugen_transfer *)ud;
  long redirects = 0;

  (void)conn_primary_ip;
  (void)conn_local_ip;
  (void)conn_primary_port;
  (void)conn_local_port;
  if (curl_easy_getinfo(t->easy, CURLINFO_REDIRECT_COUNT, &redirects) != CURLE_OK)
    redirects = t->redirects;
  if (t->sends > 0 && redirects == t->redirects) {
    t->fail = F_RESEND;
    return CURL_PREREQFUNC_ABORT;
  }
  t->sends++;
  t->redirects = redirects;
  return CURL_PREREQFUNC_OK;
}
#endif

/* ---- transfer class --------------------------------------------------- */

static ugen_transfer *ugen_transfer_get(lua_State *L, int idx)
{
  ugen_transfer *t = (ugen_transfer *)luaL_checkudata(L, idx, UGEN_TRANSFER_CLASS);
  if (t->state == T_CLOSED || t->closing)
    luaL_error(L, UGEN_TRANSFER_CLASS ": handle is closed");
  return t;
}

/* Removes t from its engine's anchors (engine found through UV_ENGINE).
 * Never allocates. */
void ugen_transfer_unanchor(lua_State *L, int idx, ugen_transfer *t)
{
  if (!t->anchored)
    return;
  t->anchored = 0;
  ugen_getuservalue(L, idx);
  if (lua_istable(L, -1)) {
    lua_rawgeti(L, -1, UV_ENGINE);
    if (lua_type(L, -1) == LUA_TUSERDATA) {
      ugen_getuservalue(L, -1);
      if (lua_istable(L, -1)) {
        lua_pushnil(L);
        ugen_rawsetp(L, -2, t);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

void ugen_transfer_free(lua_State *L, ugen_transfer *t)
{
  void *ud;
  lua_Alloc allocf = lua_getallocf(L, &ud);

  ugen_transfer_close_fd(t);
  if (t->mime != NULL) {
    curl_mime_free(t->mime);
    t->mime = NULL;
  }
  if (t->headers != NULL) {
    curl_slist_free_all(t->headers);
    t->headers = NULL;
  }
  ugen_transfer_buf_free(allocf, ud, &t->body);
  ugen_transfer_buf_free(allocf, ud, &t->hdrs);
  ugen_transfer_buf_free(allocf, ud, &t->url);
}

/* t:close() / __gc / __close: cancel if in flight, free; idempotent. */
int ugen_transfer_close(lua_State *L)
{
  ugen_transfer *t = (ugen_transfer *)luaL_checkudata(L, 1, UGEN_TRANSFER_CLASS);
  ugen_engine *e = t->engine;

  if (t->state == T_CLOSED || t->closing)
    return 0;
  if (e != NULL) {
    if (e->busy && t->in_multi) {
      /* inside a callback of this engine: libcurl cannot let go of the easy
       * handle now; ugen_engine_reap does it once the multi call returns */
      t->closing = 1;
      e->nclosing++;
      return 0;
    }
    if (t->state == T_DONE) {
      if (!t->sync)
        ugen_engine_unlink(e, t, 1);
    } else {
      ugen_engine_drop_easy(e, t);
      ugen_engine_unlink(e, t, 0);
    }
    t->engine = NULL;
  } else if (t->easy != NULL) {
    curl_easy_cleanup(t->easy);
    t->easy = NULL;
  }
  ugen_transfer_unanchor(L, 1, t);
  ugen_transfer_free(L, t);
  t->state = T_CLOSED;
  return 0;
}

static int ugen_transfer_done(lua_State *L)
{
  ugen_transfer *t = ugen_transfer_get(L, 1);
  lua_pushboolean(L, t->state == T_DONE);
  return 1;
}

static int ugen_transfer_result(lua_State *L)
{
  ugen_transfer *t = ugen_transfer_get(L, 1);
  int uv;
  void *ud;
  lua_Alloc allocf;

  if (t->state != T_DONE) {
    lua_pushnil(L);
    ugen_err_new(L, "pending", "transfer still running");
    return 2;
  }
  lua_settop(L, 1);
  ugen_getuservalue(L, 1);
  uv = 2;
  lua_rawgeti(L, uv, UV_RES);
  if (!lua_isnil(L, -1)) { /* cached: res, or false + err */
    if (lua_toboolean(L, -1))
      return 1;
    lua_pushnil(L);
    lua_rawgeti(L, uv, UV_ERR);
    return 2;
  }
  lua_pop(L, 1);
  if (ugen_result_push(L, t, uv) == 1) {
    lua_pushvalue(L, -1);
    lua_rawseti(L, uv, UV_RES);
  } else {
    lua_pushboolean(L, 0);
    lua_rawseti(L, uv, UV_RES);
    lua_pushvalue(L, -1);
    lua_rawseti(L, uv, UV_ERR);
  }
  /* the buffers now live in Lua strings */
  allocf = lua_getallocf(L, &ud);
  ugen_transfer_buf_free(allocf, ud, &t->body);
  ugen_transfer_buf_free(allocf, ud, &t->hdrs);
  ugen_transfer_buf_free(allocf, ud, &t->url);
  return lua_gettop(L) - 2;
}

static int ugen_transfer_progress(lua_State *L)
{
  ugen_transfer *t = ugen_transfer_get(L, 1);
  lua_pushinteger(L, (lua_Integer)t->dlnow);
  lua_pushinteger(L, (lua_Integer)t->dltotal);
  lua_pushinteger(L, (lua_Integer)t->ulnow);
  lua_pushinteger(L, (lua_Integer)t->ultotal);
  return 4;
}

/* t:http_version() -> "1.1" | "2" | ... once done with a response, else nil
 * (cheap: what the scheduler learns about an origin from each transfer) */
static int ugen_transfer_http_version(lua_State *L)
{
  ugen_transfer *t = ugen_transfer_get(L, 1);
  const char *ver = t->state == T_DONE ? ugen_result_version_name(t->http_version) : NULL;
  if (ver != NULL)
    lua_pushstring(L, ver);
  else
    lua_pushnil(L);
  return 1;
}

static int ugen_transfer_tostring(lua_State *L)
{
  lua_pushfstring(L, UGEN_TRANSFER_CLASS ": %p", lua_touserdata(L, 1));
  return 1;
}

static const luaL_Reg ugen_transfer_methods[] = {
  { "done", ugen_transfer_done },
  { "result", ugen_transfer_result },
  { "progress", ugen_transfer_progress },
  { "http_version", ugen_transfer_http_version },
  { "close", ugen_transfer_close },
  { NULL, NULL },
};

static const luaL_Reg ugen_transfer_meta[] = {
  { "__gc", ugen_transfer_close },
  { "__close", ugen_transfer_close },
  { "__tostring", ugen_transfer_tostring },
  { NULL, NULL },
};

void ugen_transfer_register(lua_State *L)
{
  ugen_class(L, UGEN_TRANSFER_CLASS, ugen_transfer_meta, ugen_transfer_methods);
}
