#include "tests/harness.h"

#include <stdlib.h>

int dl_test_failures = 0;
int dl_test_checks = 0;

double dl_rel_err(const float *a, const float *b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - (double)b[i];
    num += d * d;
    den += (double)b[i] * (double)b[i];
  }
  if (den == 0) return num == 0 ? 0 : INFINITY;
  if (num != num) return INFINITY;  // NaN in the output counts as a failure
  return sqrt(num / den);
}

float dl_test_urand(uint64_t *state) {
  *state = *state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((*state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

float *dl_test_rand_vec(size_t n, uint64_t *state) {
  float *v = malloc(n * sizeof *v);
  if (!v) abort();
  for (size_t i = 0; i < n; i++) v[i] = dl_test_urand(state);
  return v;
}

int dl_test_summary(const char *name) {
  printf("%s: %d checks, %d failed\n", name, dl_test_checks, dl_test_failures);
  return dl_test_failures == 0 && dl_test_checks > 0 ? 0 : 1;
}
