// Every CPU kernel level this machine has (model/cpu/cpu_features.h), called
// directly, against plain double-precision references on shapes that are not
// multiples of any tile (m, k, n odd, k = 1, k past one cache block, rows
// shorter than a vector): the sgemm with each epilogue (gemm_avx2.c,
// gemm_avx512.c) and each element-wise row kernel and its backward
// (row_kernels.inc); the levels also against each other. Then attention
// forward, training forward and backward at the level the process runs
// (DISTILL_CPU_KERNELS; ctest runs this test at each level) against a scalar
// reference. Levels the CPU lacks are skipped with the reason printed.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu/cpu_features.h"
#include "model/cpu/gemm_levels.h"
#include "model/cpu/ops.h"
#include "model/cpu/ops_backward.h"
#include "model/cpu/row_kernels.h"
#include "tests/harness.h"

static uint64_t g_state = 11;
static float urand(void) { return dl_test_urand(&g_state); }  // uniform in [-1, 1)
static float *rand_vec(size_t n, float scale) {
  float *v = malloc((n ? n : 1) * sizeof *v);
  for (size_t i = 0; i < n; i++) v[i] = scale * urand();
  return v;
}
static float *copy_vec(const float *x, size_t n) { return memcpy(malloc((n ? n : 1) * sizeof *x), x, n * sizeof *x); }

// Largest |a - b| / (1 + |b|): absolute near zero, relative for large values.
static double max_err(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)a[i] - b[i]) / (1.0 + fabs((double)b[i]));
    if (!(e <= m)) m = e;  // NaN counts
  }
  return m;
}

typedef void (*gemm_fn)(const dl_gemm_args *);
static const gemm_fn kGemm[DL_CPU_LEVELS] = {dl_gemm_avx2, dl_gemm_avx512};
static const dl_row_kernel_table *const kRows[DL_CPU_LEVELS] = {&dl_row_kernels_avx2, &dl_row_kernels_avx512};

static double gelu_ref(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

// C (or the residual) of one level and epilogue e (0 none, 1 bias, 2 bias+gelu,
// 3 bias+layerscale residual) against the double reference.
static void check_gemm(dl_cpu_level lv, int m, int k, int n, int e, float *out_for_cross) {
  float *a = rand_vec((size_t)m * k, 1), *w = rand_vec((size_t)n * k, 1), *bias = rand_vec(n, 1);
  float *gamma = rand_vec(n, 1), *res = rand_vec((size_t)m * n, 1), *res0 = copy_vec(res, (size_t)m * n);
  float *c = malloc((size_t)m * n * sizeof *c), *ref = malloc((size_t)m * n * sizeof *ref);
  dl_gemm_epilogue ep = {.bias = e >= 1 ? bias : NULL, .gelu = e == 2, .residual = e == 3 ? res : NULL,
                         .gamma = e == 3 ? gamma : NULL};
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double v = 0;
      for (int p = 0; p < k; p++) v += (double)a[(size_t)i * k + p] * w[(size_t)j * k + p];
      if (ep.bias) v += bias[j];
      if (ep.gelu) v = gelu_ref(v);
      if (ep.residual) v = res0[(size_t)i * n + j] + (double)gamma[j] * v;
      ref[(size_t)i * n + j] = (float)v;
    }
  kGemm[lv](&(dl_gemm_args){.c = c, .a = a, .w = w, .m = m, .k = k, .n = n, .ep = &ep});
  const float *got = e == 3 ? res : c;
  const double err = dl_rel_err(got, ref, (size_t)m * n);
  static const char *names[] = {"none", "bias", "bias+gelu", "bias+layerscale residual"};
  CHECK(err < 2e-6, "%s sgemm %dx%d times (%dx%d)^T, epilogue %s: relative error %.2g < 2e-6",
        dl_cpu_level_name(lv), m, k, n, k, names[e], err);
  if (out_for_cross) memcpy(out_for_cross, got, (size_t)m * n * sizeof *got);
  free(a); free(w); free(bias); free(gamma); free(res); free(res0); free(c); free(ref);
}

// The backward's forms of one level: NN (C = A B, B [k, n]) and TN
// (C += A^T B, A [k, m]) against double references, C starting from
// random values for the accumulating TN.
static void check_gemm_backward(dl_cpu_level lv, int m, int k, int n) {
  float *a = rand_vec((size_t)m * k, 1), *b = rand_vec((size_t)k * n, 1), *c0 = rand_vec((size_t)m * n, 1);
  float *c = copy_vec(c0, (size_t)m * n), *ref = malloc((size_t)m * n * sizeof *ref);
  static const dl_gemm_epilogue none = {0};
  for (int tn = 0; tn < 2; tn++) {
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++) {
        double v = tn ? c0[(size_t)i * n + j] : 0.0;  // a read as [m, k] for NN, [k, m] for TN
        for (int p = 0; p < k; p++) v += (double)(tn ? a[(size_t)p * m + i] : a[(size_t)i * k + p]) * b[(size_t)p * n + j];
        ref[(size_t)i * n + j] = (float)v;
      }
    memcpy(c, c0, (size_t)m * n * sizeof *c);
    kGemm[lv](&(dl_gemm_args){.c = c, .a = a, .w = b, .m = m, .k = k, .n = n, .a_km = tn, .w_kn = true,
                              .accumulate = tn, .ep = &none});
    const double err = dl_rel_err(c, ref, (size_t)m * n);
    CHECK(err < 2e-6, "%s sgemm %s %dx%dx%d: relative error %.2g < 2e-6", dl_cpu_level_name(lv),
          tn ? "TN (C += A^T B)" : "NN (C = A B)", m, k, n, err);
  }
  free(a); free(b); free(c0); free(c); free(ref);
}

static void check_gemm_level(dl_cpu_level lv) {
  // (m, k, n): single values, k = 1, tails of the 6x16 and 12x32 tiles and of
  // the 8-wide packing, k past one 256 block, exact tiles.
  static const int shapes[][3] = {{1, 1, 1},   {13, 1, 33},  {7, 5, 3},    {25, 37, 47},
                                  {12, 32, 32}, {61, 513, 65}, {131, 300, 97}, {6, 16, 16}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int e = 0; e < 4; e++) check_gemm(lv, shapes[s][0], shapes[s][1], shapes[s][2], e, NULL);
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    check_gemm_backward(lv, shapes[s][0], shapes[s][1], shapes[s][2]);
}

// The row kernels of one level against double references; widths below,
// at and past a zmm vector.
static void check_rows_level(dl_cpu_level lv) {
  const dl_row_kernel_table *k = kRows[lv];
  const char *L = dl_cpu_level_name(lv);
  static const int widths[] = {1, 7, 16, 33, 389};
  for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
    const int d = widths[wi];
    float *x = rand_vec(d, 3), *g = rand_vec(d, 1), *b = rand_vec(d, 1), *dy = rand_vec(d, 1);
    float *y = malloc(d * sizeof *y), *ref = malloc(d * sizeof *ref), *dx = malloc(d * sizeof *dx);
    float *refd = malloc(d * sizeof *refd), *pg = calloc(d, sizeof *pg), *pb = calloc(d, sizeof *pb);
    double mean = 0, var = 0;
    for (int i = 0; i < d; i++) mean += x[i];
    mean /= d;
    for (int i = 0; i < d; i++) var += (x[i] - mean) * (x[i] - mean);
    const double rs = 1.0 / sqrt(var / d + 1e-6);
    for (int i = 0; i < d; i++) ref[i] = (float)((x[i] - mean) * rs * g[i] + b[i]);
    k->layernorm(y, x, g, b, d, 1e-6f);
    double e = max_err(y, ref, d);
    CHECK(e < 2e-5, "%s layernorm d=%d: max error %.2g < 2e-5", L, d, e);
    float mu, rstd;
    k->layernorm_stats(&mu, &rstd, x, d, 1e-6f);
    CHECK(fabs(mu - mean) < 1e-5 && fabs(rstd - rs) < 1e-5 * rs, "%s layernorm stats d=%d: mean %.7g (%.7g) rstd %.7g (%.7g)",
          L, d, mu, mean, rstd, rs);
    double s1 = 0, s2 = 0;
    for (int i = 0; i < d; i++) s1 += (double)dy[i] * g[i], s2 += (double)dy[i] * g[i] * (x[i] - mean) * rs;
    for (int i = 0; i < d; i++) refd[i] = (float)(rs * (dy[i] * g[i] - s1 / d - (x[i] - mean) * rs * s2 / d));
    k->layernorm_backward(dx, pg, pb, dy, x, g, (float)mean, (float)rs, d);
    double eg = 0;
    for (int i = 0; i < d; i++) eg = fmax(eg, fabs(pg[i] - dy[i] * (x[i] - mean) * rs) + fabs(pb[i] - dy[i]));
    e = max_err(dx, refd, d);
    // dx is rstd times a difference of terms of size |dy g|: its rounding
    // error scales with rstd, which is 1000 for d = 1 (variance 0, eps 1e-6).
    const double tol_dx = 2e-5 * fmax(1.0, rs);
    CHECK(e < tol_dx && eg < 1e-5, "%s layernorm backward d=%d: dx max error %.2g < %.2g (2e-5 x max(1, rstd)), dg/db %.2g < 1e-5",
          L, d, e, tol_dx, eg);

    // GELU and its backward: x in [-3, 3).
    memcpy(y, x, d * sizeof *y);
    k->gelu(y, d);
    for (int i = 0; i < d; i++) ref[i] = (float)gelu_ref(x[i]);
    e = max_err(y, ref, d);
    CHECK(e < 1e-6, "%s gelu n=%d: max error %.2g < 1e-6", L, d, e);
    k->gelu_backward(dx, dy, x, d);
    for (int i = 0; i < d; i++) {
      const double t = x[i], cdf = 0.5 * (1 + erf(t / sqrt(2.0))), pdf = exp(-0.5 * t * t) / sqrt(2 * M_PI);
      refd[i] = (float)(dy[i] * (cdf + t * pdf));
    }
    e = max_err(dx, refd, d);
    CHECK(e < 1e-6, "%s gelu backward n=%d: max error %.2g < 1e-6", L, d, e);

    // SwiGLU (a = x, b = g) and its backward.
    k->swiglu(y, x, g, d);
    float *db = malloc(d * sizeof *db), *refb = malloc(d * sizeof *refb);
    for (int i = 0; i < d; i++) {
      const double s = 1 / (1 + exp(-(double)x[i]));
      ref[i] = (float)(x[i] * s * g[i]);
      refb[i] = (float)(dy[i] * x[i] * s);
      refd[i] = (float)(dy[i] * g[i] * s * (1 + x[i] * (1 - s)));
    }
    e = max_err(y, ref, d);
    CHECK(e < 1e-6, "%s swiglu h=%d: max error %.2g < 1e-6", L, d, e);
    k->swiglu_backward(dx, db, dy, x, g, d);
    e = fmax(max_err(dx, refd, d), max_err(db, refb, d));
    CHECK(e < 1e-6, "%s swiglu backward h=%d: max error %.2g < 1e-6", L, d, e);

    // LayerScale residual and its backward.
    memcpy(y, b, d * sizeof *y);
    k->residual_scaled(y, x, g, d);
    for (int i = 0; i < d; i++) ref[i] = (float)(b[i] + (double)g[i] * x[i]);
    memset(pg, 0, d * sizeof *pg);
    k->residual_scaled_backward(dx, pg, dy, x, g, d);
    for (int i = 0; i < d; i++) refd[i] = (float)((double)g[i] * dy[i]), refb[i] = (float)((double)dy[i] * x[i]);
    e = fmax(max_err(y, ref, d), fmax(max_err(dx, refd, d), max_err(pg, refb, d)));
    CHECK(e < 1e-6, "%s residual_scaled and backward d=%d: max error %.2g < 1e-6", L, d, e);
    free(x); free(g); free(b); free(dy); free(y); free(ref); free(dx); free(refd); free(pg); free(pb);
    free(db); free(refb);
  }
  // Softmax rows and their backward.
  static const int rc[][2] = {{1, 1}, {3, 17}, {5, 257}, {2, 40}};
  for (size_t s = 0; s < sizeof rc / sizeof rc[0]; s++) {
    const int rows = rc[s][0], cols = rc[s][1], n = rows * cols;
    float *x = rand_vec(n, 8), *p = copy_vec(x, n), *ref = malloc(n * sizeof *ref);
    float *ds = rand_vec(n, 1), *ds0 = copy_vec(ds, n), *refd = malloc(n * sizeof *refd);
    k->softmax_rows(p, rows, cols);
    for (int r = 0; r < rows; r++) {
      double mx = -INFINITY, sum = 0, dot = 0;
      for (int j = 0; j < cols; j++) mx = fmax(mx, x[r * cols + j]);
      for (int j = 0; j < cols; j++) sum += exp(x[r * cols + j] - mx);
      for (int j = 0; j < cols; j++) ref[r * cols + j] = (float)(exp(x[r * cols + j] - mx) / sum);
      for (int j = 0; j < cols; j++) dot += (double)p[r * cols + j] * ds0[r * cols + j];
      for (int j = 0; j < cols; j++) refd[r * cols + j] = (float)(0.125 * p[r * cols + j] * (ds0[r * cols + j] - dot));
    }
    double e = max_err(p, ref, n);
    CHECK(e < 1e-6, "%s softmax %dx%d: max error %.2g < 1e-6", L, rows, cols, e);
    k->softmax_backward_rows(ds, p, rows, cols, 0.125f);
    e = max_err(ds, refd, n);
    CHECK(e < 1e-6, "%s softmax backward %dx%d: max error %.2g < 1e-6", L, rows, cols, e);
    free(x); free(p); free(ref); free(ds); free(ds0); free(refd);
  }
}

// avx2 and avx512 on the same inputs give the same sgemm results to float
// rounding (both sum each inner block in order; the blocks differ), so one
// level cannot drift from the other unnoticed.
static void check_levels_agree(void) {
  const int m = 131, k = 300, n = 97;
  float *c[DL_CPU_LEVELS];
  for (int lv = 0; lv < DL_CPU_LEVELS; lv++) {
    c[lv] = malloc((size_t)m * n * sizeof(float));
    g_state = 99;  // same inputs
    check_gemm((dl_cpu_level)lv, m, k, n, 2, c[lv]);
  }
  const double e = dl_rel_err(c[DL_CPU_AVX512], c[DL_CPU_AVX2], (size_t)m * n);
  CHECK(e < 1e-6, "avx512 against avx2 sgemm %dx%dx%d bias+gelu: relative difference %.2g < 1e-6", m, k, n, e);
  for (int lv = 0; lv < DL_CPU_LEVELS; lv++) free(c[lv]);
}

// Attention (forward, training forward, backward) at the process's level
// against double references, t not a multiple of any vector.
static void check_attention(int batch, int t, int heads, int hd) {
  const int d = heads * hd, ld = 3 * d;
  const size_t nq = (size_t)batch * t * ld, no = (size_t)batch * t * d;
  float *qkv = rand_vec(nq, 1), *dout = rand_vec(no, 1), *out = malloc(no * sizeof *out);
  float *out2 = malloc(no * sizeof *out2), *ref = calloc(no, sizeof *ref), *dqkv = malloc(nq * sizeof *dqkv);
  float *refd = calloc(nq, sizeof *refd), *probs = malloc((size_t)batch * heads * t * t * sizeof *probs);
  float *scratch = malloc(dl_attention_scratch_floats(t) * 64 * sizeof *scratch);
  double *p = malloc((size_t)t * t * sizeof *p), *dp = malloc((size_t)t * t * sizeof *dp);
  const double scale = 1.0 / sqrt((double)hd);
  for (int bi = 0; bi < batch; bi++)
    for (int h = 0; h < heads; h++) {
      const float *q = qkv + (size_t)bi * t * ld + h * hd, *kk = q + d, *v = q + 2 * d;
      const float *dO = dout + (size_t)bi * t * d + h * hd;
      float *o = ref + (size_t)bi * t * d + h * hd, *dq = refd + (size_t)bi * t * ld + h * hd;
      float *dk = dq + d, *dv = dq + 2 * d;
      for (int i = 0; i < t; i++) {
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < t; j++) {
          double s = 0;
          for (int c = 0; c < hd; c++) s += (double)q[i * ld + c] * kk[j * ld + c];
          p[i * t + j] = s * scale, mx = fmax(mx, s * scale);
        }
        for (int j = 0; j < t; j++) sum += (p[i * t + j] = exp(p[i * t + j] - mx));
        for (int j = 0; j < t; j++) p[i * t + j] /= sum;
        for (int c = 0; c < hd; c++) {
          double acc = 0;
          for (int j = 0; j < t; j++) acc += p[i * t + j] * v[j * ld + c];
          o[i * d + c] = (float)acc;
        }
      }
      for (int i = 0; i < t; i++) {  // dP, then dS = P (dP - rowsum(P dP)) * scale
        double dot = 0;
        for (int j = 0; j < t; j++) {
          double s = 0;
          for (int c = 0; c < hd; c++) s += (double)dO[i * d + c] * v[j * ld + c];
          dp[i * t + j] = s, dot += p[i * t + j] * s;
        }
        for (int j = 0; j < t; j++) dp[i * t + j] = scale * p[i * t + j] * (dp[i * t + j] - dot);
      }
      for (int i = 0; i < t; i++)
        for (int c = 0; c < hd; c++) {
          double aq = 0, ak = 0, av = 0;
          for (int j = 0; j < t; j++) {
            aq += dp[i * t + j] * kk[j * ld + c];
            ak += dp[j * t + i] * q[j * ld + c];
            av += p[j * t + i] * dO[j * d + c];
          }
          dq[i * ld + c] = (float)aq, dk[i * ld + c] = (float)ak, dv[i * ld + c] = (float)av;
        }
    }
  const char *L = dl_cpu_level_name(dl_cpu_kernel_level());
  dl_attention(out, qkv, batch, t, heads, hd, scratch);
  dl_attention_train(out2, probs, qkv, batch, t, heads, hd);
  dl_attention_backward(dqkv, dout, qkv, probs, batch, t, heads, hd, scratch);
  const double e1 = dl_rel_err(out, ref, no), e2 = dl_rel_err(out2, ref, no), e3 = dl_rel_err(dqkv, refd, nq);
  CHECK(e1 < 1e-5 && e2 < 1e-5 && e3 < 1e-5,
        "%s attention batch %d, t=%d, %d heads of %d: forward %.2g, training forward %.2g, backward %.2g < 1e-5", L,
        batch, t, heads, hd, e1, e2, e3);
  free(qkv); free(dout); free(out); free(out2); free(ref); free(dqkv); free(refd); free(probs); free(scratch);
  free(p); free(dp);
}

int main(void) {
  char cpu[256];
  dl_cpu_describe(cpu, sizeof cpu);
  printf("cpu: %s\n", cpu);
  const dl_cpu_level best = dl_cpu_best_level(dl_cpu_features_get());
  for (int lv = 0; lv < DL_CPU_LEVELS; lv++) {
    if (lv > (int)best) {
      printf("skipped: the %s kernels: this CPU lacks them\n", dl_cpu_level_name((dl_cpu_level)lv));
      continue;
    }
    check_gemm_level((dl_cpu_level)lv);
    check_rows_level((dl_cpu_level)lv);
  }
  if (best >= DL_CPU_AVX512) check_levels_agree();
  check_attention(1, 1, 1, 8);
  check_attention(2, 17, 3, 5);
  check_attention(3, 37, 2, 24);
  return dl_test_summary("test_cpu_levels");
}
