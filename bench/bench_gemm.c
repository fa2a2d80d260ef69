// Side-by-side sgemm rates on the linear layers of a DINOv2 forward (batch of
// 8 at 224 px: 2056 token rows): the project's AVX2/FMA kernel (dl_gemm_nt)
// against OpenBLAS's cblas_sgemm, same process, same threads, alternating
// short repeats, best of N each (the machine is shared: the minimum time is
// the figure least disturbed by others). Besides the wall-clock rate it
// prints the rate per CPU-second of the process times the thread count: on a
// loaded machine that figure is not inflated by the time other processes
// hold the cores, so it compares kernels more steadily. Also prints the
// relative difference between the two results.
//   bench_gemm [REPEATS] [DIM]     DIM 768 (ViT-B, default) or 384 (ViT-S)
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <omp.h>

#include "common/err.h"
#include "common/timing.h"
#include "model/cpu/gemm.h"

static void fill(float *x, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    x[i] = (float)((seed >> 40) & 0xFFFFFF) / 16777216.0f - 0.5f;
  }
}

static double rel_diff(const float *x, const float *y, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    num += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    den += (double)y[i] * y[i];
  }
  return sqrt(num / den);
}

static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void run_shape(const char *name, int m, int k, int n, int repeats) {
  float *a = dl_aligned_alloc((size_t)m * k * sizeof(float)), *w = dl_aligned_alloc((size_t)n * k * sizeof(float));
  float *c0 = dl_aligned_alloc((size_t)m * n * sizeof(float)), *c1 = dl_aligned_alloc((size_t)m * n * sizeof(float));
  fill(a, (size_t)m * k, 1), fill(w, (size_t)n * k, 2);
  double best_ours = 1e30, best_blas = 1e30, cpu_ours = 1e30, cpu_blas = 1e30;
  for (int r = 0; r < repeats; r++) {
    double t0 = dl_now_seconds(), u0 = cpu_seconds();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, w, k, 0.0f, c0, n);
    double t1 = dl_now_seconds(), u1 = cpu_seconds();
    dl_gemm_nt(c1, a, w, m, k, n, NULL);
    double t2 = dl_now_seconds(), u2 = cpu_seconds();
    if (t1 - t0 < best_blas) best_blas = t1 - t0;
    if (t2 - t1 < best_ours) best_ours = t2 - t1;
    if (u1 - u0 < cpu_blas) cpu_blas = u1 - u0;
    if (u2 - u1 < cpu_ours) cpu_ours = u2 - u1;
  }
  const double flop = 2.0 * m * n * k, th = omp_get_max_threads();
  printf("%-6s m=%d k=%d n=%d wall: ours %.1f openblas %.1f GFLOP/s (%.3f)  per-cpu-s x%d: ours %.1f openblas %.1f (%.3f)"
         "  reldiff %.1e\n", name, m, k, n, flop / best_ours * 1e-9, flop / best_blas * 1e-9, best_blas / best_ours,
         (int)th, flop / cpu_ours * th * 1e-9, flop / cpu_blas * th * 1e-9, cpu_blas / cpu_ours,
         rel_diff(c1, c0, (size_t)m * n));
  free(a), free(w), free(c0), free(c1);
}

int main(int argc, char **argv) {
  const int repeats = argc > 1 ? atoi(argv[1]) : 10, D = argc > 2 ? atoi(argv[2]) : 768;
  if (repeats < 1 || D < 16) {
    fprintf(stderr, "usage: bench_gemm [REPEATS>=1] [DIM>=16]\n");
    return 2;
  }
  if (!dl_gemm_available()) {
    fprintf(stderr, "bench_gemm: this CPU lacks AVX2/FMA\n");
    return 2;
  }
  const int rows = 8 * 257;
  run_shape("qkv", rows, D, 3 * D, repeats);
  run_shape("proj", rows, D, D, repeats);
  run_shape("fc1", rows, D, 4 * D, repeats);
  run_shape("fc2", rows, 4 * D, D, repeats);
  run_shape("patch", 8 * 256, 588, D, repeats);
  return 0;
}
