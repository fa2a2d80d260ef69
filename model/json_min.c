#include "model/json_min.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

void dl_json_init(dl_json *j, const char *text, size_t n) {
  j->p = j->start = text;
  j->end = text + n;
  j->error = NULL;
}

bool dl_json_fail(dl_json *j, const char *msg) {
  if (!j->error) j->error = msg;
  return false;
}

size_t dl_json_offset(const dl_json *j) { return (size_t)(j->p - j->start); }

void dl_json_skip_ws(dl_json *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

bool dl_json_accept(dl_json *j, char c) {
  dl_json_skip_ws(j);
  if (j->p < j->end && *j->p == c) {
    j->p++;
    return true;
  }
  return false;
}

bool dl_json_expect(dl_json *j, char c) {
  if (dl_json_accept(j, c)) return true;
  if (!j->error) {
    snprintf(j->msgbuf, sizeof j->msgbuf, "expected '%c'", c);
    j->error = j->msgbuf;
  }
  return false;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static bool read_hex4(dl_json *j, unsigned *out) {
  if (j->end - j->p < 4) return dl_json_fail(j, "truncated \\u escape");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hex_value(j->p[i]);
    if (h < 0) return dl_json_fail(j, "bad \\u escape");
    v = v * 16 + (unsigned)h;
  }
  j->p += 4;
  *out = v;
  return true;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F)); return 4;
}

static bool read_escape(dl_json *j, char *o, size_t *n) {
  if (j->p >= j->end) return dl_json_fail(j, "truncated escape");
  char c = *j->p++;
  const char *simple = "\"\"\\\\//b\bf\fn\nr\rt\t";
  for (const char *s = simple; *s; s += 2)
    if (*s == c) { o[0] = s[1]; *n = 1; return true; }
  if (c != 'u') return dl_json_fail(j, "bad escape in string");
  unsigned cp;
  if (!read_hex4(j, &cp)) return false;
  if (cp >= 0xD800 && cp < 0xDC00) {  // a surrogate pair
    unsigned lo;
    if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u') return dl_json_fail(j, "lone surrogate");
    j->p += 2;
    if (!read_hex4(j, &lo) || lo < 0xDC00 || lo > 0xDFFF) return dl_json_fail(j, "bad surrogate pair");
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
  } else if (cp >= 0xDC00 && cp < 0xE000) {
    return dl_json_fail(j, "lone surrogate");
  }
  *n = put_utf8(o, cp);
  return true;
}

char *dl_json_string(dl_json *j) {
  if (!dl_json_expect(j, '"')) return NULL;
  const char *q = j->p;
  while (q < j->end && *q != '"') q += (*q == '\\') ? 2 : 1;
  if (q >= j->end) { dl_json_fail(j, "unterminated string"); return NULL; }
  // Escapes only shrink the text (\uXXXX is 6 bytes for at most 4), so the
  // raw length bounds the decoded one.
  char *out = dl_malloc((size_t)(q - j->p) + 1);
  size_t n = 0;
  while (j->p < j->end && *j->p != '"') {
    unsigned char c = (unsigned char)*j->p++;
    if (c < 0x20) { dl_json_fail(j, "control character in string"); free(out); return NULL; }
    if (c == '\\') {
      size_t k;
      if (!read_escape(j, out + n, &k)) { free(out); return NULL; }
      n += k;
    } else {
      out[n++] = (char)c;
    }
  }
  if (j->p >= j->end) { dl_json_fail(j, "unterminated string"); free(out); return NULL; }
  j->p++;
  out[n] = '\0';
  if (strlen(out) != n) { dl_json_fail(j, "NUL character in string"); free(out); return NULL; }
  return out;
}

bool dl_json_uint(dl_json *j, uint64_t *out) {
  dl_json_skip_ws(j);
  if (j->p >= j->end || *j->p < '0' || *j->p > '9') return dl_json_fail(j, "expected a non-negative integer");
  uint64_t v = 0;
  const char *first = j->p;
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
    v = v * 10 + (uint64_t)(*j->p++ - '0');
    if (v > (1ull << 53)) return dl_json_fail(j, "integer too large");
  }
  if (*first == '0' && j->p - first > 1) return dl_json_fail(j, "integer with a leading zero");
  if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E')) return dl_json_fail(j, "expected an integer");
  *out = v;
  return true;
}
