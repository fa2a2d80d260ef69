// The own AVX2/FMA sgemm (model/cpu/gemm.c) against a double-precision
// reference: shapes with ragged edges in every dimension (rows not a multiple
// of the 6-row panels, columns not a multiple of 16, inner sizes not a
// multiple of 8 and larger than one cache block), every epilogue, called from
// serial code and from inside a parallel region, and the linear-layer ops
// built on it (dl_linear_gelu, dl_linear_residual) on both their paths (own
// kernel for large shapes, OpenBLAS plus separate passes for small ones), and
// a call from a thread that ends (its packed buffer is freed: no leak under
// the sanitizers).
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu/gemm.h"
#include "model/cpu/ops.h"
#include "tests/harness.h"

static uint64_t g_state = 7;
static float *rand_vec(size_t n) { return dl_test_rand_vec(n, &g_state); }

typedef struct shape { int m, k, n; } shape;

// ref = what the epilogue should produce; res0 is the residual's start value.
static void reference(float *ref, const float *a, const float *w, int m, int k, int n,
                      const dl_gemm_epilogue *ep, const float *res0) {
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double v = 0;
      for (int p = 0; p < k; p++) v += (double)a[(size_t)i * k + p] * w[(size_t)j * k + p];
      if (ep->bias) v += ep->bias[j];
      if (ep->gelu) v = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
      if (ep->residual) v = res0[(size_t)i * n + j] + (ep->gamma ? ep->gamma[j] : 1.0) * v;
      ref[(size_t)i * n + j] = (float)v;
    }
}

static const char *epilogue_name(int e) {
  static const char *names[] = {"none", "bias", "bias+gelu", "bias+layerscale residual", "residual"};
  return names[e];
}

static void check_shape(shape s, int e, bool in_parallel) {
  const size_t mn = (size_t)s.m * s.n;
  float *a = rand_vec((size_t)s.m * s.k), *w = rand_vec((size_t)s.n * s.k), *bias = rand_vec(s.n);
  float *gamma = rand_vec(s.n), *res0 = rand_vec(mn), *res = malloc(mn * sizeof *res);
  float *c = malloc(mn * sizeof *c), *ref = malloc(mn * sizeof *ref);
  memcpy(res, res0, mn * sizeof *res);
  dl_gemm_epilogue ep = {0};
  if (e >= 1 && e <= 3) ep.bias = bias;
  if (e == 2) ep.gelu = true;
  if (e >= 3) ep.residual = res;
  if (e == 3) ep.gamma = gamma;
  reference(ref, a, w, s.m, s.k, s.n, &ep, res0);
  if (in_parallel) {
#pragma omp parallel num_threads(2)
    {
#pragma omp single
      dl_gemm_nt(c, a, w, s.m, s.k, s.n, &ep);
    }
  } else {
    dl_gemm_nt(c, a, w, s.m, s.k, s.n, &ep);
  }
  double err = dl_rel_err(ep.residual ? res : c, ref, mn);
  CHECK(err < 1e-5, "gemm %dx%d x %dx%d^T, epilogue %s%s: relative error %.3g < 1e-5", s.m, s.k, s.n, s.k,
        epilogue_name(e), in_parallel ? ", inside a parallel region" : "", err);
  free(a); free(w); free(bias); free(gamma); free(res0); free(res); free(c); free(ref);
}

// From a thread that then ends: the per-thread packed copy of W must be freed
// with it (the sanitizer build's leak check sees it otherwise).
static void *gemm_in_thread(void *arg) {
  check_shape(*(const shape *)arg, 1, false);
  return NULL;
}

// dl_gemm_nn (C = A B) and dl_gemm_tn (C += A^T B, C starting nonzero) at
// the chosen level, serial and inside a parallel region, against double.
static void check_backward_forms(shape s, bool in_parallel) {
  const size_t mn = (size_t)s.m * s.n;
  float *a = rand_vec((size_t)s.m * s.k), *b = rand_vec((size_t)s.k * s.n), *c0 = rand_vec(mn);
  float *c = malloc(mn * sizeof *c), *ref = malloc(mn * sizeof *ref);
  for (int tn = 0; tn < 2; tn++) {
    for (int i = 0; i < s.m; i++)
      for (int j = 0; j < s.n; j++) {
        double v = tn ? c0[(size_t)i * s.n + j] : 0.0;
        for (int p = 0; p < s.k; p++)
          v += (double)(tn ? a[(size_t)p * s.m + i] : a[(size_t)i * s.k + p]) * b[(size_t)p * s.n + j];
        ref[(size_t)i * s.n + j] = (float)v;
      }
    memcpy(c, c0, mn * sizeof *c);
#pragma omp parallel num_threads(in_parallel ? 2 : 1)
    {
#pragma omp single
      {
        if (tn) dl_gemm_tn(c, a, b, s.m, s.k, s.n, true);
        else dl_gemm_nn(c, a, b, s.m, s.k, s.n, false);
      }
    }
    double err = dl_rel_err(c, ref, mn);
    CHECK(err < 1e-5, "gemm %s %dx%dx%d%s: relative error %.3g < 1e-5", tn ? "TN (C += A^T B)" : "NN (C = A B)",
          s.m, s.k, s.n, in_parallel ? ", inside a parallel region" : "", err);
  }
  free(a); free(b); free(c0); free(c); free(ref);
}

// An inner size whose packed W exceeds one chunk (gemm_driver.inc: 8 Mi
// floats, here k = 140000 at n = 64 packs in two chunks): the chunks must
// accumulate like one pass, and the epilogue run once, at the end. NT with
// bias + GELU, and TN accumulating onto a nonzero C.
static void check_chunked_inner(void) {
  const int m = 13, k = 140000, n = 64;
  const size_t mn = (size_t)m * n;
  float *a = rand_vec((size_t)m * k), *w = rand_vec((size_t)n * k), *bias = rand_vec(n), *c0 = rand_vec(mn);
  float *c = malloc(mn * sizeof *c), *ref = malloc(mn * sizeof *ref);
  dl_gemm_epilogue ep = {.bias = bias, .gelu = true};
  reference(ref, a, w, m, k, n, &ep, NULL);
  dl_gemm_nt(c, a, w, m, k, n, &ep);
  double err = dl_rel_err(c, ref, mn);
  CHECK(err < 1e-5, "gemm NT %dx%d x %dx%d^T (W packed in chunks), bias+gelu: relative error %.3g < 1e-5", m, k, n, k,
        err);
  // TN: a read as [k, m], w as [k, n].
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double v = c0[(size_t)i * n + j];
      for (int p = 0; p < k; p++) v += (double)a[(size_t)p * m + i] * w[(size_t)p * n + j];
      ref[(size_t)i * n + j] = (float)v;
    }
  memcpy(c, c0, mn * sizeof *c);
  dl_gemm_tn(c, a, w, m, k, n, true);
  err = dl_rel_err(c, ref, mn);
  CHECK(err < 1e-5, "gemm TN (C += A^T B) %dx%dx%d (B packed in chunks): relative error %.3g < 1e-5", m, k, n, err);
  free(a); free(w); free(bias); free(c0); free(c); free(ref);
}

// dl_linear_gelu and dl_linear_residual give the same values whichever path
// (own kernel or OpenBLAS plus separate passes) the shape selects.
static void check_linear_ops(shape s) {
  const size_t mn = (size_t)s.m * s.n;
  float *x = rand_vec((size_t)s.m * s.k), *w = rand_vec((size_t)s.n * s.k), *b = rand_vec(s.n);
  float *g = rand_vec(s.n), *res0 = rand_vec(mn), *res = malloc(mn * sizeof *res);
  float *y = malloc(mn * sizeof *y), *ref = malloc(mn * sizeof *ref);
  dl_gemm_epilogue ep = {.bias = b, .gelu = true};
  reference(ref, x, w, s.m, s.k, s.n, &ep, NULL);
  dl_linear_gelu(y, x, w, b, s.m, s.k, s.n);
  double e1 = dl_rel_err(y, ref, mn);
  CHECK(e1 < 1e-5, "linear+gelu %dx%d -> %d: relative error %.3g < 1e-5", s.m, s.k, s.n, e1);
  memcpy(res, res0, mn * sizeof *res);
  ep = (dl_gemm_epilogue){.bias = b, .residual = res, .gamma = g};
  reference(ref, x, w, s.m, s.k, s.n, &ep, res0);
  dl_linear_residual(res, y, x, w, b, g, s.m, s.k, s.n);
  double e2 = dl_rel_err(res, ref, mn);
  CHECK(e2 < 1e-5, "linear+layerscale residual %dx%d -> %d: relative error %.3g < 1e-5", s.m, s.k, s.n, e2);
  free(x); free(w); free(b); free(g); free(res0); free(res); free(y); free(ref);
}

int main(void) {
  if (!dl_gemm_available()) {
    printf("note: this CPU lacks AVX2/FMA: the own sgemm is not used, OpenBLAS serves every shape\n");
    shape small = {37, 29, 23}, large = {70, 64, 80};
    check_linear_ops(small);
    check_linear_ops(large);
    return dl_test_summary("test_gemm");
  }
  const shape shapes[] = {{1, 1, 1}, {6, 16, 16}, {7, 5, 3}, {13, 300, 17}, {61, 777, 45}, {100, 33, 130},
                          {257, 64, 192}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    for (int e = 0; e < 5; e++) check_shape(shapes[i], e, false);
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) check_backward_forms(shapes[i], false);
  check_backward_forms((shape){100, 300, 130}, true);
  check_chunked_inner();
  check_shape((shape){61, 777, 45}, 2, true);
  check_shape((shape){100, 300, 130}, 3, true);
  pthread_t th;
  const shape threaded = {100, 300, 130};
  pthread_create(&th, NULL, gemm_in_thread, (void *)&threaded);
  pthread_join(th, NULL);
  check_linear_ops((shape){37, 29, 23});   // OpenBLAS path
  check_linear_ops((shape){130, 520, 96}); // own kernel, two inner blocks
  return dl_test_summary("test_gemm");
}
