/*
 * ugen_engine.h -- the state an engine and its transfers share, private to
 * the engine's files: ugen_engine.c (the engine), ugen_transfer.c (one
 * transfer), ugen_request.c (a request table -> a transfer in the multi
 * handle) and ugen_result.c (a finished transfer -> res | nil, err). Their
 * cross-file prototypes are in ugen.h.
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
 */
#ifndef UGEN_ENGINE_H
#define UGEN_ENGINE_H

#include "ugen.h"

#define UGEN_POOL_MAX 32

/* the request table is argument 2 of e:submit / e:request */
#define UGEN_REQ_ARG 2

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

struct ugen_buf {
  char *p;
  size_t len, cap;
};

struct ugen_transfer {
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
  int timing;             /* req.timing: capture the timings and res.timing */
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
  /* (req.timing only; -1 when curl_easy_getinfo failed) */
  curl_off_t t_namelookup, t_connect, t_appconnect, t_pretransfer, t_starttransfer, t_total,
      t_redirect;
  long nconnects; /* CURLINFO_NUM_CONNECTS (0: a reused connection); -1 unknown */
  ugen_buf body, hdrs, url;
  size_t nheaders;
  char errbuf[CURL_ERROR_SIZE];
  char msg[UGEN_MSG_SIZE];
};

struct ugen_engine {
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
};

#endif /* UGEN_ENGINE_H */
