// Errors that come from input (files, flags, messages) travel up as a return
// value plus one line of text; only the CLI decides to exit, with status 2.
// Programming errors (a broken invariant) abort through DL_ASSERT instead.
#ifndef DISTILL_COMMON_ERR_H
#define DISTILL_COMMON_ERR_H

#include <stddef.h>

#define DL_EXIT_BAD_INPUT 2

typedef struct dl_err {
  char msg[512];
} dl_err;

// Formats the message into err (if non-NULL) and returns -1, so a parser can
// write `return dl_fail(err, "...", ...);`.
int dl_fail(dl_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Prefixes an existing message ("FILE: " + old message).
int dl_fail_prefix(dl_err *err, const char *prefix);

// Prints "distill: MSG" and exits with status 2.
_Noreturn void dl_die_input(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Prints where an invariant broke and aborts; for bugs, not for bad input.
_Noreturn void dl_assert_fail(const char *expr, const char *file, int line);
#define DL_ASSERT(e) ((e) ? (void)0 : dl_assert_fail(#e, __FILE__, __LINE__))

// Allocation that cannot fail silently: out of memory is fatal.
void *dl_malloc(size_t n);
void *dl_calloc(size_t count, size_t size);
void *dl_aligned_alloc(size_t n);   // 64-byte aligned, free with free()
// A growing array: returns p with room for at least n + 1 elements of elem
// bytes, doubling *cap (from first) when n has reached it.
void *dl_grow(void *p, int n, int *cap, int first, size_t elem);

#endif
