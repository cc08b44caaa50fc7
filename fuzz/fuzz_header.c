/*
 * fuzz/fuzz_header.c -- libFuzzer target for ugen_hdr_parse/ugen_hdr_record (csrc/ugen_hdr.c),
 * the parsing of response header lines (outside input: whatever a server sends) that the
 * engine's libcurl header callback runs.
 *
 * The input is split into lines at '\n' (kept, as libcurl delivers them) and fed through a
 * copy of the callback's buffer logic. Every record is written into a buffer of exactly the
 * size the engine reserves (line_len + 2), so ASan catches any overflow. Invariants checked
 * (abort on violation):
 *   - FIELD: 1 <= name_len; name and value inside the line; the name has no ':' and no NUL and
 *     no trailing blank; the value has no leading/trailing blank and no NUL; the record is
 *     "name\0value\0" with the name lowercased;
 *   - FOLD: the value ends at the line end and has no leading blank;
 *   - at the end, the accumulated buffer splits (by NUL, as ugen_result_push_res reads it)
 *     into exactly 2 * nheaders strings: names and values stay aligned.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ugen.h"

#define CHECK(c)                                                                   \
  do {                                                                             \
    if (!(c)) {                                                                    \
      fprintf(stderr, "fuzz_header: invariant failed: %s (line %d)\n", #c, __LINE__); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

static int blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *acc = NULL;                /* the engine's t->hdrs */
  size_t acc_len = 0, nheaders = 0, pos = 0, i, n;

  acc = malloc(3 * size + 16);     /* >= the sum of every record */
  if (acc == NULL)
    return 0;
  while (pos < size) {
    size_t end = pos, llen;
    const char *line;
    char *copy, *rec;
    ugen_hdr_line l;
    int kind;

    while (end < size && data[end] != '\n')
      end++;
    if (end < size)
      end++; /* keep the '\n' */
    llen = end - pos;
    copy = malloc(llen ? llen : 1); /* exact-size copy: reads past the line are caught */
    if (copy == NULL)
      break;
    memcpy(copy, data + pos, llen);
    line = copy;
    kind = ugen_hdr_parse(line, llen, &l);
    CHECK(l.line_len <= llen);
    switch (kind) {
    case UGEN_HDR_STATUS:
      CHECK(l.line_len >= 5 && memcmp(line, "HTTP/", 5) == 0);
      acc_len = 0;
      nheaders = 0;
      break;
    case UGEN_HDR_FOLD:
      CHECK(line[0] == ' ' || line[0] == '\t');
      CHECK(l.value_off + l.value_len == l.line_len);
      CHECK(l.value_len == 0 || !blank(line[l.value_off]));
      CHECK(memchr(line + l.value_off, '\0', l.value_len) == NULL);
      if (nheaders > 0) {
        acc_len--;
        acc[acc_len++] = ' ';
        memcpy(acc + acc_len, line + l.value_off, l.value_len);
        acc_len += l.value_len;
        acc[acc_len++] = '\0';
      }
      break;
    case UGEN_HDR_FIELD:
      CHECK(l.name_len >= 1 && l.name_len <= l.line_len);
      CHECK(l.value_off > l.name_len && l.value_off + l.value_len <= l.line_len);
      CHECK(memchr(line, ':', l.name_len) == NULL);
      CHECK(memchr(line, '\0', l.line_len) == NULL);
      CHECK(!blank(line[l.name_len - 1]));
      CHECK(l.value_len == 0 || (!blank(line[l.value_off]) && !blank(line[l.value_off + l.value_len - 1])));
      rec = malloc(l.line_len + 2); /* exactly what the engine reserves */
      if (rec == NULL)
        break;
      n = ugen_hdr_record(line, &l, rec);
      CHECK(n == l.name_len + l.value_len + 2 && n <= l.line_len + 2);
      CHECK(strlen(rec) == l.name_len && strlen(rec + l.name_len + 1) == l.value_len);
      for (i = 0; i < l.name_len; i++)
        CHECK(!(rec[i] >= 'A' && rec[i] <= 'Z'));
      memcpy(acc + acc_len, rec, n);
      acc_len += n;
      nheaders++;
      free(rec);
      break;
    default:
      CHECK(kind == UGEN_HDR_IGNORE);
      break;
    }
    free(copy);
    pos = end;
  }
  /* how ugen_result_push_res reads the records back */
  {
    size_t off = 0, strings = 0;
    while (off < acc_len) {
      off += strlen(acc + off) + 1;
      strings++;
    }
    CHECK(off == acc_len);
    CHECK(strings == 2 * nheaders);
  }
  free(acc);
  return 0;
}
