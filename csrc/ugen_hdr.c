/*
 * ugen_hdr.c -- parsing of one response header line exactly as libcurl hands
 * it to the engine's header callback. Pure functions: no Lua, no libcurl, no
 * allocation, so the parsing of outside input can be fuzzed on its own
 * (fuzz/fuzz_header.c). ugen_engine.c's header callback only moves bytes.
 */
#include <string.h>

#include "ugen.h"

static int ugen_hdr_is_space(char c)
{
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int ugen_hdr_parse(const char *buf, size_t total, ugen_hdr_line *out)
{
  size_t len = total, colon, nl, vs;

  memset(out, 0, sizeof *out);
  while (len > 0 && (buf[len - 1] == '\r' || buf[len - 1] == '\n'))
    len--;
  out->line_len = len;
  if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0)
    return UGEN_HDR_STATUS;
  if (len == 0)
    return UGEN_HDR_IGNORE;
  /* A NUL inside would break the "name\0value\0" records (a value could end
   * early and shift every later name/value pair): such a line is dropped. */
  if (memchr(buf, '\0', len) != NULL)
    return UGEN_HDR_IGNORE;
  if (buf[0] == ' ' || buf[0] == '\t') { /* obsolete line folding */
    for (vs = 0; vs < len && ugen_hdr_is_space(buf[vs]); vs++)
      ;
    out->value_off = vs;
    out->value_len = len - vs;
    return UGEN_HDR_FOLD;
  }
  for (colon = 0; colon < len && buf[colon] != ':'; colon++)
    ;
  if (colon == len || colon == 0)
    return UGEN_HDR_IGNORE; /* not a header line */
  nl = colon;
  while (nl > 0 && ugen_hdr_is_space(buf[nl - 1]))
    nl--;
  if (nl == 0)
    return UGEN_HDR_IGNORE; /* only blanks before the colon: no name */
  for (vs = colon + 1; vs < len && ugen_hdr_is_space(buf[vs]); vs++)
    ;
  while (len > vs && ugen_hdr_is_space(buf[len - 1]))
    len--;
  out->name_len = nl;
  out->value_off = vs;
  out->value_len = len - vs;
  return UGEN_HDR_FIELD;
}

size_t ugen_hdr_record(const char *buf, const ugen_hdr_line *l, char *dst)
{
  size_t i;

  for (i = 0; i < l->name_len; i++) {
    char c = buf[i];
    dst[i] = (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
  }
  dst[l->name_len] = '\0';
  memcpy(dst + l->name_len + 1, buf + l->value_off, l->value_len);
  dst[l->name_len + 1 + l->value_len] = '\0';
  return l->name_len + 1 + l->value_len + 1;
}
