#include "model/cpu/ops_backward.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "model/cpu/gemm.h"
#include "model/cpu/ops.h"
#include "model/cpu/row_kernels.h"

void dl_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int m, int k, int n, const float *ones, int accumulate_dx) {
  // Our own sgemm's NN and TN forms (gemm.h): OpenBLAS's threading spent
  // part of the backward spinning and yielding on the 2-core machines.
  if (dx) dl_gemm_nn(dx, dy, w, m, n, k, accumulate_dx != 0);
  if (dw) dl_gemm_tn(dw, dy, x, n, m, k, true);
  // Column sums as a matrix-vector product with ones: threaded by OpenBLAS.
  if (db) cblas_sgemv(CblasRowMajor, CblasTrans, m, n, 1.0f, dy, n, ones, 1, 1.0f, db, 1);
}

void dl_layernorm_stats(float *mean, float *rstd, const float *x, int rows, int d, float eps) {
  const dl_row_kernel_table *k = dl_row_kernels();
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) k->layernorm_stats(mean + r, rstd + r, x + (size_t)r * d, d, eps);
}

size_t dl_layernorm_backward_scratch_floats(int d) { return 2 * (size_t)d * (size_t)omp_get_max_threads(); }

void dl_layernorm_backward(float *dx, float *dg, float *db, const float *dy, const float *x,
                           const float *g, const float *mean, const float *rstd, int rows, int d,
                           float *scratch) {
  const int nt = omp_get_max_threads();
  const dl_row_kernel_table *k = dl_row_kernels();
  memset(scratch, 0, 2 * (size_t)d * nt * sizeof(float));
  // Each thread sums its rows' parameter gradients privately; one pass at the
  // end adds the partial sums (no atomics, deterministic for a thread count).
#pragma omp parallel
  {
    float *pg = scratch + 2 * (size_t)d * omp_get_thread_num(), *pb = pg + d;
#pragma omp for schedule(static)
    for (int r = 0; r < rows; r++)
      k->layernorm_backward(dx + (size_t)r * d, pg, pb, dy + (size_t)r * d, x + (size_t)r * d, g, mean[r], rstd[r],
                            d);
  }
  for (int t = 0; t < nt; t++) {
    const float *pg = scratch + 2 * (size_t)d * t, *pb = pg + d;
    for (int i = 0; i < d; i++) {
      dg[i] += pg[i];
      db[i] += pb[i];
    }
  }
}

void dl_gelu_backward(float *dx, const float *dy, const float *pre, size_t n) {
  const dl_row_kernel_table *k = dl_row_kernels();
  const size_t chunks = (n + DL_ELEMENTWISE_CHUNK - 1) / DL_ELEMENTWISE_CHUNK;
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < chunks; c++) {
    const size_t i0 = c * DL_ELEMENTWISE_CHUNK;
    k->gelu_backward(dx + i0, dy + i0, pre + i0, n - i0 < DL_ELEMENTWISE_CHUNK ? n - i0 : DL_ELEMENTWISE_CHUNK);
  }
}

void dl_swiglu_backward(float *dxg, const float *dout, const float *xg, int rows, int h) {
  const dl_row_kernel_table *k = dl_row_kernels();
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    const float *a = xg + (size_t)r * 2 * h;
    float *da = dxg + (size_t)r * 2 * h;
    k->swiglu_backward(da, da + h, dout + (size_t)r * h, a, a + h, h);
  }
}

void dl_residual_scaled_backward(float *dy, float *dgamma, const float *dx, const float *y,
                                 const float *gamma, int rows, int d, float *scratch) {
  const int nt = omp_get_max_threads();
  const dl_row_kernel_table *k = dl_row_kernels();
  memset(scratch, 0, (size_t)d * nt * sizeof(float));
#pragma omp parallel
  {
    float *pg = scratch + (size_t)d * omp_get_thread_num();
#pragma omp for schedule(static)
    for (int r = 0; r < rows; r++)
      k->residual_scaled_backward(dy + (size_t)r * d, pg, dx + (size_t)r * d, y + (size_t)r * d, gamma, d);
  }
  for (int t = 0; t < nt; t++)
    for (int i = 0; i < d; i++) dgamma[i] += scratch[(size_t)d * t + i];
}

void dl_attention_train(float *out, float *probs, const float *qkv, int batch, int t, int heads, int hd) {
  const int d = heads * hd, ld = 3 * d;
  const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for schedule(dynamic, 1)
  for (int task = 0; task < batch * heads; task++) {
    int bi = task / heads, h = task % heads;
    const float *q = qkv + (size_t)bi * t * ld + (size_t)h * hd;
    const float *k = q + d, *v = q + 2 * d;
    float *p = probs + (size_t)task * t * t;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, t, hd, scale, q, ld, k, ld, 0.0f, p, t);
    dl_softmax_rows(p, t, t);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t, hd, t, 1.0f, p, t, v, ld, 0.0f,
                out + (size_t)bi * t * d + (size_t)h * hd, d);
  }
}

size_t dl_attention_backward_scratch_floats(int t) { return (size_t)t * (size_t)t; }

void dl_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *probs,
                           int batch, int t, int heads, int hd, float *scratch) {
  const int d = heads * hd, ld = 3 * d;
  const float scale = 1.0f / sqrtf((float)hd);
  // Each (sequence, head) task writes its own columns of dqkv: no races.
#pragma omp parallel for schedule(dynamic, 1)
  for (int task = 0; task < batch * heads; task++) {
    int bi = task / heads, h = task % heads;
    const size_t base = (size_t)bi * t * ld + (size_t)h * hd;
    const float *q = qkv + base, *k = q + d, *v = q + 2 * d;
    float *dq = dqkv + base, *dk = dq + d, *dv = dq + 2 * d;
    const float *p = probs + (size_t)task * t * t;
    const float *dO = dout + (size_t)bi * t * d + (size_t)h * hd;
    float *ds = scratch + (size_t)omp_get_thread_num() * dl_attention_backward_scratch_floats(t);
    // dV = P^T dO; dP = dO V^T.
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, t, hd, t, 1.0f, p, t, dO, d, 0.0f, dv, ld);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, t, hd, 1.0f, dO, d, v, ld, 0.0f, ds, t);
    // Softmax backward: dS = P * (dP - sum_j P dP), folded with the scale.
    dl_row_kernels()->softmax_backward_rows(ds, p, t, t, scale);
    // dQ = dS K; dK = dS^T Q.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t, hd, t, 1.0f, ds, t, k, ld, 0.0f, dq, ld);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, t, hd, t, 1.0f, ds, t, q, ld, 0.0f, dk, ld);
  }
}
