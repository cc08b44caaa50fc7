/*
 * ugen.h -- internal header of the private C core `ugen.core`.
 * Includes, visibility, class names and the cross-file prototypes.
 * Every function not listed here is static to its file.
 */
#ifndef UGEN_H
#define UGEN_H

#include <stddef.h>

#include "ugen_compat.h"

#if defined(_WIN32)
#define UGEN_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define UGEN_API __attribute__((visibility("default")))
#else
#define UGEN_API
#endif

#define UGEN_VERSION "0.1.0"

/* metatable (class) names, also used in error messages and tostring */
#define UGEN_ENGINE_CLASS "ugen.engine"
#define UGEN_TRANSFER_CLASS "ugen.transfer"
#define UGEN_HMAC_KEY_CLASS "ugen.hmac_key"

UGEN_API int luaopen_ugen_core(lua_State *L);

/* ugen_core.c: registers (or refreshes) the metatable `name` with the
 * metamethods `meta`, `methods` as its __index table, and __name */
void ugen_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods);

/* ugen_core.c: lowercase hex of n bytes into out (2n bytes, not terminated) */
void ugen_hex(const unsigned char *in, size_t n, char *out);

/* ugen_hmac.c: hmac_sha256, hmac_key (class ugen.hmac_key), consteq */
void ugen_hmac_register(lua_State *L);

/* ugen_random.c: random_bytes (OpenSSL CSPRNG) */
void ugen_random_register(lua_State *L);

/* ugen_time.c: now, time, sleep */
void ugen_time_register(lua_State *L);
double ugen_time_monotonic(void);

/* ugen_err.c: error values. Each pushes nil and an err table, returns 2. */
int ugen_err_push_openssl(lua_State *L, const char *what);
/* pushes a fresh err table {kind=kind, message=msg} (one value) */
void ugen_err_new(lua_State *L, const char *kind, const char *msg);
/* err table for a finished curl transfer: kind from code, message from
 * curl_easy_strerror(code) and errbuf (may be NULL or empty) */
void ugen_err_new_curl(lua_State *L, CURLcode code, const char *errbuf);
const char *ugen_err_curl_kind(CURLcode code);

/* ugen_hdr.c: one response header line as libcurl delivers it (CR/LF
 * included). Pure; fuzzed by fuzz/fuzz_header.c. */
enum { UGEN_HDR_IGNORE, UGEN_HDR_STATUS, UGEN_HDR_FOLD, UGEN_HDR_FIELD };
typedef struct ugen_hdr_line {
  size_t line_len;  /* length without the trailing CR/LF */
  size_t name_len;  /* FIELD: the name is buf[0, name_len) (trailing blanks cut) */
  size_t value_off; /* FIELD/FOLD: the value is buf[value_off, value_off + value_len) */
  size_t value_len; /* (leading blanks cut; FIELD: trailing blanks cut too) */
} ugen_hdr_line;
/* -> UGEN_HDR_STATUS ("HTTP/..." starts a new response), UGEN_HDR_FOLD (a
 * continuation line), UGEN_HDR_FIELD ("name: value") or UGEN_HDR_IGNORE
 * (blank, no colon, an empty or all-blank name, or an embedded NUL) */
int ugen_hdr_parse(const char *buf, size_t len, ugen_hdr_line *out);
/* writes "name\0value\0" with the name lowercased into dst, which must hold
 * line_len + 2 bytes; returns the bytes written (name_len + value_len + 2) */
size_t ugen_hdr_record(const char *buf, const ugen_hdr_line *l, char *dst);

/* ugen_url.c: core.url_encode (RFC 3986 percent-encoding of one component) */
void ugen_url_register(lua_State *L);

/* ugen_json.c: core.json_clean (the null/integer rule applied after a JSON decode) */
void ugen_json_register(lua_State *L);

/* ugen_loop.c: an engine's link to libcurl's multi socket API (its watch
 * set and timer, recorded by CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION, which
 * never call Lua) and the engine methods for a host's event loop. */
typedef struct ugen_loop ugen_loop;
/* allocates the loop state (*out, NULL on failure) and installs the
 * callbacks on multi; frees with ugen_loop_free after curl_multi_cleanup */
CURLMcode ugen_loop_attach(CURLM *multi, lua_Alloc allocf, void *allocud, ugen_loop **out);
void ugen_loop_free(ugen_loop *l);
/* waits at most `wait` s (less when libcurl's timer is due earlier; 0 = only
 * look) for the watched sockets, then acts on each ready socket and on the
 * timer when due. Never raises, never calls Lua itself (the transfers'
 * callbacks may, as for any multi call). */
CURLMcode ugen_loop_step(ugen_loop *l, double wait);
/* message for a failed ugen_loop_step (poll(2) errno, memory, libcurl) */
const char *ugen_loop_strerror(const ugen_loop *l, CURLMcode mc);
/* e:timeout(), e:sockets(), e:changes(), e:act([fd [, events]]) */
int ugen_loop_timeout(lua_State *L);
int ugen_loop_sockets(lua_State *L);
int ugen_loop_changes(lua_State *L);
int ugen_loop_act(lua_State *L);

/* The engine: ugen_engine.c, ugen_transfer.c, ugen_request.c and
 * ugen_result.c share the state in ugen_engine.h; ugen_loop.c sees an engine
 * only through the functions below. */
typedef struct ugen_engine ugen_engine;
typedef struct ugen_transfer ugen_transfer;
typedef struct ugen_buf ugen_buf;
/* size of a transfer's error message (and of output_prepare's) */
#define UGEN_MSG_SIZE 256

/* ugen_engine.c: the engine class (multi + share handle, easy-handle pool,
 * connection policy, submit/run/request/running/close), core.engine */
void ugen_engine_register(lua_State *L);
/* The engine at stack index idx, raising when closed (and, for _idle, when
 * called from its callbacks). */
ugen_engine *ugen_engine_get(lua_State *L, int idx);
ugen_engine *ugen_engine_get_idle(lua_State *L, int idx);
ugen_loop *ugen_engine_loop(ugen_engine *e);
/* around a multi call on the engine at index 1 (callbacks may run Lua on L) */
void ugen_engine_enter(lua_State *L, ugen_engine *e);
void ugen_engine_leave(lua_State *L, ugen_engine *e);
/* reads libcurl's completion messages; returns how many transfers finished */
int ugen_engine_collect(ugen_engine *e);
/* pushes the transfers finished since the last report (array, each once)
 * and the number still running; returns 2 */
int ugen_engine_report(lua_State *L, ugen_engine *e);
/* the transfer lists (active, done), the easy-handle pool, the per-host
 * connection limit, and giving a transfer's easy handle back */
void ugen_engine_link_active(ugen_engine *e, ugen_transfer *t);
void ugen_engine_unlink(ugen_engine *e, ugen_transfer *t, int from_done);
void ugen_engine_push_done(ugen_engine *e, ugen_transfer *t);
CURL *ugen_engine_acquire(ugen_engine *e);
CURLMcode ugen_engine_host_limit(ugen_engine *e);
void ugen_engine_drop_easy(ugen_engine *e, ugen_transfer *t);
/* 0 <= d <= 9e15 and integral */
int ugen_engine_is_integer(double d);

/* ugen_transfer.c: one transfer: the transfer class, its buffers, its
 * libcurl callbacks (never raise) and its idempotent close */
void ugen_transfer_register(lua_State *L);
int ugen_transfer_buf_add(ugen_engine *e, ugen_buf *b, const char *s, size_t n);
void ugen_transfer_close_fd(ugen_transfer *t);
void ugen_transfer_set_msg(ugen_transfer *t, int fail, const char *what, const char *path,
                           const char *detail);
int ugen_transfer_open_output(ugen_transfer *t);
size_t ugen_transfer_write_cb(char *ptr, size_t size, size_t nmemb, void *ud);
size_t ugen_transfer_header_cb(char *buf, size_t size, size_t nitems, void *ud);
int ugen_transfer_xferinfo_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                              curl_off_t ulnow);
#if UGEN_HAVE_CURL_PREREQFUNC
int ugen_transfer_prereq_cb(void *ud, char *conn_primary_ip, char *conn_local_ip,
                            int conn_primary_port, int conn_local_port);
#endif
void ugen_transfer_unanchor(lua_State *L, int idx, ugen_transfer *t);
void ugen_transfer_free(lua_State *L, ugen_transfer *t);
int ugen_transfer_close(lua_State *L); /* t:close(), __gc, __close */

/* ugen_request.c: a transfer for the request table at index 2 of the engine
 * at index 1, left on the stack; sync: for e:request (never reported) */
ugen_transfer *ugen_request_new_transfer(lua_State *L, ugen_engine *e, int sync);

/* ugen_result.c: what a finished transfer returns */
void ugen_result_capture(ugen_transfer *t);
const char *ugen_result_version_name(long v);
int ugen_result_push(lua_State *L, ugen_transfer *t, int uv);

/* ugen_output.c: output files, core.output_size/output_prepare/output_append */
void ugen_output_register(lua_State *L);
int ugen_output_open(const char *path, curl_off_t keep, char *msg, size_t msgsize);

/* ugen_mime.c: builds a curl_mime from the Lua parts list at idx for easy.
 * Raises on wrong types (programmer errors); on a runtime failure (file not
 * readable, libcurl error) returns a CURLcode and writes a message into
 * errbuf (CURL_ERROR_SIZE bytes). *out is set as soon as the mime handle
 * exists, so the caller owns it even when this function raises. */
CURLcode ugen_mime_build(lua_State *L, int idx, CURL *easy, curl_mime **out, char *errbuf);

#endif /* UGEN_H */
