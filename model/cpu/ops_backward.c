#include "model/cpu/ops_backward.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "model/cpu/fast_math.h"
#include "model/cpu/ops.h"

void dl_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int m, int k, int n, const float *ones, int accumulate_dx) {
  if (dx)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, k, n, 1.0f, dy, n, w, k,
                accumulate_dx ? 1.0f : 0.0f, dx, k);
  if (dw) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, k, m, 1.0f, dy, n, x, k, 1.0f, dw, k);
  // Column sums as a matrix-vector product with ones: threaded by OpenBLAS.
  if (db) cblas_sgemv(CblasRowMajor, CblasTrans, m, n, 1.0f, dy, n, ones, 1, 1.0f, db, 1);
}

void dl_layernorm_stats(float *mean, float *rstd, const float *x, int rows, int d, float eps) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * d;
    float sum = 0.0f, var = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < d; i++) sum += xr[i];
    const float mu = sum / (float)d;
#pragma omp simd reduction(+ : var)
    for (int i = 0; i < d; i++) var += (xr[i] - mu) * (xr[i] - mu);
    mean[r] = mu;
    rstd[r] = 1.0f / sqrtf(var / (float)d + eps);
  }
}

size_t dl_layernorm_backward_scratch_floats(int d) { return 2 * (size_t)d * (size_t)omp_get_max_threads(); }

void dl_layernorm_backward(float *dx, float *dg, float *db, const float *dy, const float *x,
                           const float *g, const float *mean, const float *rstd, int rows, int d,
                           float *scratch) {
  const int nt = omp_get_max_threads();
  memset(scratch, 0, 2 * (size_t)d * nt * sizeof(float));
  // Each thread sums its rows' parameter gradients privately; one pass at the
  // end adds the partial sums (no atomics, deterministic for a thread count).
#pragma omp parallel
  {
    float *pg = scratch + 2 * (size_t)d * omp_get_thread_num(), *pb = pg + d;
#pragma omp for schedule(static)
    for (int r = 0; r < rows; r++) {
      const float *xr = x + (size_t)r * d, *dyr = dy + (size_t)r * d;
      float *dxr = dx + (size_t)r * d;
      const float mu = mean[r], rs = rstd[r];
      float s1 = 0.0f, s2 = 0.0f;
#pragma omp simd reduction(+ : s1, s2)
      for (int i = 0; i < d; i++) {
        float xh = (xr[i] - mu) * rs, dyg = dyr[i] * g[i];
        s1 += dyg;
        s2 += dyg * xh;
        pg[i] += dyr[i] * xh;
        pb[i] += dyr[i];
      }
      s1 /= (float)d;
      s2 /= (float)d;
#pragma omp simd
      for (int i = 0; i < d; i++) {
        float xh = (xr[i] - mu) * rs;
        dxr[i] = rs * (dyr[i] * g[i] - s1 - xh * s2);
      }
    }
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
  // d/dx x Phi(x) = Phi(x) + x phi(x).
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) {
    float x = pre[i];
    float cdf = 0.5f * (1.0f + dl_fast_erff(x * 0.70710678118654752f));
    float pdf = 0.39894228040143268f * dl_fast_expf(-0.5f * x * x);
    dx[i] = dy[i] * (cdf + x * pdf);
  }
}

void dl_swiglu_backward(float *dxg, const float *dout, const float *xg, int rows, int h) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    const float *a = xg + (size_t)r * 2 * h, *b = a + h, *d = dout + (size_t)r * h;
    float *da = dxg + (size_t)r * 2 * h, *dbv = da + h;
#pragma omp simd
    for (int j = 0; j < h; j++) {
      float s = 1.0f / (1.0f + dl_fast_expf(-a[j]));
      float silu = a[j] * s;
      dbv[j] = d[j] * silu;
      da[j] = d[j] * b[j] * s * (1.0f + a[j] * (1.0f - s));
    }
  }
}

void dl_residual_scaled_backward(float *dy, float *dgamma, const float *dx, const float *y,
                                 const float *gamma, int rows, int d, float *scratch) {
  const int nt = omp_get_max_threads();
  memset(scratch, 0, (size_t)d * nt * sizeof(float));
#pragma omp parallel
  {
    float *pg = scratch + (size_t)d * omp_get_thread_num();
#pragma omp for schedule(static)
    for (int r = 0; r < rows; r++) {
      const float *dxr = dx + (size_t)r * d, *yr = y + (size_t)r * d;
      float *dyr = dy + (size_t)r * d;
#pragma omp simd
      for (int i = 0; i < d; i++) {
        dyr[i] = gamma[i] * dxr[i];
        pg[i] += dxr[i] * yr[i];
      }
    }
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
    for (int r = 0; r < t; r++) {
      float *dsr = ds + (size_t)r * t;
      const float *pr = p + (size_t)r * t;
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int j = 0; j < t; j++) dot += pr[j] * dsr[j];
#pragma omp simd
      for (int j = 0; j < t; j++) dsr[j] = scale * pr[j] * (dsr[j] - dot);
    }
    // dQ = dS K; dK = dS^T Q.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t, hd, t, 1.0f, ds, t, k, ld, 0.0f, dq, ld);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, t, hd, t, 1.0f, ds, t, q, ld, 0.0f, dk, ld);
  }
}
