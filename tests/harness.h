// A minimal test harness: every check prints what it checked and its figures,
// so a ctest log reads as a record of what was verified.
#ifndef DISTILL_TESTS_HARNESS_H
#define DISTILL_TESTS_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

extern int dl_test_failures;
extern int dl_test_checks;

#define CHECK(cond, ...)                                       \
  do {                                                         \
    dl_test_checks++;                                          \
    if (cond) {                                                \
      printf("ok   ");                                         \
    } else {                                                   \
      dl_test_failures++;                                      \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);              \
    }                                                          \
    printf(__VA_ARGS__);                                       \
    printf("\n");                                              \
  } while (0)

// ||a - b|| / ||b|| in double precision (0 when both are zero).
double dl_rel_err(const float *a, const float *b, size_t n);

// Reproducible test data: uniform floats in [-1, 1) from a 64-bit LCG whose
// state the caller keeps (and seeds); rand_vec mallocs n of them.
float dl_test_urand(uint64_t *state);
float *dl_test_rand_vec(size_t n, uint64_t *state);

// Prints the summary line and returns the process exit status.
int dl_test_summary(const char *name);

// The source tree's root, from the build (so tests find tests/ref).
#ifndef DISTILL_SOURCE_DIR
#define DISTILL_SOURCE_DIR "."
#endif

#endif
