/*
 * ugen_engine.c -- the libcurl engine: one multi handle and one share handle
 * (DNS cache, TLS sessions, PSL) per engine, a pool of easy handles reused
 * with curl_easy_reset, the connection policy, and the engine's methods
 * (submit, run, request, running, close; the ones for a host's event loop
 * are in ugen_loop.c). One transfer is ugen_transfer.c; its state and the
 * ownership rules are in ugen_engine.h.
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
 * (ugen_transfer_prereq_cb).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "ugen_engine.h"

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

/* accepted integer counts: 0 <= d <= 9e15, integral */
int ugen_engine_is_integer(double d)
{
  return d >= 0 && d <= 9.0e15 && (double)(long long)d == d;
}

/* ---- lists ------------------------------------------------------------ */

void ugen_engine_link_active(ugen_engine *e, ugen_transfer *t)
{
  t->prev = NULL;
  t->next = e->active;
  if (e->active != NULL)
    e->active->prev = t;
  e->active = t;
}

/* unlinks t from whichever list holds it (state tells which) */
void ugen_engine_unlink(ugen_engine *e, ugen_transfer *t, int from_done)
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

void ugen_engine_push_done(ugen_engine *e, ugen_transfer *t)
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

CURL *ugen_engine_acquire(ugen_engine *e)
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

/* ---- connection policy and finishing ---------------------------------- */

/* Sets the multi handle's per-host connection limit for the transfers in
 * it: max_host while any HTTP/1.1 one is (one request per connection),
 * max_host_h2 while all are https ones, which multiplex. An https origin that
 * answers over HTTP/1.1 ends that for the engine's life (h1_tls): its
 * requests need a connection each, and libcurl has one limit for all hosts.
 * Never called from inside a libcurl callback. On failure the old limit
 * stays and the next change retries. */
CURLMcode ugen_engine_host_limit(ugen_engine *e)
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
void ugen_engine_drop_easy(ugen_engine *e, ugen_transfer *t)
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
  ugen_result_capture(t);
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

/* e:submit(req) -> transfer */
static int ugen_engine_submit(lua_State *L)
{
  ugen_engine *e = ugen_engine_get_idle(L, 1);
  (void)ugen_request_new_transfer(L, e, 0);
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
  t = ugen_request_new_transfer(L, e, 1);
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
  n = ugen_result_push(L, t, tidx + 1);
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
      ugen_result_capture(t);
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

void ugen_engine_register(lua_State *L)
{
  ugen_class(L, UGEN_ENGINE_CLASS, ugen_engine_meta, ugen_engine_methods);
  lua_pushcfunction(L, ugen_engine_new);
  lua_setfield(L, -2, "engine");
}
