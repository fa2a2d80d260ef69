#include "model/cpu/ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "model/cpu/gemm.h"
#include "model/cpu/row_kernels.h"

// Our kernel where it pays: enough rows to amortize packing all of W per call
// (its cost relative to the multiply is about 1/m), and not inside a parallel
// region. The packed copy of W is as large as W and kept per calling thread.
static bool use_own_gemm(int m, int k, int n) {
  return dl_gemm_available() && !omp_in_parallel() && m >= 64 && n >= 64 && k >= 32;
}

void dl_linear(float *y, const float *x, const float *w, const float *bias, int m, int k, int n) {
  if (use_own_gemm(m, k, n)) {
    dl_gemm_nt(y, x, w, m, k, n, &(dl_gemm_epilogue){.bias = bias});
    return;
  }
  float beta = 0.0f;
  if (bias) {
    // Starting from the bias lets sgemm add into it (beta = 1): no extra pass.
#pragma omp parallel for schedule(static)
    for (int r = 0; r < m; r++)
      for (int j = 0; j < n; j++) y[(size_t)r * n + j] = bias[j];
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, w, k, beta, y, n);
}

void dl_linear_gelu(float *y, const float *x, const float *w, const float *bias, int m, int k, int n) {
  if (use_own_gemm(m, k, n)) {
    dl_gemm_nt(y, x, w, m, k, n, &(dl_gemm_epilogue){.bias = bias, .gelu = true});
    return;
  }
  dl_linear(y, x, w, bias, m, k, n);
  dl_gelu_inplace(y, (size_t)m * n);
}

void dl_linear_residual(float *res, float *scratch, const float *x, const float *w, const float *bias,
                        const float *gamma, int m, int k, int n) {
  if (use_own_gemm(m, k, n)) {
    dl_gemm_nt(scratch, x, w, m, k, n, &(dl_gemm_epilogue){.bias = bias, .residual = res, .gamma = gamma});
    return;
  }
  dl_linear(scratch, x, w, bias, m, k, n);
  if (gamma) {
    dl_residual_scaled(res, scratch, gamma, m, n);
  } else {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < (size_t)m * n; i++) res[i] += scratch[i];
  }
}

void dl_layernorm(float *y, const float *x, const float *g, const float *b, int rows, int d, float eps) {
  const dl_row_kernel_table *k = dl_row_kernels();
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) k->layernorm(y + (size_t)r * d, x + (size_t)r * d, g, b, d, eps);
}

void dl_gelu_inplace(float *x, size_t n) {
  const dl_row_kernel_table *k = dl_row_kernels();
  const size_t chunks = (n + DL_ELEMENTWISE_CHUNK - 1) / DL_ELEMENTWISE_CHUNK;
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < chunks; c++) {
    const size_t i0 = c * DL_ELEMENTWISE_CHUNK;
    k->gelu(x + i0, n - i0 < DL_ELEMENTWISE_CHUNK ? n - i0 : DL_ELEMENTWISE_CHUNK);
  }
}

void dl_swiglu(float *out, const float *xg, int rows, int h) {
  const dl_row_kernel_table *k = dl_row_kernels();
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    const float *a = xg + (size_t)r * 2 * h;
    k->swiglu(out + (size_t)r * h, a, a + h, h);
  }
}

void dl_residual_scaled(float *x, const float *y, const float *gamma, int rows, int d) {
  const dl_row_kernel_table *k = dl_row_kernels();
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) k->residual_scaled(x + (size_t)r * d, y + (size_t)r * d, gamma, d);
}

size_t dl_attention_scratch_floats(int t) { return (size_t)t * (size_t)t; }

void dl_softmax_rows(float *s, int rows, int cols) { dl_row_kernels()->softmax_rows(s, rows, cols); }

void dl_attention(float *out, const float *qkv, int batch, int t, int heads, int hd, float *scratch) {
  const int d = heads * hd, ld = 3 * d;
  const float scale = 1.0f / sqrtf((float)hd);
  // One (sequence, head) pair per task; sgemm runs single-threaded inside the
  // parallel region (OpenBLAS's OpenMP build), so the pairs fill the cores.
#pragma omp parallel for schedule(dynamic, 1)
  for (int task = 0; task < batch * heads; task++) {
    int bi = task / heads, h = task % heads;
    const float *q = qkv + (size_t)bi * t * ld + (size_t)h * hd;
    const float *k = q + d, *v = q + 2 * d;
    float *s = scratch + (size_t)omp_get_thread_num() * dl_attention_scratch_floats(t);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, t, hd, scale, q, ld, k, ld, 0.0f, s, t);
    dl_softmax_rows(s, t, t);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t, hd, t, 1.0f, s, t, v, ld, 0.0f,
                out + (size_t)bi * t * d + (size_t)h * hd, d);
  }
}

// Rows of [n * gh * gw, 3 * p * p] in the conv weight's (c, ky, kx) order, so
// the patch embedding is one matmul.
void dl_unfold_patches(float *out, const float *img, int n, int h, int w, int p) {
  const int gh = h / p, gw = w / p, row = 3 * p * p;
#pragma omp parallel for collapse(2) schedule(static)
  for (int i = 0; i < n; i++)
    for (int gy = 0; gy < gh; gy++)
      for (int gx = 0; gx < gw; gx++) {
        float *o = out + (((size_t)i * gh + gy) * gw + gx) * row;
        for (int c = 0; c < 3; c++)
          for (int ky = 0; ky < p; ky++)
            memcpy(o + (c * p + ky) * p, img + (((size_t)i * 3 + c) * h + gy * p + ky) * w + gx * p,
                   (size_t)p * sizeof(float));
      }
}
