/*
 * ugen_loop.c -- the engine's side of libcurl's multi socket API, and the
 * methods that let a foreign event loop drive an engine.
 *
 * An engine drives its multi handle only through curl_multi_socket_action
 * (never curl_multi_perform: libcurl advises against mixing the two):
 * - CURLMOPT_SOCKETFUNCTION records, per socket, what libcurl wants (in,
 *   out, inout) in the watch set below; CURLMOPT_TIMERFUNCTION records when
 *   libcurl wants to be called for its timer (an absolute monotonic time, or
 *   none). Both callbacks only write C memory: they never call Lua, never
 *   raise (pull model).
 * - e:run and e:request wait with poll(2) on the watch set for at most the
 *   time left until the timer, then act on each ready socket and on the timer
 *   when it is due (ugen_loop_step).
 * - A host with its own loop reads the watch set (e:sockets, e:changes) and
 *   the timer (e:timeout), watches them itself and calls e:act.
 *
 * Watch set: one entry per socket number, with what libcurl wants now
 * (`what`, 0 = nothing), what e:changes() last reported (`seen`) and whether
 * libcurl dropped the socket since then (`gone`: the number may now name
 * another socket, so the host has to drop its watcher first). An entry lives
 * while libcurl watches the socket or the host may still watch it, so the
 * set stays bounded whether or not a host ever calls e:changes().
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>

#include "ugen.h"

typedef struct ugen_loop_sock {
  curl_socket_t fd;
  int what; /* CURL_POLL_IN / OUT / INOUT wanted now; 0 = not watched */
  int seen; /* what e:changes() last reported; 0 = nothing */
  int gone; /* dropped by libcurl since e:changes() reported it */
} ugen_loop_sock;

struct ugen_loop {
  CURLM *multi;
  ugen_loop_sock *socks;
  size_t nsocks, cap;
  struct pollfd *pfds; /* scratch for poll(2) */
  size_t pcap;
  double deadline; /* libcurl's timer, monotonic seconds (when has_timer) */
  int has_timer;
  unsigned timer_calls, sock_calls; /* bumped by the callbacks */
  int nomem;                        /* the socket callback could not record a socket */
  int poll_errno;                   /* errno of a failed poll(2), else 0 */
  lua_Alloc allocf;
  void *allocud;
};

/* ---- memory through the Lua allocator (never raises) ------------------ */

static void *ugen_loop_grow(ugen_loop *l, void *p, size_t *cap, size_t need, size_t elem)
{
  size_t ncap = *cap ? *cap : 8;
  void *np;

  while (ncap < need) {
    if (ncap > ((size_t)-1) / 2 / elem)
      return NULL;
    ncap *= 2;
  }
  np = l->allocf(l->allocud, p, p != NULL ? *cap * elem : 0, ncap * elem);
  if (np != NULL)
    *cap = ncap;
  return np;
}

/* ---- the watch set ---------------------------------------------------- */

static ugen_loop_sock *ugen_loop_find(ugen_loop *l, curl_socket_t fd)
{
  size_t i;
  for (i = 0; i < l->nsocks; i++)
    if (l->socks[i].fd == fd)
      return &l->socks[i];
  return NULL;
}

static void ugen_loop_drop(ugen_loop *l, ugen_loop_sock *k)
{
  *k = l->socks[--l->nsocks]; /* order does not matter */
}

/* CURLMOPT_SOCKETFUNCTION: record what libcurl wants for s. Never calls Lua. */
static int ugen_loop_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
  ugen_loop *l = (ugen_loop *)userp;
  ugen_loop_sock *k = ugen_loop_find(l, s);

  (void)easy;
  (void)socketp;
  l->sock_calls++;
  if (what == CURL_POLL_IN || what == CURL_POLL_OUT || what == CURL_POLL_INOUT) {
    if (k == NULL) {
      if (l->nsocks == l->cap) {
        ugen_loop_sock *p = (ugen_loop_sock *)ugen_loop_grow(l, l->socks, &l->cap, l->nsocks + 1,
                                                             sizeof *p);
        if (p == NULL) {
          l->nomem = 1;
          return -1; /* libcurl fails the transfers; the engine raises */
        }
        l->socks = p;
      }
      k = &l->socks[l->nsocks++];
      k->fd = s;
      k->seen = 0;
      k->gone = 0;
    }
    k->what = what;
  } else if (k != NULL) { /* CURL_POLL_REMOVE (or CURL_POLL_NONE): nothing to watch */
    k->what = 0;
    if (k->seen)
      k->gone = 1;
    else
      ugen_loop_drop(l, k);
  }
  return 0;
}

/* ---- the timer -------------------------------------------------------- */

static void ugen_loop_set_timer(ugen_loop *l, long timeout_ms)
{
  if (timeout_ms < 0) {
    l->has_timer = 0;
  } else {
    l->deadline = ugen_time_monotonic() + (double)timeout_ms / 1000.0;
    l->has_timer = 1;
  }
}

/* CURLMOPT_TIMERFUNCTION: -1 = no timer, else act in timeout_ms (0 = now). */
static int ugen_loop_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
  ugen_loop *l = (ugen_loop *)userp;

  (void)multi;
  l->timer_calls++;
  ugen_loop_set_timer(l, timeout_ms);
  return 0;
}

/* ---- acting ----------------------------------------------------------- */

static CURLMcode ugen_loop_act_socket(ugen_loop *l, curl_socket_t fd, int ev)
{
  int running;
  CURLMcode mc = curl_multi_socket_action(l->multi, fd, ev, &running);
  return mc == CURLM_OK && l->nomem ? CURLM_OUT_OF_MEMORY : mc;
}

static CURLMcode ugen_loop_act_timer(ugen_loop *l)
{
  unsigned calls = l->timer_calls;
  int running;
  long ms;
  CURLMcode mc = curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);

  /* libcurl calls the timer callback only when its next timeout changes; if
   * it did not (called a hair early, nothing expired), ask it, so a stale
   * past deadline never makes the caller spin */
  if (mc == CURLM_OK && l->timer_calls == calls && l->has_timer) {
    mc = curl_multi_timeout(l->multi, &ms);
    if (mc == CURLM_OK)
      ugen_loop_set_timer(l, ms);
  }
  return mc == CURLM_OK && l->nomem ? CURLM_OUT_OF_MEMORY : mc;
}

/* poll(2) result -> CURL_CSELECT_* (as libcurl maps its own poll results) */
static int ugen_loop_cselect(short revents, short events)
{
  int ev = 0;
  if ((events & POLLIN) && (revents & (POLLIN | POLLERR | POLLHUP)))
    ev |= CURL_CSELECT_IN;
  if ((events & POLLOUT) && (revents & (POLLOUT | POLLERR | POLLHUP)))
    ev |= CURL_CSELECT_OUT;
  if (revents & (POLLERR | POLLNVAL))
    ev |= CURL_CSELECT_ERR;
  return ev;
}

static int ugen_loop_ms(double s)
{
  double ms;
  if (s <= 0)
    return 0;
  ms = s * 1000.0;
  if (ms >= (double)INT_MAX)
    return INT_MAX;
  return (int)ms + ((double)(int)ms < ms); /* ceil: never wake before the time */
}

CURLMcode ugen_loop_step(ugen_loop *l, double wait)
{
  double now = 0, end;
  size_t i, n = 0;
  int ready = 0;
  unsigned gen;

  l->poll_errno = 0;
  if (l->nomem)
    return CURLM_OUT_OF_MEMORY;
  if (l->has_timer || wait > 0) {
    now = ugen_time_monotonic();
    if (l->has_timer && l->deadline - now < wait)
      wait = l->deadline - now;
  }
  if (wait < 0)
    wait = 0;
  if (l->nsocks > l->pcap) {
    struct pollfd *p = (struct pollfd *)ugen_loop_grow(l, l->pfds, &l->pcap, l->nsocks, sizeof *p);
    if (p == NULL)
      return CURLM_OUT_OF_MEMORY;
    l->pfds = p;
  }
  for (i = 0; i < l->nsocks; i++) {
    int what = l->socks[i].what;
    if (what == 0)
      continue;
    l->pfds[n].fd = l->socks[i].fd;
    l->pfds[n].events = (short)(((what & CURL_POLL_IN) ? POLLIN : 0) |
                                ((what & CURL_POLL_OUT) ? POLLOUT : 0));
    l->pfds[n].revents = 0;
    n++;
  }
  if (n > 0 || wait > 0) {
    end = now + wait;
    for (;;) {
      ready = poll(n > 0 ? l->pfds : NULL, (nfds_t)n, ugen_loop_ms(wait));
      if (ready >= 0)
        break;
      if (errno != EINTR) {
        l->poll_errno = errno;
        return CURLM_INTERNAL_ERROR;
      }
      ready = 0; /* interrupted: revents are not meaningful */
      if (wait <= 0)
        break;
      wait = end - ugen_time_monotonic();
      if (wait <= 0)
        break;
    }
  }
  /* acting on one socket may drop or replace others (sock_calls moves):
   * then each socket is checked against the watch set before acting */
  gen = l->sock_calls;
  for (i = 0; i < n && ready > 0; i++) {
    const struct pollfd *p = &l->pfds[i];
    CURLMcode mc;
    if (p->revents == 0)
      continue;
    ready--;
    if (l->sock_calls != gen) {
      const ugen_loop_sock *k = ugen_loop_find(l, p->fd);
      if (k == NULL || k->what == 0)
        continue;
    }
    mc = ugen_loop_act_socket(l, p->fd, ugen_loop_cselect(p->revents, p->events));
    if (mc != CURLM_OK)
      return mc;
  }
  if (l->has_timer && l->deadline <= ugen_time_monotonic())
    return ugen_loop_act_timer(l);
  return CURLM_OK;
}

const char *ugen_loop_strerror(const ugen_loop *l, CURLMcode mc)
{
  if (l != NULL && l->poll_errno != 0)
    return strerror(l->poll_errno);
  if (mc == CURLM_OUT_OF_MEMORY || (l != NULL && l->nomem))
    return "not enough memory (socket watch set)";
  return curl_multi_strerror(mc);
}

/* ---- setup ------------------------------------------------------------ */

CURLMcode ugen_loop_attach(CURLM *multi, lua_Alloc allocf, void *allocud, ugen_loop **out)
{
  ugen_loop *l = (ugen_loop *)allocf(allocud, NULL, 0, sizeof *l);
  CURLMcode mc;

  *out = l;
  if (l == NULL)
    return CURLM_OUT_OF_MEMORY;
  memset(l, 0, sizeof *l);
  l->multi = multi;
  l->allocf = allocf;
  l->allocud = allocud;
  if ((mc = curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, ugen_loop_socket_cb)) != CURLM_OK ||
      (mc = curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, (void *)l)) != CURLM_OK ||
      (mc = curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, ugen_loop_timer_cb)) != CURLM_OK ||
      (mc = curl_multi_setopt(multi, CURLMOPT_TIMERDATA, (void *)l)) != CURLM_OK)
    return mc;
  return CURLM_OK;
}

void ugen_loop_free(ugen_loop *l)
{
  if (l == NULL)
    return;
  if (l->socks != NULL)
    (void)l->allocf(l->allocud, l->socks, l->cap * sizeof *l->socks, 0);
  if (l->pfds != NULL)
    (void)l->allocf(l->allocud, l->pfds, l->pcap * sizeof *l->pfds, 0);
  (void)l->allocf(l->allocud, l, sizeof *l, 0);
}

/* ---- Lua methods for a host's event loop ------------------------------ */

static const char *ugen_loop_what_name(int what)
{
  switch (what) {
  case CURL_POLL_IN:
    return "in";
  case CURL_POLL_OUT:
    return "out";
  case CURL_POLL_INOUT:
    return "inout";
  default:
    return "remove";
  }
}

/* e:timeout() -> seconds until libcurl's timer is due (0: act now), or nil */
int ugen_loop_timeout(lua_State *L)
{
  ugen_loop *l = ugen_engine_loop(ugen_engine_get(L, 1));
  double d;

  if (!l->has_timer) {
    lua_pushnil(L);
    return 1;
  }
  d = l->deadline - ugen_time_monotonic();
  lua_pushnumber(L, (lua_Number)(d > 0 ? d : 0));
  return 1;
}

/* e:sockets() -> { [fd] = "in" | "out" | "inout" } */
int ugen_loop_sockets(lua_State *L)
{
  ugen_loop *l = ugen_engine_loop(ugen_engine_get(L, 1));
  size_t i;

  lua_createtable(L, 0, (int)(l->nsocks < 64 ? l->nsocks : 64));
  for (i = 0; i < l->nsocks; i++) {
    if (l->socks[i].what == 0)
      continue;
    lua_pushstring(L, ugen_loop_what_name(l->socks[i].what));
    lua_rawseti(L, -2, (int)l->socks[i].fd);
  }
  return 1;
}

static void ugen_loop_push_change(lua_State *L, int *i, curl_socket_t fd, int what)
{
  lua_createtable(L, 2, 0);
  lua_pushinteger(L, (lua_Integer)fd);
  lua_rawseti(L, -2, 1);
  lua_pushstring(L, ugen_loop_what_name(what));
  lua_rawseti(L, -2, 2);
  lua_rawseti(L, -2, (*i)++);
}

/* e:changes() -> { {fd, "remove"}..., {fd, "in" | "out" | "inout"}... }:
 * first every socket dropped since the last call that the host watched,
 * then every socket whose interest is new or changed. The state moves on
 * only once the whole table is built (a memory error loses nothing). */
int ugen_loop_changes(lua_State *L)
{
  ugen_loop *l = ugen_engine_loop(ugen_engine_get(L, 1));
  size_t i;
  int n = 1;

  lua_newtable(L);
  for (i = 0; i < l->nsocks; i++)
    if (l->socks[i].gone && l->socks[i].seen)
      ugen_loop_push_change(L, &n, l->socks[i].fd, CURL_POLL_REMOVE);
  for (i = 0; i < l->nsocks; i++) {
    const ugen_loop_sock *k = &l->socks[i];
    if (k->what != 0 && (k->what != k->seen || k->gone))
      ugen_loop_push_change(L, &n, k->fd, k->what);
  }
  for (i = l->nsocks; i > 0; i--) {
    ugen_loop_sock *k = &l->socks[i - 1];
    k->seen = k->what;
    k->gone = 0;
    if (k->what == 0)
      ugen_loop_drop(l, k);
  }
  return 1;
}

/* e:act([fd [, events]]) -> finished transfers, number still running.
 * With fd: libcurl acts on that socket, events a string of "r" (readable),
 * "w" (writable), "e" (error); other letters are ignored; none: libcurl
 * checks the socket itself. Without fd: libcurl acts on its timer. */
int ugen_loop_act(lua_State *L)
{
  struct ugen_engine *e = ugen_engine_get_idle(L, 1);
  ugen_loop *l = ugen_engine_loop(e);
  CURLMcode mc;
  int timer = lua_isnoneornil(L, 2), ev = 0;
  curl_socket_t fd = CURL_SOCKET_BAD;

  if (!timer) {
    lua_Number d;
    if (lua_type(L, 2) != LUA_TNUMBER)
      return luaL_argerror(L, 2, lua_pushfstring(L, "fd: number expected, got %s",
                                                 luaL_typename(L, 2)));
    d = lua_tonumber(L, 2);
    if (!(d >= 0 && d <= (lua_Number)INT_MAX) || (lua_Number)(int)d != d)
      return luaL_argerror(L, 2, "fd: must be an integer >= 0");
    fd = (curl_socket_t)(int)d;
    if (!lua_isnoneornil(L, 3)) {
      const char *s;
      if (lua_type(L, 3) != LUA_TSTRING)
        return luaL_argerror(L, 3, lua_pushfstring(L, "events: string expected, got %s",
                                                   luaL_typename(L, 3)));
      for (s = lua_tostring(L, 3); *s != '\0'; s++) {
        if (*s == 'r')
          ev |= CURL_CSELECT_IN;
        else if (*s == 'w')
          ev |= CURL_CSELECT_OUT;
        else if (*s == 'e')
          ev |= CURL_CSELECT_ERR;
      }
    }
  } else if (lua_gettop(L) > 2 && !lua_isnil(L, 3)) {
    return luaL_argerror(L, 3, "events given without fd");
  }
  lua_settop(L, 1);
  ugen_engine_enter(L, e);
  l->poll_errno = 0;
  if (l->nomem)
    mc = CURLM_OUT_OF_MEMORY;
  else if (timer)
    mc = ugen_loop_act_timer(l);
  else
    mc = ugen_loop_act_socket(l, fd, ev);
  if (mc == CURLM_OK)
    (void)ugen_engine_collect(e);
  ugen_engine_leave(L, e);
  if (mc != CURLM_OK)
    return luaL_error(L, UGEN_ENGINE_CLASS ": %s", ugen_loop_strerror(l, mc));
  return ugen_engine_report(L, e);
}
