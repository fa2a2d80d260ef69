#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dl_fail(dl_err *err, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return -1;
}

int dl_fail_prefix(dl_err *err, const char *prefix) {
  if (err) {
    // Composed in a larger buffer, then cut to fit: the message keeps its end
    // only if the prefix is short, which paths normally are.
    char joined[2 * sizeof err->msg + 4096];
    snprintf(joined, sizeof joined, "%s: %s", prefix, err->msg);
    snprintf(err->msg, sizeof err->msg, "%.*s", (int)sizeof err->msg - 1, joined);
  }
  return -1;
}

void dl_die_input(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("distill: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(DL_EXIT_BAD_INPUT);
}

void dl_assert_fail(const char *expr, const char *file, int line) {
  fprintf(stderr, "distill: internal error: %s failed at %s:%d\n", expr, file, line);
  abort();
}

static void *check_alloc(void *p, size_t n) {
  if (!p && n) {
    fprintf(stderr, "distill: out of memory (asked for %zu bytes)\n", n);
    abort();
  }
  return p;
}

void *dl_malloc(size_t n) { return check_alloc(malloc(n ? n : 1), n); }

void *dl_calloc(size_t count, size_t size) {
  return check_alloc(calloc(count ? count : 1, size ? size : 1), count * size);
}

void *dl_grow(void *p, int n, int *cap, int first, size_t elem) {
  if (n < *cap) return p;
  *cap = *cap ? 2 * *cap : first;
  return check_alloc(realloc(p, (size_t)*cap * elem), (size_t)*cap * elem);
}

void *dl_aligned_alloc(size_t n) {
  size_t rounded = (n + 63) & ~(size_t)63;
  return check_alloc(aligned_alloc(64, rounded ? rounded : 64), n);
}
