/*
 * ugen_output.c -- output files (a download's ".part"): opening them safely
 * for a transfer (ugen_output_open) and core.output_size, output_prepare,
 * output_append for the Lua download code.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ugen.h"

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
int ugen_output_open(const char *path, curl_off_t keep, char *msg, size_t msgsize)
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

void ugen_output_register(lua_State *L)
{
  lua_pushcfunction(L, ugen_output_size);
  lua_setfield(L, -2, "output_size");
  lua_pushcfunction(L, ugen_output_prepare);
  lua_setfield(L, -2, "output_prepare");
  lua_pushcfunction(L, ugen_output_append);
  lua_setfield(L, -2, "output_append");
}
