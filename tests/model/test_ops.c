// The CPU ops against straightforward double-precision references, the fast
// exp/erf against libm, the position-embedding resampling weights' basic
// properties, and a safetensors write/read round trip.
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu/fast_math.h"
#include "model/cpu/ops.h"
#include "model/pos_embed.h"
#include "model/safetensors.h"
#include "tests/harness.h"

static uint64_t g_state = 42;
static float urand(void) {  // uniform in [-1, 1)
  g_state = g_state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((g_state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}
static float *rand_vec(size_t n, float scale) {
  float *v = malloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++) v[i] = scale * urand();
  return v;
}

static void test_fast_math(void) {
  double worst_exp = 0, worst_erf = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.00731f) {
    double rel = fabs((double)dl_fast_expf(x) - exp((double)x)) / exp((double)x);
    if (rel > worst_exp) worst_exp = rel;
  }
  for (float x = -6.0f; x <= 6.0f; x += 0.0001f) {
    double e = fabs((double)dl_fast_erff(x) - erf((double)x));
    if (e > worst_erf) worst_erf = e;
  }
  CHECK(worst_exp < 4 * FLT_EPSILON, "fast exp on [-87, 88]: worst relative error %.3g < 4 ulp", worst_exp);
  CHECK(worst_erf < 5e-7, "fast erf on [-6, 6]: worst absolute error %.3g < 5e-7", worst_erf);
  CHECK(dl_fast_expf(-1000.0f) >= 0.0f && dl_fast_expf(-1000.0f) < 1e-37f, "fast exp(-1000) underflows to ~0");
  // The subnormal-faithful variant (Sinkhorn-Knopp): relative on the normal
  // range, absolute (in units of the smallest subnormal) below it, exactly 0
  // where libm's expf is 0.
  double worst_rel = 0, worst_sub = 0;
  int zeros_match = 1;
  for (float x = -110.0f; x <= 88.0f; x += 0.00731f) {
    const double got = dl_fast_expf_subnormal(x), want = exp((double)x), libm = expf(x);
    if (x >= -87.0f) worst_rel = fmax(worst_rel, fabs(got - want) / want);
    else worst_sub = fmax(worst_sub, fabs(got - want) / 0x1p-149);
    zeros_match &= (libm == 0.0) == (got == 0.0) || fabs(got - want) <= 0x1p-149;
  }
  CHECK(worst_rel < 4 * FLT_EPSILON, "fast exp (subnormal variant) on [-87, 88]: worst relative error %.3g < 4 ulp",
        worst_rel);
  CHECK(worst_sub <= 1.0 && zeros_match,
        "fast exp (subnormal variant) on [-110, -87): worst error %.3g x 2^-149 <= 1, zero where libm is (or within 2^-149)",
        worst_sub);
  CHECK(dl_fast_expf_subnormal(-1000.0f) == 0.0f && dl_fast_expf_subnormal(-104.0f) == 0.0f &&
            dl_fast_expf_subnormal(-100.0f) > 0.0f,
        "fast exp (subnormal variant): e^-1000 and e^-104 are 0, e^-100 (%.3g) is not", dl_fast_expf_subnormal(-100.0f));
}

static void test_linear(void) {
  const int m = 37, k = 29, n = 23;
  float *x = rand_vec((size_t)m * k, 1), *w = rand_vec((size_t)n * k, 1), *b = rand_vec(n, 1);
  float *y = malloc((size_t)m * n * sizeof *y), *ref = malloc((size_t)m * n * sizeof *ref);
  dl_linear(y, x, w, b, m, k, n);
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double acc = b[j];
      for (int q = 0; q < k; q++) acc += (double)x[i * k + q] * w[j * k + q];
      ref[i * n + j] = (float)acc;
    }
  double e = dl_rel_err(y, ref, (size_t)m * n);
  CHECK(e < 1e-6, "linear 37x29 -> 23 with bias: relative error %.3g < 1e-6", e);
  free(x); free(w); free(b); free(y); free(ref);
}

static void test_layernorm(void) {
  const int rows = 7, d = 50;
  float *x = rand_vec((size_t)rows * d, 3), *g = rand_vec(d, 1), *b = rand_vec(d, 1);
  float *y = malloc((size_t)rows * d * sizeof *y), *ref = malloc((size_t)rows * d * sizeof *ref);
  for (int i = 0; i < rows * d; i++) x[i] += 5.0f;  // an offset the two-pass variance must handle
  dl_layernorm(y, x, g, b, rows, d, 1e-6f);
  for (int r = 0; r < rows; r++) {
    double mean = 0, var = 0;
    for (int i = 0; i < d; i++) mean += x[r * d + i];
    mean /= d;
    for (int i = 0; i < d; i++) var += (x[r * d + i] - mean) * (x[r * d + i] - mean);
    var /= d;
    for (int i = 0; i < d; i++) ref[r * d + i] = (float)((x[r * d + i] - mean) / sqrt(var + 1e-6) * g[i] + b[i]);
  }
  double e = dl_rel_err(y, ref, (size_t)rows * d);
  CHECK(e < 1e-6, "layernorm 7x50: relative error %.3g < 1e-6", e);
  free(x); free(g); free(b); free(y); free(ref);
}

static void test_gelu_swiglu(void) {
  const int rows = 5, h = 33;
  float *xg = rand_vec((size_t)rows * 2 * h, 4), *out = malloc((size_t)rows * h * sizeof *out);
  float *ref = malloc((size_t)rows * h * sizeof *ref);
  dl_swiglu(out, xg, rows, h);
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < h; j++) {
      double a = xg[r * 2 * h + j], b = xg[r * 2 * h + h + j];
      ref[r * h + j] = (float)(a / (1 + exp(-a)) * b);
    }
  double e = dl_rel_err(out, ref, (size_t)rows * h);
  CHECK(e < 1e-6, "swiglu 5x(2x33): relative error %.3g < 1e-6", e);
  float *x = rand_vec(1000, 6), *gref = malloc(1000 * sizeof *gref);
  for (int i = 0; i < 1000; i++) gref[i] = (float)(0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0))));
  dl_gelu_inplace(x, 1000);
  e = dl_rel_err(x, gref, 1000);
  CHECK(e < 1e-6, "exact GELU on [-6, 6]: relative error %.3g < 1e-6", e);
  free(xg); free(out); free(ref); free(x); free(gref);
}

static void test_attention(void) {
  const int batch = 2, t = 9, heads = 3, hd = 8, d = heads * hd;
  float *qkv = rand_vec((size_t)batch * t * 3 * d, 2), *out = malloc((size_t)batch * t * d * sizeof *out);
  float *ref = malloc((size_t)batch * t * d * sizeof *ref);
  float *scratch = malloc((size_t)omp_get_max_threads() * dl_attention_scratch_floats(t) * sizeof *scratch);
  dl_attention(out, qkv, batch, t, heads, hd, scratch);
  for (int b = 0; b < batch; b++)
    for (int h = 0; h < heads; h++)
      for (int i = 0; i < t; i++) {
        double s[9], mx = -1e300, sum = 0;
        for (int j = 0; j < t; j++) {
          double dot = 0;
          for (int c = 0; c < hd; c++)
            dot += (double)qkv[((size_t)b * t + i) * 3 * d + h * hd + c] * qkv[((size_t)b * t + j) * 3 * d + d + h * hd + c];
          s[j] = dot / sqrt((double)hd);
          if (s[j] > mx) mx = s[j];
        }
        for (int j = 0; j < t; j++) sum += (s[j] = exp(s[j] - mx));
        for (int c = 0; c < hd; c++) {
          double acc = 0;
          for (int j = 0; j < t; j++) acc += s[j] / sum * qkv[((size_t)b * t + j) * 3 * d + 2 * d + h * hd + c];
          ref[((size_t)b * t + i) * d + h * hd + c] = (float)acc;
        }
      }
  double e = dl_rel_err(out, ref, (size_t)batch * t * d);
  CHECK(e < 1e-6, "attention 2 seqs x 9 tokens x 3 heads x 8: relative error %.3g < 1e-6", e);
  free(qkv); free(out); free(ref); free(scratch);
}

static void test_pos_embed_weights(void) {
  float w[64 * 64];
  double worst = 0;
  for (int mode = 0; mode < 2; mode++)
    for (int in = 2; in <= 8; in++)
      for (int out = 1; out <= 12; out++) {
        dl_pos_embed_axis_weights(w, in, out, (dl_interp_mode)mode);
        for (int i = 0; i < out; i++) {
          double s = 0;
          for (int j = 0; j < in; j++) s += w[i * in + j];
          if (fabs(s - 1) > worst) worst = fabs(s - 1);
        }
      }
  CHECK(worst < 1e-6, "resampling weights of both modes sum to 1 per output (worst %.2g)", worst);
  dl_pos_embed_axis_weights(w, 6, 6, DL_INTERP_ANTIALIAS);
  int identity = 1;
  for (int i = 0; i < 6; i++)
    for (int j = 0; j < 6; j++) identity &= fabsf(w[i * 6 + j] - (i == j)) < 1e-7f;
  CHECK(identity, "antialias mode to the same size is the identity");
  dl_pos_embed_axis_weights(w, 6, 6, DL_INTERP_LEGACY);
  CHECK(fabsf(w[0] - 1.0f) > 1e-3f, "legacy mode to the same size is not the identity (scale 6.1/6), w[0][0]=%.5f", w[0]);
  CHECK(dl_pos_embed_is_identity(4, 4, 4) && !dl_pos_embed_is_identity(4, 2, 8),
        "the stored table is used as is only for the same square grid (2x8 has 16 patches but interpolates)");
}

static void test_safetensors_roundtrip(void) {
  float a[6] = {1, -2, 3.5f, 0, 1e-30f, -7}, b[1] = {42};
  dl_st_out t[2] = {{"weights.a", 2, {2, 3}, a}, {"b \"quoted\"", 1, {1}, b}};
  dl_st_meta meta[1] = {{"format", "pt"}};
  dl_err err;
  const char *path = "test_ops_roundtrip.safetensors";
  int rc = dl_st_write_f32(path, t, 2, meta, 1, &err);
  dl_safetensors st;
  rc = rc ? rc : dl_st_open(path, &st, &err);
  CHECK(rc == 0, "safetensors write then read: %s", rc ? err.msg : "ok");
  if (rc) return;
  const dl_st_tensor *ta = dl_st_find(&st, "weights.a"), *tb = dl_st_find(&st, "b \"quoted\"");
  float back[6] = {0};
  CHECK(ta && tb && ta->ndim == 2 && ta->shape[1] == 3 && dl_st_read_f32(ta, back, &err) == 0 &&
            memcmp(back, a, sizeof a) == 0 && ((const float *)tb->data)[0] == 42.0f,
        "round trip keeps names (with escapes), shapes and values");
  const char *fmt = dl_st_meta_get(&st, "format");
  CHECK(fmt && strcmp(fmt, "pt") == 0, "round trip keeps metadata");
  CHECK(((uintptr_t)(ta->data - st.file.data)) % 8 == 0, "data section starts 8-byte aligned");
  dl_st_close(&st);
  remove(path);
}

// Half and bfloat16 weights are converted exactly on load.
static void test_half_conversion(void) {
  // F16: 1, -2, 65504 (max), 2^-24 (smallest subnormal), inf; BF16: 1, -3.
  static const char header[] =
      "{\"h\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[0,10]},"
      "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[10,14]}}";
  static const uint8_t data[14] = {0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00, 0x00, 0x7c,
                                   0x80, 0x3f, 0x40, 0xc0};
  uint8_t file[256] = {0};
  size_t hlen = strlen(header);
  file[0] = (uint8_t)hlen;
  memcpy(file + 8, header, hlen);
  memcpy(file + 8 + hlen, data, sizeof data);
  dl_safetensors st;
  dl_err err;
  int rc = dl_st_parse(file, 8 + hlen + sizeof data, &st, &err);
  CHECK(rc == 0, "hand-made F16/BF16 file parses: %s", rc ? err.msg : "ok");
  if (rc) return;
  float h[5], b[2];
  dl_st_read_f32(dl_st_find(&st, "h"), h, &err);
  dl_st_read_f32(dl_st_find(&st, "b"), b, &err);
  CHECK(h[0] == 1.0f && h[1] == -2.0f && h[2] == 65504.0f && h[3] == ldexpf(1.0f, -24) && isinf(h[4]),
        "F16 to float: 1, -2, 65504, 2^-24, inf exact");
  CHECK(b[0] == 1.0f && b[1] == -3.0f, "BF16 to float: 1, -3 exact");
  dl_st_close(&st);
}

int main(void) {
  test_half_conversion();
  test_fast_math();
  test_linear();
  test_layernorm();
  test_gelu_swiglu();
  test_attention();
  test_pos_embed_weights();
  test_safetensors_roundtrip();
  return dl_test_summary("test_ops");
}
