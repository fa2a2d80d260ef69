#include "bench/gpu/gpu_bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double dl_bench_peak_tflops(const char *name) {
  const char *env = getenv("BENCH_PEAK_TFLOPS");
  if (env) return atof(env);
  if (strstr(name, "H100") && strstr(name, "PCIe")) return 756.0;
  if (strstr(name, "H100") || strstr(name, "H200")) return 989.4;
  if (strstr(name, "A100")) return 312.0;
  return 0.0;
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double dl_bench_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[n / 2];
}

void dl_bench_print_word(const char *name) {
  for (const char *c = name; *c; c++) putchar(*c == ' ' ? '_' : *c);
}
