/*
 * ugen_engine.c -- the libcurl engine: one multi handle and one share handle
 * (DNS cache, TLS sessions, PSL) per engine, a pool of easy handles reused
 * with curl_easy_reset, and transfers.
 *
 * Ownership and lifetime
 * - An engine's user value is its "anchors" table: [lightuserdata(t)] = t
 *   for every transfer that is in flight or finished but not yet returned by
 *   e:run. The engine keeps those transfers alive.
 * - A transfer's user value is a table with a preallocated array part:
 *   [1] its engine, [2] on_progress, [3] the value raised by on_progress,
 *   [4] the pinned request body, [5] the pinned output path, [6]/[7] the
 *   cached result. A transfer keeps its engine alive. The cycle only goes
 *   through user values, so an unreachable engine with transfers in flight
 *   is collected; both finalizers tolerate either order.
 * - C-side, the engine links every transfer that holds an easy handle or
 *   waits to be reported (lists `active` and `done`); transfers point back
 *   with `engine`, cleared when the engine closes or the link ends.
 *
 * Callbacks never raise: body and header bytes go into buffers allocated
 * with the state's allocator (lua_getallocf); only the progress callback
 * enters Lua, under lua_pcall, on the thread that called e:run/e:request.
 *
 * Closing from inside a callback: libcurl forbids removing an easy handle
 * while one of its callbacks runs, so t:close() there only marks the
 * transfer `closing` (its handle is closed for Lua at once; its callbacks
 * stop and abort it). The engine removes and frees it as soon as the
 * current curl_multi_perform returns (ugen_engine_reap), before e:run or
 * e:request return, and e:run then returns without waiting in
 * curl_multi_poll, so whoever closed it is not kept waiting.
 *
 * HTTP/2: https requests offer h2 (ALPN) and wait for a connection being set
 * up to the same origin to tell whether it multiplexes (CURLOPT_PIPEWAIT)
 * instead of each opening its own. The multi handle multiplexes up to
 * max_concurrent_streams (128) streams per connection (fewer when the
 * server's SETTINGS say so) over at most max_host_connections_h2 (8)
 * connections per origin (ugen_engine_host_limit). Plain http:// stays
 * HTTP/1.1 (no h2c): one request per connection, max_host_connections (64).
 * A request that is not idempotent is never sent twice by libcurl
 * (ugen_engine_prereq_cb).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ugen.h"

#define UGEN_POOL_MAX 32
#define UGEN_DEFAULT_CONNECT_TIMEOUT 10.0
#define UGEN_DEFAULT_TIMEOUT 60.0
#define UGEN_MAX_REDIRS 5L
#define UGEN_DEFAULT_MAX_HOST_CONNECTIONS 64L
/* Connections per origin while only multiplexed (HTTP/2) transfers are in
 * flight. libcurl 7.88 waits (PIPEWAIT) only for the FIRST connection to an
 * origin: once it is full, every further transfer opens a connection of its
 * own while the next one is still being set up, up to the per-host limit.
 * 1,000 requests at once then took 64 TLS connections; with 8, libcurl keeps
 * the overflow waiting until those 8 are up and multiplexes it over them. */
#define UGEN_DEFAULT_MAX_HOST_CONNECTIONS_H2 8L
/* CURLMOPT_MAX_CONCURRENT_STREAMS: streams per HTTP/2 connection (libcurl's
 * default is 100; the server's SETTINGS_MAX_CONCURRENT_STREAMS may lower it).
 * 128 is what nginx and most load balancers allow: the scheduler's HTTP/2
 * default of 1,024 requests in flight per origin then fits 8 connections. */
#define UGEN_DEFAULT_MAX_STREAMS 128L
#define UGEN_MSG_SIZE 256

/* transfer user-value slots */
#define UV_ENGINE 1
#define UV_PROGRESS 2
#define UV_CAUSE 3
#define UV_BODY 4
#define UV_OUTPUT 5
#define UV_RES 6
#define UV_ERR 7
#define UV_SLOTS 8

enum ugen_state { T_NEW, T_RUNNING, T_DONE, T_CLOSED };

/* why a transfer failed besides (or instead of) its curl code */
enum ugen_fail {
  F_NONE,
  F_TOO_LARGE,
  F_ABORTED,
  F_CALLBACK,
  F_IO,
  F_NOMEM,
  F_ENGINE_CLOSED,
  F_SETUP,
  F_INSECURE_REDIRECT,
  F_RESEND
};

enum ugen_out { OUT_UNDECIDED, OUT_FILE, OUT_MEMORY };

typedef struct ugen_buf {
  char *p;
  size_t len, cap;
} ugen_buf;

struct ugen_engine;

typedef struct ugen_transfer {
  struct ugen_engine *engine; /* NULL once detached */
  struct ugen_transfer *prev, *next;
  CURL *easy;
  struct curl_slist *headers;
  curl_mime *mime;
  int state, fail, sync, anchored, in_multi, has_progress, out_mode;
  int https_only;         /* follows redirects to https URLs only */
  int closing;            /* closed from inside a callback; reaped after the multi call */
  int once;               /* not idempotent: libcurl must not send it twice */
  int plain;              /* http:// (HTTP/1.1, never multiplexed): counts in engine->nplain */
  int sends;              /* requests libcurl started for it (prereq callback) */
  long redirects;         /* redirects followed when it last started one */
  CURLcode code;
  int fd;                 /* output file, -1 when none is open */
  const char *out_path;   /* pinned in UV_OUTPUT */
  curl_off_t resume_from; /* -1: none */
  curl_off_t max_body;    /* -1: unlimited */
  curl_off_t size;        /* body bytes received */
  curl_off_t dltotal, dlnow, ultotal, ulnow;
  /* captured when the transfer finished */
  long status, http_version;
  int sent;
  curl_off_t t_namelookup, t_connect, t_appconnect, t_pretransfer, t_starttransfer, t_total,
      t_redirect;
  ugen_buf body, hdrs, url;
  size_t nheaders;
  char errbuf[CURL_ERROR_SIZE];
  char msg[UGEN_MSG_SIZE];
} ugen_transfer;

typedef struct ugen_engine {
  CURLM *multi;
  CURLSH *share;
  ugen_loop *loop; /* watch set and timer (ugen_loop.c) */
  CURL *pool[UGEN_POOL_MAX];
  int npool;
  ugen_transfer *active; /* transfers holding an easy handle */
  ugen_transfer *done;   /* finished, not yet returned by e:run */
  ugen_transfer *done_tail;
  int inflight;   /* transfers in the multi handle */
  int closed, busy;
  int nclosing;   /* transfers marked closing, not yet reaped */
  int has_h2;     /* libcurl was built with HTTP/2 (nghttp2) */
  /* CURLMOPT_MAX_HOST_CONNECTIONS is one limit for every host: max_host while
   * an http:// transfer is in the multi handle (nplain > 0) or once an https
   * origin answered over HTTP/1.1 (h1_tls), else max_host_h2 */
  long max_host, max_host_h2, host_limit;
  int nplain, h1_tls;
  lua_State *L;   /* thread inside e:run/e:request, else NULL */
  int anchors;    /* stack index of the anchors table on L */
  lua_Alloc allocf;
  void *allocud;
} ugen_engine;

/* ---- memory through the Lua allocator (never raises) ------------------ */

static int ugen_engine_buf_reserve(ugen_engine *e, ugen_buf *b, size_t extra)
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

static int ugen_engine_buf_add(ugen_engine *e, ugen_buf *b, const char *s, size_t n)
{
  if (!ugen_engine_buf_reserve(e, b, n))
    return 0;
  if (n > 0)
    memcpy(b->p + b->len, s, n);
  b->len += n;
  return 1;
}

static void ugen_engine_buf_free(lua_Alloc allocf, void *ud, ugen_buf *b)
{
  if (b->p != NULL)
    (void)allocf(ud, b->p, b->cap, 0);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ceil for 0 <= x <= 1e15 without libm */
static double ugen_engine_ceil(double x)
{
  double r = (double)(long long)x;
  return r < x ? r + 1.0 : r;
}

static int ugen_engine_is_integer(double d)
{
  return d >= 0 && d <= 9.0e15 && (double)(long long)d == d;
}

/* ---- lists ------------------------------------------------------------ */

static void ugen_engine_link_active(ugen_engine *e, ugen_transfer *t)
{
  t->prev = NULL;
  t->next = e->active;
  if (e->active != NULL)
    e->active->prev = t;
  e->active = t;
}

/* unlinks t from whichever list holds it (state tells which) */
static void ugen_engine_unlink(ugen_engine *e, ugen_transfer *t, int from_done)
{
  if (t->prev != NULL)
    t->prev->next = t->next;
  else if (from_done)
    e->done = t->next;
  else
    e->active = t->next;
  if (t->next != NULL)
    t->next->prev = t->prev;
  else if (from_done)
    e->done_tail = t->prev;
  t->prev = t->next = NULL;
}

static void ugen_engine_push_done(ugen_engine *e, ugen_transfer *t)
{
  t->next = NULL;
  t->prev = e->done_tail;
  if (e->done_tail != NULL)
    e->done_tail->next = t;
  else
    e->done = t;
  e->done_tail = t;
}

/* ---- easy-handle pool -------------------------------------------------- */

static CURL *ugen_engine_acquire(ugen_engine *e)
{
  CURL *easy;

  if (e->npool > 0) {
    easy = e->pool[--e->npool];
    curl_easy_reset(easy);
    return easy;
  }
  return curl_easy_init();
}

static void ugen_engine_release(ugen_engine *e, CURL *easy)
{
  if (e != NULL && !e->closed && e->npool < UGEN_POOL_MAX)
    e->pool[e->npool++] = easy;
  else
    curl_easy_cleanup(easy);
}

/* ---- transfer helpers ------------------------------------------------- */

static void ugen_transfer_close_fd(ugen_transfer *t)
{
  if (t->fd >= 0) {
    (void)close(t->fd);
    t->fd = -1;
  }
}

/* t->msg = "what: path[: detail]" */
static void ugen_transfer_set_msg(ugen_transfer *t, int fail, const char *what, const char *path,
                                  const char *detail)
{
  if (t->fail == F_NONE || t->fail == F_SETUP)
    t->fail = fail;
  if (detail != NULL)
    (void)snprintf(t->msg, sizeof t->msg, "%s: %s: %s", what, path, detail);
  else
    (void)snprintf(t->msg, sizeof t->msg, "%s: %s", what, path);
}

/* ---- output files ----------------------------------------------------- */

/* An output file (a download's ".part") is written only when it is a
 * regular file with a single link: nothing is ever written through a
 * symbolic link (O_NOFOLLOW), a hard link, a FIFO or a device planted at
 * that name.
 *   keep < 0: start over. The name is unlinked first (a link itself, never
 *             its target; a directory there is an error) and a new file is
 *             created exclusively (O_EXCL | O_NOFOLLOW).
 *   keep >= 0: resume. The file must already be a regular file with one
 *             link holding at least keep bytes; it is cut to keep bytes and
 *             positioned there (nothing is created).
 * Returns the descriptor, or -1 with msg = "what: path: detail". */
static int ugen_output_open(const char *path, curl_off_t keep, char *msg, size_t msgsize)
{
  struct stat st;
  int fd, fl;

  if (keep < 0) {
    if (unlink(path) != 0 && errno != ENOENT) {
      (void)snprintf(msg, msgsize, "cannot replace output file: %s: %s", path, strerror(errno));
      return -1;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0) {
      (void)snprintf(msg, msgsize, "cannot open output file: %s: %s", path, strerror(errno));
      return -1;
    }
    return fd;
  }
  /* O_NONBLOCK: opening a FIFO must not wait for a reader (fstat refuses it) */
  fd = open(path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    (void)snprintf(msg, msgsize, "cannot open output file: %s: %s", path,
                   errno == ELOOP ? "is a symbolic link" : strerror(errno));
    return -1;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
    (void)close(fd);
    (void)snprintf(msg, msgsize, "output file is not a regular file with one link: %s", path);
    return -1;
  }
  if ((curl_off_t)st.st_size < keep) {
    (void)close(fd);
    (void)snprintf(msg, msgsize, "output file is shorter than resume_from: %s", path);
    return -1;
  }
  if ((fl = fcntl(fd, F_GETFL)) == -1 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == -1 ||
      ftruncate(fd, (off_t)keep) != 0 || lseek(fd, (off_t)keep, SEEK_SET) == (off_t)-1) {
    (void)snprintf(msg, msgsize, "cannot position output file: %s: %s", path, strerror(errno));
    (void)close(fd);
    return -1;
  }
  return fd;
}

/* Opens t's output file (see ugen_output_open). */
static int ugen_transfer_open_output(ugen_transfer *t)
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

/* the path argument of the output_* functions (a NUL byte would name another file) */
static const char *ugen_output_path(lua_State *L, int idx)
{
  size_t len;
  const char *path = luaL_checklstring(L, idx, &len);
  if (strlen(path) != len)
    luaL_argerror(L, idx, "path contains a NUL byte");
  return path;
}

/* core.output_size(path) -> bytes | nil: the size of the file at path when
 * it is one the engine would resume (a regular file with one link, the name
 * not followed when it is a symbolic link); nil when absent or anything else. */
static int ugen_output_size(lua_State *L)
{
  const char *path = ugen_output_path(L, 1);
  struct stat st;

  if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushinteger(L, (lua_Integer)st.st_size);
  return 1;
}

/* core.output_prepare(path[, keep]) -> true | nil, message
 * keep > 0: the file must be a regular file with one link of at least keep
 * bytes; it is cut to keep bytes. Otherwise: whatever is at path is replaced
 * by a new empty file (see ugen_output_open). */
static int ugen_output_prepare(lua_State *L)
{
  const char *path = ugen_output_path(L, 1);
  lua_Number keep = luaL_optnumber(L, 2, 0);
  char msg[UGEN_MSG_SIZE];
  int fd;

  luaL_argcheck(L, keep >= 0 && keep <= 9.0e15 && (double)(long long)keep == (double)keep, 2,
                "must be a non-negative integer");
  fd = ugen_output_open(path, keep > 0 ? (curl_off_t)keep : -1, msg, sizeof msg);
  if (fd < 0 || close(fd) != 0) {
    if (fd >= 0)
      (void)snprintf(msg, sizeof msg, "cannot write output file: %s: %s", path, strerror(errno));
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core.output_append(path, data) -> true | nil, message: appends to a file
 * that must be a regular file with one link (never through a symbolic link). */
static int ugen_output_append(lua_State *L)
{
  const char *path = ugen_output_path(L, 1);
  size_t n, off = 0;
  const char *data = luaL_checklstring(L, 2, &n);
  struct stat st;
  int fd, fl;

  fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot open output file: %s: %s", path,
                    errno == ELOOP ? "is a symbolic link" : strerror(errno));
    return 2;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
    (void)close(fd);
    lua_pushnil(L);
    lua_pushfstring(L, "output file is not a regular file with one link: %s", path);
    return 2;
  }
  if ((fl = fcntl(fd, F_GETFL)) == -1 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == -1)
    goto fail;
  while (off < n) {
    ssize_t w = write(fd, data + off, n - off);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      goto fail;
    }
    off += (size_t)w;
  }
  fl = close(fd);
  fd = -1;
  if (fl != 0)
    goto fail;
  lua_pushboolean(L, 1);
  return 1;
fail:
  fl = errno;
  if (fd >= 0)
    (void)close(fd);
  lua_pushnil(L);
  lua_pushfstring(L, "cannot write output file: %s: %s", path, strerror(fl));
  return 2;
}

/* ---- libcurl callbacks (never raise) ---------------------------------- */

static size_t ugen_engine_write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
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
  if (t->engine == NULL || !ugen_engine_buf_add(t->engine, &t->body, ptr, n)) {
    t->fail = F_NOMEM;
    return 0;
  }
  t->size += (curl_off_t)n;
  return n;
}

/* Header lines go into t->hdrs as "name\0value\0" records; a status line
 * starts a new response (100-continue, redirects, auth) and clears them.
 * The parsing itself is ugen_hdr_parse (ugen_hdr.c, fuzzed separately). */
static size_t ugen_engine_header_cb(char *buf, size_t size, size_t nitems, void *ud)
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
    if (!ugen_engine_buf_add(e, &t->hdrs, " ", 1) ||
        !ugen_engine_buf_add(e, &t->hdrs, buf + l.value_off, l.value_len) ||
        !ugen_engine_buf_add(e, &t->hdrs, "", 1)) {
      t->fail = F_NOMEM;
      return 0;
    }
    return total;
  case UGEN_HDR_FIELD:
    if (!ugen_engine_buf_reserve(e, &t->hdrs, l.line_len + 2)) {
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

static int ugen_engine_xferinfo_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow,
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
static int ugen_engine_prereq_cb(void *ud, char *conn_primary_ip, char *conn_local_ip,
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

/* ---- finishing -------------------------------------------------------- */

static curl_off_t ugen_engine_info_time(CURL *easy, CURLINFO info)
{
  curl_off_t v = 0;
  if (curl_easy_getinfo(easy, info, &v) != CURLE_OK)
    v = 0;
  return v;
}

/* Copies everything result() needs out of the easy handle. */
static void ugen_engine_capture(ugen_transfer *t)
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
  t->t_namelookup = ugen_engine_info_time(easy, CURLINFO_NAMELOOKUP_TIME_T);
  t->t_connect = ugen_engine_info_time(easy, CURLINFO_CONNECT_TIME_T);
  t->t_appconnect = ugen_engine_info_time(easy, CURLINFO_APPCONNECT_TIME_T);
  t->t_pretransfer = ugen_engine_info_time(easy, CURLINFO_PRETRANSFER_TIME_T);
  t->t_starttransfer = ugen_engine_info_time(easy, CURLINFO_STARTTRANSFER_TIME_T);
  t->t_total = ugen_engine_info_time(easy, CURLINFO_TOTAL_TIME_T);
  t->t_redirect = ugen_engine_info_time(easy, CURLINFO_REDIRECT_TIME_T);
  t->url.len = 0;
  if (curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK && url != NULL &&
      t->engine != NULL)
    (void)ugen_engine_buf_add(t->engine, &t->url, url, strlen(url));
}

/* Sets the multi handle's per-host connection limit for the transfers in
 * it: max_host while any HTTP/1.1 one is (one request per connection),
 * max_host_h2 while all are https ones, which multiplex. An https origin that
 * answers over HTTP/1.1 ends that for the engine's life (h1_tls): its
 * requests need a connection each, and libcurl has one limit for all hosts.
 * Never called from inside a libcurl callback. On failure the old limit
 * stays and the next change retries. */
static CURLMcode ugen_engine_host_limit(ugen_engine *e)
{
  long want = e->max_host;
  CURLMcode mc = CURLM_OK;

  /* 0 is "no limit" for both */
  if (e->nplain == 0 && !e->h1_tls && e->max_host_h2 > 0 && (want == 0 || e->max_host_h2 < want))
    want = e->max_host_h2;
  if (want != e->host_limit) {
    mc = curl_multi_setopt(e->multi, CURLMOPT_MAX_HOST_CONNECTIONS, want);
    if (mc == CURLM_OK)
      e->host_limit = want;
  }
  return mc;
}

/* Gives the easy handle back and frees what libcurl no longer needs. */
static void ugen_engine_drop_easy(ugen_engine *e, ugen_transfer *t)
{
  if (t->in_multi) {
    (void)curl_multi_remove_handle(e->multi, t->easy);
    t->in_multi = 0;
    e->inflight--;
    if (t->plain) {
      e->nplain--;
      if (ugen_engine_host_limit(e) != CURLM_OK)
        e->host_limit = -1; /* unknown: the next transfer sets it again */
    }
  }
  /* the mime handle unbinds itself from the easy handle: free it first */
  if (t->mime != NULL) {
    curl_mime_free(t->mime);
    t->mime = NULL;
  }
  if (t->easy != NULL) {
    ugen_engine_release(e, t->easy);
    t->easy = NULL;
  }
  if (t->headers != NULL) {
    curl_slist_free_all(t->headers);
    t->headers = NULL;
  }
}

static void ugen_engine_finish(ugen_engine *e, ugen_transfer *t, CURLcode code)
{
  t->code = code;
  ugen_engine_capture(t);
  if (!t->plain && !e->h1_tls && t->status > 0 &&
      (t->http_version == CURL_HTTP_VERSION_1_0 || t->http_version == CURL_HTTP_VERSION_1_1)) {
    e->h1_tls = 1; /* an https origin without HTTP/2: the HTTP/1.1 limit from now on */
    if (ugen_engine_host_limit(e) != CURLM_OK)
      e->host_limit = -1;
  }
  if (code == CURLE_OK && t->fail == F_NONE && t->out_path != NULL && t->status >= 200 &&
      t->status < 300 && t->out_mode == OUT_UNDECIDED) {
    /* empty 2xx body: the output file still has to exist */
    if (ugen_transfer_open_output(t))
      t->out_mode = OUT_FILE;
  }
  if (t->fd >= 0 && close(t->fd) != 0 && t->fail == F_NONE) {
    t->fd = -1;
    ugen_transfer_set_msg(t, F_IO, "cannot write output file", t->out_path,
                          strerror(errno));
  }
  t->fd = -1;
  ugen_engine_drop_easy(e, t);
  ugen_engine_unlink(e, t, 0);
  t->state = T_DONE;
  if (!t->sync)
    ugen_engine_push_done(e, t);
}

/* Reads every completion message. Returns how many transfers finished. */
int ugen_engine_collect(ugen_engine *e)
{
  CURLMsg *m;
  int left, n = 0;

  while ((m = curl_multi_info_read(e->multi, &left)) != NULL) {
    char *priv = NULL;
    if (m->msg != CURLMSG_DONE)
      continue;
    if (curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv) != CURLE_OK || priv == NULL)
      continue;
    if (((ugen_transfer *)(void *)priv)->closing)
      continue; /* ugen_engine_reap frees it */
    ugen_engine_finish(e, (ugen_transfer *)(void *)priv, m->data.result);
    n++;
  }
  return n;
}

/* ---- results ---------------------------------------------------------- */

static void ugen_engine_set_time(lua_State *L, const char *k, curl_off_t us)
{
  lua_pushnumber(L, (lua_Number)us / 1e6);
  lua_setfield(L, -2, k);
}

static const char *ugen_engine_version_name(long v)
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

static void ugen_engine_push_res(lua_State *L, ugen_transfer *t)
{
  const char *ver = ugen_engine_version_name(t->http_version);
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
  lua_createtable(L, 0, 7);
  ugen_engine_set_time(L, "namelookup", t->t_namelookup);
  ugen_engine_set_time(L, "connect", t->t_connect);
  ugen_engine_set_time(L, "appconnect", t->t_appconnect);
  ugen_engine_set_time(L, "pretransfer", t->t_pretransfer);
  ugen_engine_set_time(L, "starttransfer", t->t_starttransfer);
  ugen_engine_set_time(L, "total", t->t_total);
  ugen_engine_set_time(L, "redirect", t->t_redirect);
  lua_setfield(L, -2, "timing");
}

/* Pushes `res` or `nil, err` for a finished transfer whose user value
 * table is at uv; returns the number of values. */
static int ugen_engine_push_result(lua_State *L, ugen_transfer *t, int uv)
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
    ugen_engine_push_res(L, t);
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
static void ugen_transfer_unanchor(lua_State *L, int idx, ugen_transfer *t)
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

static void ugen_transfer_free(lua_State *L, ugen_transfer *t)
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
  ugen_engine_buf_free(allocf, ud, &t->body);
  ugen_engine_buf_free(allocf, ud, &t->hdrs);
  ugen_engine_buf_free(allocf, ud, &t->url);
}

/* t:close() / __gc / __close: cancel if in flight, free; idempotent. */
static int ugen_transfer_close(lua_State *L)
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
  if (ugen_engine_push_result(L, t, uv) == 1) {
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
  ugen_engine_buf_free(allocf, ud, &t->body);
  ugen_engine_buf_free(allocf, ud, &t->hdrs);
  ugen_engine_buf_free(allocf, ud, &t->url);
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
  const char *ver = t->state == T_DONE ? ugen_engine_version_name(t->http_version) : NULL;
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

/* ---- request setup ---------------------------------------------------- */

#define UGEN_REQ_ARG 2

static int ugen_engine_field(lua_State *L, int req, const char *k, int type, const char *tname)
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

static double ugen_engine_seconds(lua_State *L, int req, const char *k, double dflt)
{
  double s = dflt;
  if (ugen_engine_field(L, req, k, LUA_TNUMBER, "number")) {
    s = (double)lua_tonumber(L, -1);
    if (!(s > 0 && s <= 1e7))
      luaL_argerror(L, UGEN_REQ_ARG, lua_pushfstring(L, "req.%s: must be > 0 seconds", k));
  }
  lua_pop(L, 1);
  return s;
}

static curl_off_t ugen_engine_count(lua_State *L, int req, const char *k)
{
  curl_off_t v = -1;
  if (ugen_engine_field(L, req, k, LUA_TNUMBER, "number")) {
    double d = (double)lua_tonumber(L, -1);
    if (!ugen_engine_is_integer(d))
      luaL_argerror(L, UGEN_REQ_ARG,
                    lua_pushfstring(L, "req.%s: must be a non-negative integer", k));
    v = (curl_off_t)d;
  }
  lua_pop(L, 1);
  return v;
}

static long ugen_engine_ms(double s)
{
  double ms = ugen_engine_ceil(s * 1000.0);
  return ms < 1 ? 1L : (ms > (double)LONG_MAX ? LONG_MAX : (long)ms);
}

static const char *ugen_engine_string(lua_State *L, int req, const char *k, size_t *len)
{
  const char *s = NULL;
  if (ugen_engine_field(L, req, k, LUA_TSTRING, "string"))
    s = lua_tolstring(L, -1, len);
  /* the value stays on the stack (pinned) until the caller's settop */
  return s;
}

static int ugen_engine_token(const char *s)
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
static int ugen_engine_is_https(const char *url)
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
static CURLcode ugen_engine_apply(lua_State *L, ugen_engine *e, ugen_transfer *t, int req, int uv)
{
  size_t len = 0, body_len = 0;
  const char *url, *method, *body, *s;
  int has_mime, follow = 0, https;
  double connect_timeout, timeout, low_speed;

  /* read and check every field before touching the handle */
  url = ugen_engine_string(L, req, "url", &len);
  if (url == NULL)
    luaL_argerror(L, UGEN_REQ_ARG, "req.url: string expected, got nil");
  if (strlen(url) != len)
    luaL_argerror(L, UGEN_REQ_ARG, "req.url: contains a NUL byte");
  method = ugen_engine_string(L, req, "method", &len);
  if (method != NULL && (!ugen_engine_token(method) || strlen(method) != len))
    luaL_argerror(L, UGEN_REQ_ARG, "req.method: not an HTTP method token");
  if (ugen_engine_field(L, req, "body", LUA_TSTRING, "string")) {
    body = lua_tolstring(L, -1, &body_len);
    lua_rawseti(L, uv, UV_BODY); /* pinned for libcurl */
  } else {
    body = NULL;
    lua_pop(L, 1);
  }
  has_mime = ugen_engine_field(L, req, "mime", LUA_TTABLE, "table");
  lua_pop(L, 1);
  if (has_mime && body != NULL)
    luaL_argerror(L, UGEN_REQ_ARG, "req.body and req.mime are mutually exclusive");
  if (method == NULL)
    method = (body != NULL || has_mime) ? "POST" : "GET";
  if (strcmp(method, "HEAD") == 0 && (body != NULL || has_mime))
    luaL_argerror(L, UGEN_REQ_ARG, "req.body: a HEAD request has no body");
  connect_timeout = ugen_engine_seconds(L, req, "connect_timeout", UGEN_DEFAULT_CONNECT_TIMEOUT);
  timeout = ugen_engine_seconds(L, req, "timeout", UGEN_DEFAULT_TIMEOUT);
  low_speed = ugen_engine_seconds(L, req, "low_speed_time", 0.0);
  t->max_body = ugen_engine_count(L, req, "max_body");
  t->resume_from = ugen_engine_count(L, req, "resume_from");
  if (ugen_engine_field(L, req, "output", LUA_TSTRING, "string")) {
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
  if (ugen_engine_field(L, req, "idempotent", LUA_TBOOLEAN, "boolean"))
    t->once = !lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (ugen_engine_field(L, req, "on_progress", LUA_TFUNCTION, "function")) {
    lua_rawseti(L, uv, UV_PROGRESS);
    t->has_progress = 1;
  } else {
    lua_pop(L, 1);
  }
  /* headers: a list of "Name: value" strings */
  if (ugen_engine_field(L, req, "headers", LUA_TTABLE, "table")) {
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
  UGEN_SETOPT(t, CURLOPT_WRITEFUNCTION, ugen_engine_write_cb);
  UGEN_SETOPT(t, CURLOPT_WRITEDATA, (void *)t);
  UGEN_SETOPT(t, CURLOPT_HEADERFUNCTION, ugen_engine_header_cb);
  UGEN_SETOPT(t, CURLOPT_HEADERDATA, (void *)t);
  UGEN_SETOPT(t, CURLOPT_XFERINFOFUNCTION, ugen_engine_xferinfo_cb);
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
  UGEN_SETOPT(t, CURLOPT_CONNECTTIMEOUT_MS, ugen_engine_ms(connect_timeout));
  UGEN_SETOPT(t, CURLOPT_TIMEOUT_MS, ugen_engine_ms(timeout));
  if (low_speed > 0) {
    UGEN_SETOPT(t, CURLOPT_LOW_SPEED_LIMIT, 1L);
    UGEN_SETOPT(t, CURLOPT_LOW_SPEED_TIME, (long)ugen_engine_ceil(low_speed));
  }
  if ((s = ugen_engine_string(L, req, "cainfo", &len)) != NULL)
    UGEN_SETOPT(t, CURLOPT_CAINFO, s); /* libcurl copies strings */
  if ((s = ugen_engine_string(L, req, "capath", &len)) != NULL)
    UGEN_SETOPT(t, CURLOPT_CAPATH, s);
  https = ugen_engine_is_https(url);
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
    /* Not idempotent: libcurl must not send it twice (ugen_engine_prereq_cb).
     * Over plain HTTP (HTTP/1.1) it also takes a new connection: a kept-alive
     * one may be closed by the server just as the request goes out, and then
     * the request would fail for nothing; a new connection costs no TLS
     * handshake. Over https it shares the multiplexed connections like any
     * request (a fresh connection would be joined by other streams anyway). */
#if UGEN_HAVE_CURL_PREREQFUNC
    UGEN_SETOPT(t, CURLOPT_PREREQFUNCTION, ugen_engine_prereq_cb);
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
    if (ugen_engine_is_https(url)) {
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

/* ---- engine class ----------------------------------------------------- */

ugen_engine *ugen_engine_get(lua_State *L, int idx)
{
  ugen_engine *e = (ugen_engine *)luaL_checkudata(L, idx, UGEN_ENGINE_CLASS);
  if (e->closed)
    luaL_error(L, UGEN_ENGINE_CLASS ": handle is closed");
  return e;
}

ugen_engine *ugen_engine_get_idle(lua_State *L, int idx)
{
  ugen_engine *e = ugen_engine_get(L, idx);
  if (e->busy)
    luaL_error(L, UGEN_ENGINE_CLASS ": engine is busy (called from inside one of its callbacks)");
  return e;
}

/* Creates a transfer for the request table at index 2 of the engine at
 * index 1, leaves it on the stack and returns it. Raises on programmer
 * errors. A runtime setup failure gives a transfer that is already done
 * (its result is the error). */
static ugen_transfer *ugen_engine_new_transfer(lua_State *L, ugen_engine *e, int sync)
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
  rc = ugen_engine_apply(L, e, t, UGEN_REQ_ARG, uv);
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

/* e:submit(req) -> transfer */
static int ugen_engine_submit(lua_State *L)
{
  ugen_engine *e = ugen_engine_get_idle(L, 1);
  (void)ugen_engine_new_transfer(L, e, 0);
  return 1;
}

/* Frees the transfers closed from inside a callback. Runs between multi
 * calls (never inside a libcurl callback), on the thread that entered, with
 * the anchors table at e->anchors. Returns how many it freed. */
static int ugen_engine_reap(lua_State *L, ugen_engine *e)
{
  int n = 0;
  ugen_transfer *t = e->active;

  if (e->nclosing == 0)
    return 0;
  while (t != NULL) {
    ugen_transfer *next = t->next;
    if (t->closing) {
      ugen_engine_drop_easy(e, t);
      ugen_engine_unlink(e, t, 0);
      t->engine = NULL;
      if (t->anchored) {
        t->anchored = 0;
        lua_pushnil(L);
        ugen_rawsetp(L, e->anchors, t);
      }
      ugen_transfer_free(L, t);
      t->closing = 0;
      t->state = T_CLOSED;
      n++;
    }
    t = next;
  }
  e->nclosing = 0;
  return n;
}

/* Enters a multi call: callbacks may run Lua on L. Pushes the anchors. */
void ugen_engine_enter(lua_State *L, ugen_engine *e)
{
  ugen_getuservalue(L, 1);
  e->anchors = lua_gettop(L);
  e->L = L;
  e->busy = 1;
}

void ugen_engine_leave(lua_State *L, ugen_engine *e)
{
  (void)ugen_engine_reap(L, e);
  e->L = NULL;
  e->busy = 0;
  lua_settop(L, e->anchors - 1);
  e->anchors = 0;
}

ugen_loop *ugen_engine_loop(ugen_engine *e)
{
  return e->loop;
}

/* e:run([timeout]) -> finished transfers (array), number still running */
static int ugen_engine_run(lua_State *L)
{
  ugen_engine *e = ugen_engine_get_idle(L, 1);
  lua_Number timeout = luaL_optnumber(L, 2, 0);
  CURLMcode mc = CURLM_OK;

  luaL_argcheck(L, timeout >= 0 && timeout <= 1e7, 2, "must be between 0 and 1e7 seconds");
  lua_settop(L, 1);
  ugen_engine_enter(L, e);
  if (e->inflight > 0) {
    mc = ugen_loop_step(e->loop, 0);
    /* a transfer closed from a callback: its owner has something to do, do not wait */
    if (mc == CURLM_OK && ugen_engine_collect(e) == 0 && ugen_engine_reap(L, e) == 0 &&
        e->done == NULL && timeout > 0 && e->inflight > 0) {
      mc = ugen_loop_step(e->loop, (double)timeout);
      if (mc == CURLM_OK)
        (void)ugen_engine_collect(e);
    }
  }
  ugen_engine_leave(L, e);
  if (mc != CURLM_OK)
    return luaL_error(L, UGEN_ENGINE_CLASS ": %s", ugen_loop_strerror(e->loop, mc));
  return ugen_engine_report(L, e);
}

/* Hands out the finished transfers of the engine at index 1 (run, act). */
int ugen_engine_report(lua_State *L, ugen_engine *e)
{
  int i = 1;

  lua_newtable(L);
  ugen_getuservalue(L, 1);
  while (e->done != NULL) {
    ugen_transfer *t = e->done;
    ugen_engine_unlink(e, t, 1);
    t->engine = NULL;
    t->anchored = 0;
    ugen_rawgetp(L, -1, t);
    lua_rawseti(L, -3, i++);
    lua_pushnil(L);
    ugen_rawsetp(L, -2, t);
  }
  lua_pop(L, 1);
  lua_pushinteger(L, e->inflight);
  return 2;
}

/* e:request(req) -> res | nil, err  (blocking; drives the other transfers
 * too; those finishing meanwhile are returned by the next e:run) */
static int ugen_engine_request(lua_State *L)
{
  ugen_engine *e = ugen_engine_get_idle(L, 1);
  ugen_transfer *t;
  CURLMcode mc = CURLM_OK;
  int tidx, n;

  lua_settop(L, 2);
  t = ugen_engine_new_transfer(L, e, 1);
  tidx = lua_gettop(L);
  if (t->state != T_DONE) {
    ugen_engine_enter(L, e);
    for (;;) {
      mc = ugen_loop_step(e->loop, 1.0);
      if (mc != CURLM_OK)
        break;
      (void)ugen_engine_collect(e);
      (void)ugen_engine_reap(L, e);
      if (t->state == T_DONE)
        break;
    }
    ugen_engine_leave(L, e);
  }
  if (mc != CURLM_OK) {
    lua_pushcfunction(L, ugen_transfer_close);
    lua_pushvalue(L, tidx);
    lua_call(L, 1, 0);
    return luaL_error(L, UGEN_ENGINE_CLASS ": %s", ugen_loop_strerror(e->loop, mc));
  }
  ugen_getuservalue(L, tidx);
  n = ugen_engine_push_result(L, t, tidx + 1);
  /* close t now: its easy handle is back in the pool already */
  t->engine = NULL;
  ugen_transfer_unanchor(L, tidx, t);
  ugen_transfer_free(L, t);
  t->state = T_CLOSED;
  return n;
}

static int ugen_engine_running(lua_State *L)
{
  ugen_engine *e = ugen_engine_get(L, 1);
  lua_pushinteger(L, e->inflight);
  return 1;
}

/* e:close() / __gc / __close: aborts every transfer; idempotent. */
static int ugen_engine_close(lua_State *L)
{
  ugen_engine *e = (ugen_engine *)luaL_checkudata(L, 1, UGEN_ENGINE_CLASS);

  if (e->closed)
    return 0;
  if (e->busy)
    return luaL_error(L, UGEN_ENGINE_CLASS ": cannot close the engine from inside one of its "
                         "callbacks");
  while (e->active != NULL) {
    ugen_transfer *t = e->active;
    if (t->in_multi) {
      ugen_engine_capture(t);
      t->fail = F_ENGINE_CLOSED;
      t->code = CURLE_ABORTED_BY_CALLBACK;
      t->state = T_DONE;
    }
    ugen_transfer_close_fd(t);
    ugen_engine_drop_easy(e, t);
    ugen_engine_unlink(e, t, 0);
    t->engine = NULL;
    t->anchored = 0;
  }
  while (e->done != NULL) {
    ugen_transfer *t = e->done;
    ugen_engine_unlink(e, t, 1);
    t->engine = NULL;
    t->anchored = 0;
  }
  e->closed = 1;
  while (e->npool > 0)
    curl_easy_cleanup(e->pool[--e->npool]);
  if (e->multi != NULL) {
    (void)curl_multi_cleanup(e->multi);
    e->multi = NULL;
  }
  ugen_loop_free(e->loop);
  e->loop = NULL;
  if (e->share != NULL) {
    (void)curl_share_cleanup(e->share);
    e->share = NULL;
  }
  /* drop the anchors: transfers still referenced elsewhere stay usable */
  lua_newtable(L);
  ugen_setuservalue(L, 1);
  return 0;
}

static int ugen_engine_tostring(lua_State *L)
{
  lua_pushfstring(L, UGEN_ENGINE_CLASS ": %p", lua_touserdata(L, 1));
  return 1;
}

static long ugen_engine_opt_long(lua_State *L, int idx, const char *k, long dflt)
{
  long v = dflt;
  lua_getfield(L, idx, k);
  if (!lua_isnil(L, -1)) {
    double d;
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_argerror(L, 1, lua_pushfstring(L, "opts.%s: number expected, got %s", k,
                                          luaL_typename(L, -1)));
    d = (double)lua_tonumber(L, -1);
    if (!ugen_engine_is_integer(d) || d > 1e6)
      luaL_argerror(L, 1, lua_pushfstring(L, "opts.%s: must be an integer >= 0", k));
    v = (long)d;
  }
  lua_pop(L, 1);
  return v;
}

/* core.engine([opts]) -> engine */
static int ugen_engine_new(lua_State *L)
{
  ugen_engine *e;
  long max_host = UGEN_DEFAULT_MAX_HOST_CONNECTIONS, max_total = 0;
  long max_host_h2 = UGEN_DEFAULT_MAX_HOST_CONNECTIONS_H2, max_streams = UGEN_DEFAULT_MAX_STREAMS;
  const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
  int eidx;
  CURLMcode mc;
  CURLSHcode sc;

  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    max_host = ugen_engine_opt_long(L, 1, "max_host_connections", max_host);
    max_total = ugen_engine_opt_long(L, 1, "max_total_connections", max_total);
    max_host_h2 = ugen_engine_opt_long(L, 1, "max_host_connections_h2", max_host_h2);
    max_streams = ugen_engine_opt_long(L, 1, "max_concurrent_streams", max_streams);
    if (max_streams < 1)
      luaL_argerror(L, 1, "opts.max_concurrent_streams: must be an integer >= 1");
  }
  e = (ugen_engine *)ugen_newuserdata(L, sizeof *e);
  memset(e, 0, sizeof *e);
  eidx = lua_gettop(L);
  lua_newtable(L);
  ugen_setuservalue(L, eidx);
  luaL_getmetatable(L, UGEN_ENGINE_CLASS);
  lua_setmetatable(L, eidx);
  e->allocf = lua_getallocf(L, &e->allocud);
  e->has_h2 = vi != NULL && (vi->features & CURL_VERSION_HTTP2) != 0;
  e->max_host = max_host;
  e->max_host_h2 = max_host_h2;

  e->multi = curl_multi_init();
  e->share = curl_share_init();
  if (e->multi == NULL || e->share == NULL)
    return luaL_error(L, "not enough memory (curl_multi_init/curl_share_init)");
  if ((sc = curl_share_setopt(e->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS)) != CURLSHE_OK ||
      (sc = curl_share_setopt(e->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION)) !=
          CURLSHE_OK
#if UGEN_HAVE_CURL_SHARE_PSL
      || (sc = curl_share_setopt(e->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_PSL)) != CURLSHE_OK
#endif
  )
    return luaL_error(L, UGEN_ENGINE_CLASS ": curl_share_setopt: %s", curl_share_strerror(sc));
  /* HTTP/2 multiplexing (libcurl's default since 7.62, said here): transfers
   * to one origin share a connection up to max_streams streams at once.
   * MAXCONNECTS: idle connections kept for reuse. libcurl's default follows
   * the number of transfers in the multi handle (4 each), so after a burst of
   * polls it closed the connections the next burst needed (new TLS
   * handshakes); 2 x max_host_connections, 0 (libcurl's default) when that
   * is unlimited. */
  if ((mc = ugen_engine_host_limit(e)) != CURLM_OK ||
      (mc = curl_multi_setopt(e->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_total)) != CURLM_OK ||
      (mc = curl_multi_setopt(e->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX)) != CURLM_OK ||
      (mc = curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, max_host * 2)) != CURLM_OK
#if UGEN_HAVE_CURL_MAX_STREAMS
      || (mc = curl_multi_setopt(e->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, max_streams)) != CURLM_OK
#endif
  )
    return luaL_error(L, UGEN_ENGINE_CLASS ": curl_multi_setopt: %s", curl_multi_strerror(mc));
  if ((mc = ugen_loop_attach(e->multi, e->allocf, e->allocud, &e->loop)) != CURLM_OK)
    return luaL_error(L, UGEN_ENGINE_CLASS ": %s", ugen_loop_strerror(e->loop, mc));
  return 1;
}

static const luaL_Reg ugen_engine_methods[] = {
  { "submit", ugen_engine_submit },
  { "run", ugen_engine_run },
  { "request", ugen_engine_request },
  { "running", ugen_engine_running },
  { "close", ugen_engine_close },
  { "timeout", ugen_loop_timeout },
  { "sockets", ugen_loop_sockets },
  { "changes", ugen_loop_changes },
  { "act", ugen_loop_act },
  { NULL, NULL },
};

static const luaL_Reg ugen_engine_meta[] = {
  { "__gc", ugen_engine_close },
  { "__close", ugen_engine_close },
  { "__tostring", ugen_engine_tostring },
  { NULL, NULL },
};

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

void ugen_engine_register(lua_State *L)
{
  ugen_class(L, UGEN_ENGINE_CLASS, ugen_engine_meta, ugen_engine_methods);
  ugen_class(L, UGEN_TRANSFER_CLASS, ugen_transfer_meta, ugen_transfer_methods);
  lua_pushcfunction(L, ugen_engine_new);
  lua_setfield(L, -2, "engine");
  lua_pushcfunction(L, ugen_output_size);
  lua_setfield(L, -2, "output_size");
  lua_pushcfunction(L, ugen_output_prepare);
  lua_setfield(L, -2, "output_prepare");
  lua_pushcfunction(L, ugen_output_append);
  lua_setfield(L, -2, "output_append");
}
