/*
 * ugen_mime.c -- multipart/form-data bodies through libcurl's MIME API.
 * Parts: { name = "...", path = "/file" | data = "...", filename = "...",
 * type = "..." }. libcurl copies names and data; file parts are read at
 * transfer time.
 */
#include <stdio.h>
#include <string.h>

#include "ugen.h"

#define UGEN_MIME_ARG 2 /* req is argument 2 of e:submit / e:request */

static const char *ugen_mime_field(lua_State *L, int part, int i, const char *k, size_t *len,
                                   int required)
{
  lua_getfield(L, part, k);
  if (lua_isnil(L, -1)) {
    if (required)
      luaL_argerror(L, UGEN_MIME_ARG,
                    lua_pushfstring(L, "req.mime[%d].%s: string expected, got nil", i, k));
    lua_pop(L, 1);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_argerror(L, UGEN_MIME_ARG, lua_pushfstring(L, "req.mime[%d].%s: string expected, got %s",
                                                    i, k, luaL_typename(L, -1)));
  /* left on the stack so the pointer stays valid; caller pops the part */
  return lua_tolstring(L, -1, len);
}

CURLcode ugen_mime_build(lua_State *L, int idx, CURL *easy, curl_mime **out, char *errbuf)
{
  int i, n = (int)ugen_rawlen(L, idx);
  curl_mime *mime;

  if (n < 1)
    luaL_argerror(L, UGEN_MIME_ARG, "req.mime: at least one part expected");
  luaL_checkstack(L, 8, "ugen.mime");
  mime = curl_mime_init(easy);
  if (mime == NULL)
    luaL_error(L, "not enough memory (curl_mime_init)");
  *out = mime;
  for (i = 1; i <= n; i++) {
    size_t name_len, data_len = 0, path_len = 0;
    const char *name, *data, *path, *filename, *type;
    curl_mimepart *part;
    CURLcode rc;
    int top = lua_gettop(L), p;

    lua_rawgeti(L, idx, i);
    p = lua_gettop(L);
    if (!lua_istable(L, p))
      luaL_argerror(L, UGEN_MIME_ARG, lua_pushfstring(L, "req.mime[%d]: table expected, got %s",
                                                      i, luaL_typename(L, p)));
    name = ugen_mime_field(L, p, i, "name", &name_len, 1);
    data = ugen_mime_field(L, p, i, "data", &data_len, 0);
    path = ugen_mime_field(L, p, i, "path", &path_len, 0);
    filename = ugen_mime_field(L, p, i, "filename", NULL, 0);
    type = ugen_mime_field(L, p, i, "type", NULL, 0);
    if ((data == NULL) == (path == NULL))
      luaL_argerror(L, UGEN_MIME_ARG,
                    lua_pushfstring(L, "req.mime[%d]: exactly one of data and path expected", i));
    if (strlen(name) != name_len || (path != NULL && strlen(path) != path_len))
      luaL_argerror(L, UGEN_MIME_ARG, lua_pushfstring(L, "req.mime[%d]: NUL byte in name or path",
                                                      i));
    part = curl_mime_addpart(mime);
    if (part == NULL)
      luaL_error(L, "not enough memory (curl_mime_addpart)");
    if ((rc = curl_mime_name(part, name)) != CURLE_OK)
      return rc;
    if (data != NULL) {
      rc = curl_mime_data(part, data, data_len);
    } else {
      rc = curl_mime_filedata(part, path);
      if (rc == CURLE_READ_ERROR)
        (void)snprintf(errbuf, 256, "cannot read file for mime part %d", i);
    }
    if (rc != CURLE_OK)
      return rc;
    if (filename != NULL && (rc = curl_mime_filename(part, filename)) != CURLE_OK)
      return rc;
    if (type != NULL && (rc = curl_mime_type(part, type)) != CURLE_OK)
      return rc;
    lua_settop(L, top);
  }
  return CURLE_OK;
}
