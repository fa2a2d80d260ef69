// Every CUDA op against its CPU op on the same inputs. float32 storage must
// agree within 1e-5 relative (L2 norm of the difference over the norm of the
// CPU result); bf16 storage within the per-op bounds below. bf16 inputs are
// rounded to bf16 on the host first, so both sides see identical inputs and
// the bound measures only the GPU's arithmetic and its bf16 outputs.
// No GPU: exit 77, which ctest reports as skipped.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu/ops.h"
#include "model/cpu/ops_backward.h"
#include "model/cuda/adamw_segments.h"
#include "model/cuda/attention_dispatch.h"
#include "model/cuda/cuda_check_fatal.h"
#include "model/cuda/matmul.h"
#include "model/ibot_masks.h"
#include "model/losses.h"
#include "model/optim.h"
#include "model/pos_embed.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/residual_parity.h"
#include "tests/harness.h"

// bf16 keeps 8 significant bits: one rounding of an output is up to 2^-9
// relative per element, about 1.2e-3 over a vector (rounding errors are
// independent). Outputs rounded once get 4e-3; float32 accumulators fed by
// bf16-exact inputs (weight, bias, LayerNorm and LayerScale gradients) only
// see the summation order: 1e-4.
#define TOL_F32 1e-5
#define TOL_BF16_OUT 4e-3
#define TOL_BF16_ACC 1e-4

static double tol(dl_dtype dt) { return dt == DL_DTYPE_F32 ? TOL_F32 : TOL_BF16_OUT; }
static double tol_acc(dl_dtype dt) { return dt == DL_DTYPE_F32 ? TOL_F32 : TOL_BF16_ACC; }

static uint64_t seed = 1234;

static float *copy(const float *x, size_t n) {
  float *y = dl_test_host(n);
  memcpy(y, x, n * sizeof(float));
  return y;
}

static void test_linear(dl_cuda_blas *blas, dl_dtype dt) {
  const int m = 514, k = 384, n = 1152;
  float *x = dl_test_input((size_t)m * k, &seed, 1.0f, dt), *w = dl_test_input((size_t)n * k, &seed, 1.0f, dt);
  float *b = dl_test_input(n, &seed, 1.0f, dt);
  float *want = dl_test_host((size_t)m * n), *got = dl_test_host((size_t)m * n);
  void *gx_in = dl_gpu_upload(x, (size_t)m * k, dt), *gw_in = dl_gpu_upload(w, (size_t)n * k, dt);
  void *gbias_in = dl_gpu_upload(b, n, dt), *gy_out = dl_gpu_alloc((size_t)m * n, dt);

  dl_linear(want, x, w, b, m, k, n);
  dl_cuda_linear(blas, dt, gy_out, gx_in, gw_in, gbias_in, m, k, n, DL_EPILOGUE_BIAS, 0);
  dl_gpu_download(got, gy_out, (size_t)m * n, dt);
  dl_gpu_compare("linear+bias", dt, got, want, (size_t)m * n, tol(dt));

  // cuBLASLt's GELU is the tanh form: against the exact GELU the bound also
  // covers the approximation (3e-4 absolute at most, about 1e-4 relative here).
  dl_gelu_inplace(want, (size_t)m * n);
  dl_cuda_linear(blas, dt, gy_out, gx_in, gw_in, gbias_in, m, k, n, DL_EPILOGUE_BIAS_GELU_TANH, 0);
  dl_gpu_download(got, gy_out, (size_t)m * n, dt);
  dl_gpu_compare("linear+bias+gelu_tanh", dt, got, want, (size_t)m * n, dt == DL_DTYPE_F32 ? 1e-3 : 5e-3);

  // Backward: dx overwritten, dw and db accumulated onto non-zero starts.
  float *dy = dl_test_input((size_t)m * n, &seed, 1.0f, dt), *dw0 = dl_test_random((size_t)n * k, &seed, 1.0f);
  float *db0 = dl_test_random(n, &seed, 1.0f), *ones = dl_test_host(m);
  for (int i = 0; i < m; i++) ones[i] = 1.0f;
  float *dx_cpu = dl_test_host((size_t)m * k), *dw_cpu = copy(dw0, (size_t)n * k), *db_cpu = copy(db0, n);
  dl_linear_backward(dx_cpu, dw_cpu, db_cpu, dy, x, w, m, k, n, ones, 0);
  void *g_dy = dl_gpu_upload(dy, (size_t)m * n, dt), *g_dx = dl_gpu_alloc((size_t)m * k, dt);
  float *g_dw = dl_gpu_upload(dw0, (size_t)n * k, DL_DTYPE_F32), *g_db = dl_gpu_upload(db0, n, DL_DTYPE_F32);
  dl_cuda_linear_backward(blas, dt, g_dx, g_dw, g_db, g_dy, gx_in, gw_in, m, k, n, 0, DL_BIAS_GRAD_ACCUMULATE, 0);
  float *out = dl_test_host((size_t)m * k > (size_t)n * k ? (size_t)m * k : (size_t)n * k);
  dl_gpu_download(out, g_dx, (size_t)m * k, dt);
  dl_gpu_compare("linear_backward.dx", dt, out, dx_cpu, (size_t)m * k, tol(dt));
  dl_gpu_download(out, g_dw, (size_t)n * k, DL_DTYPE_F32);
  dl_gpu_compare("linear_backward.dw", dt, out, dw_cpu, (size_t)n * k, tol_acc(dt));
  dl_gpu_download(out, g_db, n, DL_DTYPE_F32);
  dl_gpu_compare("linear_backward.db", dt, out, db_cpu, n, tol_acc(dt));

  // The fused BGRADB epilogue overwrites db with this call's column sums.
  float *db_fresh = calloc(n, sizeof(float)), *dw_again = copy(dw0, (size_t)n * k);
  dl_linear_backward(NULL, dw_again, db_fresh, dy, x, w, m, k, n, ones, 0);
  cudaCheckFatal(cudaMemcpy(g_dw, dw0, (size_t)n * k * sizeof(float), cudaMemcpyHostToDevice));
  dl_cuda_linear_backward(blas, dt, NULL, g_dw, g_db, g_dy, gx_in, gw_in, m, k, n, 0, DL_BIAS_GRAD_FUSED_OVERWRITE, 0);
  dl_gpu_download(out, g_db, n, DL_DTYPE_F32);
  dl_gpu_compare("linear_backward.db_fused_bgradb", dt, out, db_fresh, n, tol_acc(dt));
  dl_gpu_download(out, g_dw, (size_t)n * k, DL_DTYPE_F32);
  dl_gpu_compare("linear_backward.dw_with_bgradb", dt, out, dw_again, (size_t)n * k, tol_acc(dt));

  free(x); free(w); free(b); free(want); free(got); free(dy); free(dw0); free(db0); free(ones);
  free(dx_cpu); free(dw_cpu); free(db_cpu); free(out); free(db_fresh); free(dw_again);
  dl_gpu_free(gx_in); dl_gpu_free(gw_in); dl_gpu_free(gbias_in); dl_gpu_free(gy_out); dl_gpu_free(g_dy); dl_gpu_free(g_dx);
  dl_gpu_free(g_dw); dl_gpu_free(g_db);
}

static void test_layernorm(dl_dtype dt) {
  const int rows = 514, d = 384;
  const size_t n = (size_t)rows * d;
  float *x = dl_test_input(n, &seed, 4.0f, dt), *g = dl_test_input(d, &seed, 2.0f, dt);
  float *b = dl_test_input(d, &seed, 1.0f, dt), *dy = dl_test_input(n, &seed, 1.0f, dt);
  for (size_t i = 0; i < n; i++) x[i] += 1.5f;  // a non-zero mean
  if (dt == DL_DTYPE_BF16) dl_bf16_round_all(x, n);
  float *want = dl_test_host(n), *got = dl_test_host(n), *mean = dl_test_host(rows), *rstd = dl_test_host(rows);
  dl_layernorm(want, x, g, b, rows, d, 1e-6f);
  dl_layernorm_stats(mean, rstd, x, rows, d, 1e-6f);
  void *gx = dl_gpu_upload(x, n, dt), *gg = dl_gpu_upload(g, d, dt), *gb = dl_gpu_upload(b, d, dt);
  void *gy = dl_gpu_alloc(n, dt), *gdy = dl_gpu_upload(dy, n, dt), *gdx = dl_gpu_alloc(n, dt);
  float *gmean = dl_gpu_alloc(rows, DL_DTYPE_F32), *grstd = dl_gpu_alloc(rows, DL_DTYPE_F32);
  float *gdg = dl_gpu_alloc(d, DL_DTYPE_F32), *gdb = dl_gpu_alloc(d, DL_DTYPE_F32);
  dl_cuda_layernorm(dt, gy, gmean, grstd, gx, gg, gb, rows, d, 1e-6f, 0);
  dl_gpu_download(got, gy, n, dt);
  dl_gpu_compare("layernorm", dt, got, want, n, tol(dt));
  dl_gpu_download(got, grstd, rows, DL_DTYPE_F32);
  dl_gpu_compare("layernorm.rstd", dt, got, rstd, rows, TOL_F32);

  float *dx = dl_test_host(n), *dg = calloc(d, sizeof(float)), *db = calloc(d, sizeof(float));
  float *scratch = dl_test_host(dl_layernorm_backward_scratch_floats(d));
  dl_layernorm_backward(dx, dg, db, dy, x, g, mean, rstd, rows, d, scratch);
  dl_cuda_layernorm_backward(dt, gdx, gdg, gdb, gdy, gx, gg, gmean, grstd, rows, d, 0);
  dl_gpu_download(got, gdx, n, dt);
  dl_gpu_compare("layernorm_backward.dx", dt, got, dx, n, tol(dt));
  dl_gpu_download(got, gdg, d, DL_DTYPE_F32);
  dl_gpu_compare("layernorm_backward.dg", dt, got, dg, d, tol_acc(dt));
  dl_gpu_download(got, gdb, d, DL_DTYPE_F32);
  dl_gpu_compare("layernorm_backward.db", dt, got, db, d, tol_acc(dt));
  free(x); free(g); free(b); free(dy); free(want); free(got); free(mean); free(rstd); free(dx); free(dg); free(db);
  free(scratch);
  dl_gpu_free(gx); dl_gpu_free(gg); dl_gpu_free(gb); dl_gpu_free(gy); dl_gpu_free(gdy); dl_gpu_free(gdx);
  dl_gpu_free(gmean); dl_gpu_free(grstd); dl_gpu_free(gdg); dl_gpu_free(gdb);
}

static void test_elementwise(dl_dtype dt) {
  const int rows = 514, h = 1024, d = 384;
  const size_t n = (size_t)rows * h;
  // GELU
  float *x = dl_test_input(n, &seed, 8.0f, dt), *dy = dl_test_input(n, &seed, 1.0f, dt), *want = copy(x, n);
  float *got = dl_test_host(2 * n);
  dl_gelu_inplace(want, n);
  void *gx = dl_gpu_upload(x, n, dt), *gy = dl_gpu_alloc(2 * n, dt), *gdy = dl_gpu_upload(dy, n, dt);
  dl_cuda_gelu(dt, gy, gx, n, 0);
  dl_gpu_download(got, gy, n, dt);
  dl_gpu_compare("gelu", dt, got, want, n, tol(dt));
  dl_gelu_backward(want, dy, x, n);
  dl_cuda_gelu_backward(dt, gy, gdy, gx, n, 0);
  dl_gpu_download(got, gy, n, dt);
  dl_gpu_compare("gelu_backward", dt, got, want, n, tol(dt));
  free(x); free(want); dl_gpu_free(gx);

  // SwiGLU over [rows, 2h]
  float *xg = dl_test_input(2 * n, &seed, 8.0f, dt), *sw = dl_test_host(n), *dxg = dl_test_host(2 * n);
  dl_swiglu(sw, xg, rows, h);
  void *gxg = dl_gpu_upload(xg, 2 * n, dt);
  dl_cuda_swiglu(dt, gy, gxg, rows, h, 0);
  dl_gpu_download(got, gy, n, dt);
  dl_gpu_compare("swiglu", dt, got, sw, n, tol(dt));
  dl_swiglu_backward(dxg, dy, xg, rows, h);
  dl_cuda_swiglu_backward(dt, gy, gdy, gxg, rows, h, 0);
  dl_gpu_download(got, gy, 2 * n, dt);
  dl_gpu_compare("swiglu_backward", dt, got, dxg, 2 * n, tol(dt));
  free(xg); free(sw); free(dxg); dl_gpu_free(gxg);

  // LayerScale + residual over [rows, d]
  const size_t m = (size_t)rows * d;
  float *res = dl_test_input(m, &seed, 2.0f, dt), *y = dl_test_input(m, &seed, 2.0f, dt);
  float *gamma = dl_test_input(d, &seed, 1.0f, dt), *dres = dl_test_input(m, &seed, 1.0f, dt);
  void *gres = dl_gpu_upload(res, m, dt), *gyy = dl_gpu_upload(y, m, dt), *ggam = dl_gpu_upload(gamma, d, dt);
  void *gdres = dl_gpu_upload(dres, m, dt);
  float *gdgam = dl_gpu_alloc(d, DL_DTYPE_F32);
  dl_residual_scaled(res, y, gamma, rows, d);
  dl_cuda_residual_scaled(dt, gres, gyy, ggam, rows, d, 0);
  dl_gpu_download(got, gres, m, dt);
  dl_gpu_compare("residual_scaled", dt, got, res, m, tol(dt));
  float *dyy = dl_test_host(m), *dgam = calloc(d, sizeof(float));
  float *scratch = dl_test_host((size_t)d * omp_get_max_threads());
  dl_residual_scaled_backward(dyy, dgam, dres, y, gamma, rows, d, scratch);
  dl_cuda_residual_scaled_backward(dt, gy, gdgam, gdres, gyy, ggam, rows, d, 0);
  dl_gpu_download(got, gy, m, dt);
  dl_gpu_compare("residual_scaled_backward.dy", dt, got, dyy, m, tol(dt));
  dl_gpu_download(got, gdgam, d, DL_DTYPE_F32);
  dl_gpu_compare("residual_scaled_backward.dgamma", dt, got, dgam, d, tol_acc(dt));
  free(res); free(y); free(gamma); free(dres); free(dyy); free(dgam); free(scratch); free(dy); free(got);
  dl_gpu_free(gres); dl_gpu_free(gyy); dl_gpu_free(ggam); dl_gpu_free(gdres); dl_gpu_free(gdgam);
  dl_gpu_free(gy); dl_gpu_free(gdy);
}

static void test_attention(dl_dtype dt, int batch, int t, int heads) {
  const int hd = 64, D = heads * hd;
  const size_t nqkv = (size_t)batch * t * 3 * D, nout = (size_t)batch * t * D;
  float *qkv = dl_test_input(nqkv, &seed, 3.0f, dt), *dout = dl_test_input(nout, &seed, 1.0f, dt);
  float *want = dl_test_host(nout), *got = dl_test_host(nqkv), *probs = dl_test_host((size_t)batch * heads * t * t);
  const int threads = omp_get_max_threads();
  float *scratch = dl_test_host((size_t)threads * (dl_attention_scratch_floats(t) > dl_attention_backward_scratch_floats(t)
                                               ? dl_attention_scratch_floats(t)
                                               : dl_attention_backward_scratch_floats(t)));
  dl_attention(want, qkv, batch, t, heads, hd, scratch);
  void *gqkv = dl_gpu_upload(qkv, nqkv, dt), *gout = dl_gpu_alloc(nout, dt), *gdout = dl_gpu_upload(dout, nout, dt);
  void *gdqkv = dl_gpu_alloc(nqkv, dt);
  float *glse = dl_gpu_alloc((size_t)batch * heads * t, DL_DTYPE_F32);
  float *gscratch = dl_gpu_alloc(dl_cuda_attention_backward_scratch_floats(batch, t, heads), DL_DTYPE_F32);
  char name[64];
  const int rc = dl_cuda_attention(dt, gout, glse, gqkv, batch, t, heads, hd, 0);
  CHECK(rc == 0, "attention accepts head dimension 64");
  dl_gpu_download(got, gout, nout, dt);
  snprintf(name, sizeof name, "attention[b%d,t%d,h%d]", batch, t, heads);
  dl_gpu_compare(name, dt, got, want, nout, tol(dt));

  // The backward pass from the GPU's own forward output, as in training.
  dl_attention_train(want, probs, qkv, batch, t, heads, hd);
  float *dqkv = dl_test_host(nqkv);
  dl_attention_backward(dqkv, dout, qkv, probs, batch, t, heads, hd, scratch);
  dl_cuda_attention_backward(dt, gdqkv, gdout, gqkv, gout, glse, batch, t, heads, hd, gscratch, 0);
  dl_gpu_download(got, gdqkv, nqkv, dt);
  snprintf(name, sizeof name, "attention_backward[b%d,t%d,h%d]", batch, t, heads);
  // bf16: the backward also reads the forward's bf16-rounded output.
  dl_gpu_compare(name, dt, got, dqkv, nqkv, dt == DL_DTYPE_F32 ? TOL_F32 : 8e-3);
  CHECK(dl_cuda_attention(dt, gout, NULL, gqkv, batch, t, heads * 2, 32, 0) != 0,
        "attention refuses head dimension 32");
  free(qkv); free(dout); free(want); free(got); free(probs); free(scratch); free(dqkv);
  dl_gpu_free(gqkv); dl_gpu_free(gout); dl_gpu_free(gdout); dl_gpu_free(gdqkv); dl_gpu_free(glse);
  dl_gpu_free(gscratch);
}

// The attention dispatch (attention_dispatch.h) on both paths, bf16, against
// the CPU op: the output and each of dq, dk, dv, from the same inputs. The
// cuDNN backward rounds P and dS to bf16 before its dK and dV matmuls (as
// cudnn-frontend's graph does), so its bound is wider than the own kernels'
// fp32 backward: 2e-2, a first guess that the first GPU run must confirm.
static void compare_dqkv(const char *path, int batch, int t, int heads, const float *got, const float *want,
                         double bound) {
  const size_t D = (size_t)heads * 64, rows = (size_t)batch * t;
  float *g = dl_test_host(rows * D), *w = dl_test_host(rows * D);
  static const char *parts[] = {"dq", "dk", "dv"};
  for (int part = 0; part < 3; part++) {
    for (size_t r = 0; r < rows; r++) {
      memcpy(g + r * D, got + r * 3 * D + part * D, D * sizeof(float));
      memcpy(w + r * D, want + r * 3 * D + part * D, D * sizeof(float));
    }
    char name[96];
    snprintf(name, sizeof name, "attention_%s_%s[b%d,t%d,h%d]", path, parts[part], batch, t, heads);
    dl_gpu_compare(name, DL_DTYPE_BF16, g, w, rows * D, bound);
  }
  free(g);
  free(w);
}

static void test_attention_paths(int batch, int t, int heads) {
  const int hd = 64, D = heads * hd;
  const dl_dtype dt = DL_DTYPE_BF16;
  const size_t nqkv = (size_t)batch * t * 3 * D, nout = (size_t)batch * t * D;
  float *qkv = dl_test_input(nqkv, &seed, 3.0f, dt), *dout = dl_test_input(nout, &seed, 1.0f, dt);
  float *want = dl_test_host(nout), *dqkv = dl_test_host(nqkv), *got = dl_test_host(nqkv);
  float *probs = dl_test_host((size_t)batch * heads * t * t);
  const int threads = omp_get_max_threads();
  const size_t per = dl_attention_backward_scratch_floats(t) > dl_attention_scratch_floats(t)
                         ? dl_attention_backward_scratch_floats(t)
                         : dl_attention_scratch_floats(t);
  float *scratch = dl_test_host((size_t)threads * per);
  dl_attention_train(want, probs, qkv, batch, t, heads, hd);
  dl_attention_backward(dqkv, dout, qkv, probs, batch, t, heads, hd, scratch);
  void *gqkv = dl_gpu_upload(qkv, nqkv, dt), *gout = dl_gpu_alloc(nout, dt), *gdout = dl_gpu_upload(dout, nout, dt);
  void *gdqkv = dl_gpu_alloc(nqkv, dt);
  float *glse = dl_gpu_alloc((size_t)batch * heads * t, DL_DTYPE_F32);
  float *gscratch = dl_gpu_alloc(dl_cuda_attention_backward_scratch_floats(batch, t, heads), DL_DTYPE_F32);
  const dl_attn_path paths[2] = {DL_ATTN_OWN, DL_ATTN_CUDNN};
  for (int i = 0; i < 2; i++) {
    const char *name = dl_attn_path_name(paths[i]);
    char op[96];
    dl_cuda_attn_set_path(paths[i]);
    // The teacher's forward (no statistics), then the training pair.
    int rc = dl_cuda_attn_forward(dt, gout, NULL, gqkv, batch, t, heads, hd, 0);
    CHECK(rc == 0 && dl_cuda_attn_last_path() == paths[i], "attention forward t=%d runs %s", t, name);
    dl_gpu_download(got, gout, nout, dt);
    snprintf(op, sizeof op, "attention_%s_infer[b%d,t%d,h%d]", name, batch, t, heads);
    dl_gpu_compare(op, dt, got, want, nout, tol(dt));
    rc = dl_cuda_attn_forward(dt, gout, glse, gqkv, batch, t, heads, hd, 0);
    CHECK(rc == 0 && dl_cuda_attn_last_path() == paths[i], "training forward t=%d runs %s", t, name);
    dl_gpu_download(got, gout, nout, dt);
    snprintf(op, sizeof op, "attention_%s_train[b%d,t%d,h%d]", name, batch, t, heads);
    dl_gpu_compare(op, dt, got, want, nout, tol(dt));
    cudaCheckFatal(cudaMemset(gdqkv, 0xff, nqkv * 2));  // NaN everywhere: a slot left unwritten shows
    rc = dl_cuda_attn_backward(dt, gdqkv, gdout, gqkv, gout, glse, batch, t, heads, hd, gscratch, 0);
    CHECK(rc == 0 && dl_cuda_attn_last_path() == paths[i], "backward t=%d runs %s", t, name);
    dl_gpu_download(got, gdqkv, nqkv, dt);
    compare_dqkv(name, batch, t, heads, got, dqkv, paths[i] == DL_ATTN_OWN ? 8e-3 : 2e-2);
  }
  dl_cuda_attn_set_path(DL_ATTN_AUTO);
  free(qkv); free(dout); free(want); free(dqkv); free(got); free(probs); free(scratch);
  dl_gpu_free(gqkv); dl_gpu_free(gout); dl_gpu_free(gdout); dl_gpu_free(gdqkv); dl_gpu_free(glse);
  dl_gpu_free(gscratch);
}

// The fallback: fp32 storage, which cuDNN's fused attention does not take.
// auto runs the own kernels (and says so once); cudnn forced is an error.
static void test_attention_fallback(void) {
  const int batch = 1, t = 54, heads = 2, hd = 64, D = heads * hd;
  const size_t nqkv = (size_t)batch * t * 3 * D, nout = (size_t)batch * t * D;
  float *qkv = dl_test_input(nqkv, &seed, 3.0f, DL_DTYPE_F32), *want = dl_test_host(nout), *got = dl_test_host(nout);
  float *scratch = dl_test_host((size_t)omp_get_max_threads() * dl_attention_scratch_floats(t));
  dl_attention(want, qkv, batch, t, heads, hd, scratch);
  void *gqkv = dl_gpu_upload(qkv, nqkv, DL_DTYPE_F32), *gout = dl_gpu_alloc(nout, DL_DTYPE_F32);
  dl_cuda_attn_set_path(DL_ATTN_AUTO);
  int rc = dl_cuda_attn_forward(DL_DTYPE_F32, gout, NULL, gqkv, batch, t, heads, hd, 0);
  CHECK(rc == 0 && dl_cuda_attn_last_path() == DL_ATTN_OWN, "fp32 attention falls back to the own kernels");
  dl_gpu_download(got, gout, nout, DL_DTYPE_F32);
  dl_gpu_compare("attention_fallback[b1,t54,h2]", DL_DTYPE_F32, got, want, nout, TOL_F32);
  dl_cuda_attn_set_path(DL_ATTN_CUDNN);
  rc = dl_cuda_attn_forward(DL_DTYPE_F32, gout, NULL, gqkv, batch, t, heads, hd, 0);
  CHECK(rc != 0, "DISTILL_ATTENTION=cudnn refuses what cuDNN cannot run");
  dl_cuda_attn_set_path(DL_ATTN_AUTO);
  free(qkv); free(want); free(got); free(scratch);
  dl_gpu_free(gqkv); dl_gpu_free(gout);
}

static void test_pos_embed(dl_dtype dt, int grid, int gh, int gw, dl_interp_mode mode) {
  const int d = 96;
  float *src = dl_test_input((size_t)grid * grid * d, &seed, 1.0f, dt), *want = dl_test_host((size_t)gh * gw * d);
  float *got = dl_test_host((size_t)gh * gw * d), *w = dl_test_host(((size_t)gh + gw) * grid);
  dl_pos_embed_resize(want, src, grid, d, gh, gw, mode);
  dl_pos_embed_axis_weights(w, grid, gh, mode);
  dl_pos_embed_axis_weights(w + (size_t)gh * grid, grid, gw, mode);
  void *gsrc = dl_gpu_upload(src, (size_t)grid * grid * d, dt), *gdst = dl_gpu_alloc((size_t)gh * gw * d, dt);
  float *gw_ = dl_gpu_upload(w, ((size_t)gh + gw) * grid, DL_DTYPE_F32);
  dl_cuda_pos_embed_resize(dt, gdst, gsrc, gw_, gw_ + (size_t)gh * grid, grid, d, gh, gw, 0);
  dl_gpu_download(got, gdst, (size_t)gh * gw * d, dt);
  char name[64];
  snprintf(name, sizeof name, "pos_embed_resize[%d->%dx%d,%s]", grid, gh, gw,
           mode == DL_INTERP_LEGACY ? "legacy" : "antialias");
  dl_gpu_compare(name, dt, got, want, (size_t)gh * gw * d, tol(dt));
  free(src); free(want); free(got); free(w);
  dl_gpu_free(gsrc); dl_gpu_free(gdst); dl_gpu_free(gw_);
}

// Losses are float32 on both sides (as the official code keeps them).
static void test_losses(void) {
  const dl_dtype f = DL_DTYPE_F32;
  const int b = 16, k = 131072;
  const size_t n = (size_t)b * k;
  float *logits = dl_test_random(n, &seed, 20.0f), *center = dl_test_random(k, &seed, 2.0f);
  float *want = dl_test_host(n), *got = dl_test_host(n);
  float *glog = dl_gpu_upload(logits, n, f), *gcen = dl_gpu_upload(center, k, f), *gout = dl_gpu_alloc(n, f);
  dl_softmax_center(want, logits, center, b, k, 0.07f);
  dl_cuda_softmax_center(gout, glog, gcen, b, k, 0.07f, 0);
  dl_gpu_download(got, gout, n, f);
  dl_gpu_compare("softmax_center[k=131072]", f, got, want, n, TOL_F32);

  // iBOT cross-entropy: teacher targets are the softmax just computed.
  float *teacher = copy(want, n), *student = dl_test_random(n, &seed, 10.0f), *weights = dl_test_host(b);
  for (int i = 0; i < b; i++) weights[i] = 0.5f + 0.1f * (float)i;
  float *dst = dl_test_host(n);
  const int n_crops = 2;
  const float temp = 0.1f, scale = 0.5f;
  const float loss = dl_ibot_loss(student, teacher, weights, b, k, n_crops, temp, scale, dst);
  float *gst = dl_gpu_upload(student, n, f), *gte = dl_gpu_upload(teacher, n, f), *gw = dl_gpu_upload(weights, b, f);
  float *grows = dl_gpu_alloc(b, f);
  dl_cuda_cross_entropy_rows(grows, gout, gst, gte, gw, b, k, temp, scale / n_crops, 0, 0);
  float rows[16];
  dl_gpu_download(rows, grows, b, f);
  double total = 0.0;
  for (int i = 0; i < b; i++) total += rows[i];
  const float gloss = (float)(total / n_crops) * scale;
  dl_gpu_compare("cross_entropy_rows.loss_ibot", f, &gloss, &loss, 1, TOL_F32);
  dl_gpu_download(got, gout, n, f);
  dl_gpu_compare("cross_entropy_rows.grad_ibot", f, got, dst, n, TOL_F32);

  // DINO over crop pairs: 2 global teacher crops, 4 student crops.
  {
    const int ns = 4, nt = 2, db = 4, dk = 65536;
    const size_t crop = (size_t)db * dk;
    const int pairs = dl_dino_pairs(ns, nt, true);
    float *ds = dl_test_random(ns * crop, &seed, 10.0f), *dt_ = dl_test_host(nt * crop);
    float *dgrad = dl_test_host(ns * crop);
    float *tl = dl_test_random(nt * crop, &seed, 10.0f);
    float *zero_center = calloc(dk, sizeof(float));
    dl_softmax_center(dt_, tl, zero_center, nt * db, dk, 0.04f);
    free(zero_center);
    const float dscale = 1.0f / (float)pairs;
    const float dloss = dl_dino_loss(ds, dt_, ns, nt, db, dk, 0.1f, true, dscale, dgrad);
    float *gds = dl_gpu_upload(ds, ns * crop, f), *gdt = dl_gpu_upload(dt_, nt * crop, f);
    float *gdg = dl_gpu_alloc(ns * crop, f), *gdl = dl_gpu_alloc((size_t)pairs * db, f);
    dl_cuda_dino_loss(gdl, gdg, gds, gdt, ns, nt, db, dk, 0.1f, 1, dscale, 0);
    float *lrows = dl_test_host((size_t)pairs * db), *dgot = dl_test_host(ns * crop);
    dl_gpu_download(lrows, gdl, (size_t)pairs * db, f);
    double dsum = 0.0;
    for (int i = 0; i < pairs * db; i++) dsum += lrows[i];
    const float dgl = (float)dsum;
    dl_gpu_compare("dino_loss.loss", f, &dgl, &dloss, 1, TOL_F32);
    dl_gpu_download(dgot, gdg, ns * crop, f);
    dl_gpu_compare("dino_loss.grad", f, dgot, dgrad, ns * crop, TOL_F32);
    free(ds); free(dt_); free(dgrad); free(tl); free(lrows); free(dgot);
    dl_gpu_free(gds); dl_gpu_free(gdt); dl_gpu_free(gdg); dl_gpu_free(gdl);
  }

  // Teacher centering: the momentum update of the center.
  {
    float *cen_cpu = copy(center, k), *cscr = dl_test_host((size_t)k + 1), *cgot = dl_test_host(k);
    float *gcscr = dl_gpu_alloc((size_t)k + 1, f);
    dl_center_update(cen_cpu, logits, b, k, 0.9f, NULL, cscr);
    dl_cuda_center_update(gcen, glog, b, k, 0.9f, NULL, gcscr, 0);
    dl_gpu_download(cgot, gcen, k, f);
    dl_gpu_compare("center_update", f, cgot, cen_cpu, k, TOL_F32);
    free(cen_cpu); free(cscr); free(cgot);
    dl_gpu_free(gcscr);
  }

  // Sinkhorn-Knopp, one rank.
  const int sb = 32, sk = 65536;
  const size_t sn = (size_t)sb * sk;
  float *sl = dl_test_random(sn, &seed, 2.0f), *sq = dl_test_host(sn), *sgot = dl_test_host(sn);
  float *sscr = dl_test_host(sk);
  dl_sinkhorn_knopp(sq, sl, sb, sk, 0.05f, 3, NULL, sscr);
  float *gsl = dl_gpu_upload(sl, sn, f), *gsq = dl_gpu_alloc(sn, f), *gsscr = dl_gpu_alloc(sk + 4, f);
  dl_cuda_sinkhorn_knopp(gsq, gsl, sb, sk, 0.05f, 3, NULL, gsscr, 0);
  dl_gpu_download(sgot, gsq, sn, f);
  dl_gpu_compare("sinkhorn_knopp[32x65536]", f, sgot, sq, sn, TOL_F32);

  // Sinkhorn-Knopp with one sample 200 * temp below the others: its shifted
  // exps underflow and the row step is recomputed from its own exps (the
  // official value); the CPU's version is checked against it in
  // tests/train/test_sk_underflow.c.
  {
    const int ub = 8, uk = 4096;
    const size_t un = (size_t)ub * uk;
    float *ul = dl_test_random(un, &seed, 2.0f), *uq = dl_test_host(un), *ugot = dl_test_host(un);
    float *uscr = dl_test_host(uk);
    for (int j = 0; j < uk; j++) ul[(size_t)3 * uk + j] -= 200.0f * 0.05f;
    dl_sinkhorn_knopp(uq, ul, ub, uk, 0.05f, 3, NULL, uscr);
    float *gul = dl_gpu_upload(ul, un, f), *guq = dl_gpu_alloc(un, f), *guscr = dl_gpu_alloc(uk + 4, f);
    dl_cuda_sinkhorn_knopp(guq, gul, ub, uk, 0.05f, 3, NULL, guscr, 0);
    dl_gpu_download(ugot, guq, un, f);
    dl_gpu_compare("sinkhorn_knopp[8x4096, one sample 200 T below]", f, ugot, uq, un, TOL_F32);
    free(ul); free(uq); free(ugot); free(uscr);
    dl_gpu_free(gul); dl_gpu_free(guq); dl_gpu_free(guscr);
  }

  // KoLeo: loss and gradient.
  const int kn = 64, kd = 384;
  float *kx = dl_test_random((size_t)kn * kd, &seed, 1.0f), *kdx = dl_test_host((size_t)kn * kd);
  float *kgot = dl_test_host((size_t)kn * kd), *kscr = dl_test_host((size_t)kn * kd + 2 * kn);
  int *idx = malloc(kn * sizeof(int));
  const float kl = dl_koleo_loss(kx, kn, kd, 0.1f, kdx, kscr, idx);
  float *gkx = dl_gpu_upload(kx, (size_t)kn * kd, f), *gkdx = dl_gpu_alloc((size_t)kn * kd, f);
  float *gkl = dl_gpu_alloc(1, f), *gkscr = dl_gpu_alloc(dl_cuda_koleo_scratch_floats(kn, kd), f);
  dl_cuda_koleo(gkl, gkdx, gkx, kn, kd, 0.1f, gkscr, 0);
  float kgl;
  dl_gpu_download(&kgl, gkl, 1, f);
  dl_gpu_compare("koleo.loss", f, &kgl, &kl, 1, TOL_F32);
  dl_gpu_download(kgot, gkdx, (size_t)kn * kd, f);
  dl_gpu_compare("koleo.grad", f, kgot, kdx, (size_t)kn * kd, TOL_F32);

  free(logits); free(center); free(want); free(got); free(teacher); free(student); free(weights); free(dst);
  free(sl); free(sq); free(sgot); free(sscr); free(kx); free(kdx); free(kgot); free(kscr); free(idx);
  dl_gpu_free(glog); dl_gpu_free(gcen); dl_gpu_free(gout); dl_gpu_free(gst); dl_gpu_free(gte); dl_gpu_free(gw);
  dl_gpu_free(grows); dl_gpu_free(gsl); dl_gpu_free(gsq); dl_gpu_free(gsscr); dl_gpu_free(gkx);
  dl_gpu_free(gkdx); dl_gpu_free(gkl); dl_gpu_free(gkscr);
}

// AdamW, EMA and clipping over a small ViT's flat buffer.
static void test_optimizer(void) {
  const dl_dtype f = DL_DTYPE_F32;
  const dl_vit_config cfg = {.patch = 14, .dim = 128, .depth = 2, .heads = 2, .ffn_hidden = 512, .registers = 4,
                             .pos_grid = 8, .ffn = DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
  dl_vit_layout layout;
  dl_vit_layout_build(&cfg, &layout);
  const size_t total = layout.total;
  float *params = dl_test_random(total, &seed, 1.0f);
  dl_adamw_config ac = dl_adamw_config_default();
  ac.layer_decay = 0.9f;
  ac.patch_embed_lr_mult = 0.2f;
  dl_optim_module mod;
  dl_optim_module_init(&mod, &layout, params, cfg.depth, &ac);
  mod.groups[dl_vit_global_index(DL_P_MASK)].frozen = true;
  float *gp = dl_gpu_upload(params, total, f), *gm = dl_gpu_alloc(total, f), *gv = dl_gpu_alloc(total, f);
  float *gg = dl_gpu_alloc(total, f), *gema = dl_gpu_upload(params, total, f);
  void *gcopy = dl_gpu_alloc(total, DL_DTYPE_BF16);
  dl_adamw_segment *segs = malloc((size_t)layout.count * sizeof *segs);
  dl_adamw_segment *gsegs;
  cudaCheckFatal(cudaMalloc((void **)&gsegs, (size_t)layout.count * sizeof *segs));
  float *got = dl_test_host(total), *grads = dl_test_host(total);
  float gnorm = 0.0f, *gnorm_dev = dl_gpu_alloc(1, f);
  double *gss;
  cudaCheckFatal(cudaMalloc((void **)&gss, sizeof(double)));
  double cpu_norm = 0.0;
  for (long step = 1; step <= 3; step++) {
    for (size_t i = 0; i < total; i++) grads[i] = mod.grads[i] = 0.05f * (float)((i * 2654435761u + step) % 1000) / 1000.0f;
    cudaCheckFatal(cudaMemcpy(gg, grads, total * sizeof(float), cudaMemcpyHostToDevice));
    cpu_norm = dl_clip_grad_norm(&mod, 1.0f);
    dl_cuda_clip_grad_norm(gg, total, 1.0f, gnorm_dev, gss, 0);
    const double lr = 1e-3, wd = 0.04;
    dl_adamw_step(&mod, &ac, step, lr, wd, lr);
    float bc2s;
    dl_adamw_segments_fill(segs, &mod, &ac, step, lr, wd, lr, &bc2s);
    cudaCheckFatal(cudaMemcpy(gsegs, segs, (size_t)layout.count * sizeof *segs, cudaMemcpyHostToDevice));
    dl_cuda_adamw(gp, gm, gv, gg, gsegs, layout.count, total, ac.beta1, ac.beta2, ac.eps, bc2s, gcopy, 0);
    dl_ema_update(&mod, 0.99);
    dl_cuda_ema(gema, gp, total, 0.99f, 0);
  }
  dl_gpu_download(&gnorm, gnorm_dev, 1, f);
  const float cn = (float)cpu_norm;
  dl_gpu_compare("clip_grad_norm.norm", f, &gnorm, &cn, 1, TOL_F32);
  dl_gpu_download(got, gg, total, f);
  dl_gpu_compare("clip_grad_norm.grads", f, got, mod.grads, total, TOL_F32);
  dl_gpu_download(got, gp, total, f);
  dl_gpu_compare("adamw.params_3_steps", f, got, mod.params, total, TOL_F32);
  float *rounded = copy(mod.params, total);
  dl_bf16_round_all(rounded, total);
  dl_gpu_download(got, gcopy, total, DL_DTYPE_BF16);
  // A last-bit difference in a float32 parameter may round to the other bf16
  // neighbour: a few such elements stay far below 1e-4 of the norm.
  dl_gpu_compare("adamw.bf16_copy", DL_DTYPE_BF16, got, rounded, total, 1e-4);
  dl_gpu_download(got, gm, total, f);
  dl_gpu_compare("adamw.m", f, got, mod.m, total, TOL_F32);
  dl_gpu_download(got, gv, total, f);
  dl_gpu_compare("adamw.v", f, got, mod.v, total, TOL_F32);
  dl_gpu_download(got, gema, total, f);
  dl_gpu_compare("ema", f, got, mod.ema, total, TOL_F32);
  free(got); free(grads); free(rounded); free(segs);
  dl_optim_module_free(&mod);
  free(params);
  dl_vit_layout_free(&layout);
  dl_gpu_free(gp); dl_gpu_free(gm); dl_gpu_free(gv); dl_gpu_free(gg); dl_gpu_free(gema); dl_gpu_free(gcopy);
  dl_gpu_free(gsegs); dl_gpu_free(gnorm_dev); dl_gpu_free(gss);
}

// The iBOT selection's gather (either storage type) and float32 scatter
// against dl_gather_rows / dl_scatter_rows on one 518 px selection: copies,
// so equal to the bit (tolerance 0).
static void test_row_select(dl_dtype dt) {
  enum { CROPS = 8, GRID = 37, P = GRID * GRID, D = 96 };
  static bool masks[CROPS * P];
  static int rows[CROPS * P];
  static float w[CROPS * P];
  const dl_ibot_select sel = {.selected = true, .probability = 0.5f, .ratio_lo = 0.1f, .ratio_hi = 0.5f, .seed = 4};
  const int m = dl_ibot_select_step(&sel, 3, CROPS, GRID, masks, rows, w);
  const size_t n = (size_t)CROPS * P * D, f = sizeof(float);
  float *x = dl_test_input(n, &seed, 1.0f, dt), *want = dl_test_host(n), *got = dl_test_host(n);
  void *gx = dl_gpu_upload(x, n, dt), *gsel = dl_gpu_alloc((size_t)m * D, dt);
  int *grows;
  cudaCheckFatal(cudaMalloc((void **)&grows, (size_t)m * sizeof(int)));
  cudaCheckFatal(cudaMemcpy(grows, rows, (size_t)m * sizeof(int), cudaMemcpyHostToDevice));
  dl_gather_rows(want, x, rows, m, D);
  dl_cuda_gather_rows(gsel, gx, grows, m, D * dl_dtype_size(dt), 0);
  dl_gpu_download(got, gsel, (size_t)m * D, dt);
  dl_gpu_compare("gather_rows[518px selection]", dt, got, want, (size_t)m * D, 0.0);
  if (dt == DL_DTYPE_F32) {  // scatter back into zeros: the selected rows, 0 elsewhere
    float *gfull = dl_gpu_alloc(n, DL_DTYPE_F32);
    memset(want + (size_t)m * D, 0, (n - (size_t)m * D) * f);
    float *back = dl_test_host(n);
    memset(back, 0, n * f);
    dl_scatter_rows(back, want, rows, m, D);
    dl_cuda_scatter_rows(gfull, gsel, grows, m, D, 0);
    dl_gpu_download(got, gfull, n, DL_DTYPE_F32);
    dl_gpu_compare("scatter_rows[518px selection]", dt, got, back, n, 0.0);
    dl_gpu_free(gfull);
    free(back);
  }
  cudaCheckFatal(cudaFree(grows));
  dl_gpu_free(gx), dl_gpu_free(gsel);
  free(x), free(want), free(got);
}

int main(void) {
  if (dl_gpu_test_device()) return DL_TEST_SKIP;
  dl_cuda_blas blas;
  dl_cuda_blas_init(&blas);
  const dl_dtype types[2] = {DL_DTYPE_F32, DL_DTYPE_BF16};
  for (int i = 0; i < 2; i++) {
    const dl_dtype dt = types[i];
    test_linear(&blas, dt);
    test_layernorm(dt);
    test_elementwise(dt);
    dl_test_residual_ops(dt, (dl_parity_tol){tol(dt), tol_acc(dt)});
    test_attention(dt, 2, 257, 3);
    test_attention(dt, 1, 75, 2);   // one full and one partial tile
    test_attention(dt, 1, 1370, 1); // the 518 px sequence
    test_pos_embed(dt, 37, 16, 16, DL_INTERP_LEGACY);
    test_pos_embed(dt, 37, 20, 30, DL_INTERP_ANTIALIAS);
    test_row_select(dt);
  }
  // Both attention paths at the token counts DINOv2 meets: 98 px local crops
  // (49 patches + class + 4 registers), 224 px, 518 px.
  test_attention_paths(4, 54, 6);
  test_attention_paths(2, 257, 6);
  test_attention_paths(1, 1370, 2);
  test_attention_fallback();
  test_losses();
  test_optimizer();
  cudaCheckFatal(cudaDeviceSynchronize());
  dl_cuda_blas_free(&blas);
  return dl_test_summary("test_cuda_ops");
}
