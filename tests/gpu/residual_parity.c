// Parity of the float32 residual stream's kernels (model/cuda/residual_norm.cu)
// and the vectorised or fused element-wise kernels against the CPU ops, run
// by test_cuda_ops. The residual stream is float32 whatever the storage
// type, so its values are held to 1e-5 in both; outputs stored in bf16 and
// float32 accumulators get test_cuda_ops' bounds (passed in).
#include "tests/gpu/residual_parity.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu/ops.h"
#include "model/cpu/ops_backward.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/harness.h"

#define TOL_STREAM 1e-5  // float32 on both sides, same inputs: only FMA contraction and summation order differ

static uint64_t seed = 4321;

static void column_sums(float *out, const float *x, int rows, int d) {
  for (int j = 0; j < d; j++) {
    double s = out[j];
    for (int r = 0; r < rows; r++) s += x[(size_t)r * d + j];
    out[j] = (float)s;
  }
}

// x_out = x_in + gamma * branch, then LayerNorm: d = 384 takes the 4-wide
// path, d = 390 the scalar one; in_place runs x_out = x_in.
static void residual_layernorm_case(dl_dtype dt, int rows, int d, int in_place, dl_parity_tol t) {
  const size_t n = (size_t)rows * d;
  float *x = dl_test_random(n, &seed, 3.0f), *br = dl_test_input(n, &seed, 2.0f, dt);
  float *gam = dl_test_input(d, &seed, 0.5f, dt);
  float *g = dl_test_input(d, &seed, 2.0f, dt), *b = dl_test_input(d, &seed, 1.0f, dt);
  float *want_x = dl_test_host(n), *want_y = dl_test_host(n), *mean = dl_test_host(rows), *rstd = dl_test_host(rows);
  float *got = dl_test_host(n);
  memcpy(want_x, x, n * sizeof(float));
  dl_residual_scaled(want_x, br, gam, rows, d);
  dl_layernorm(want_y, want_x, g, b, rows, d, 1e-6f);
  dl_layernorm_stats(mean, rstd, want_x, rows, d, 1e-6f);
  float *gx = dl_gpu_upload(x, n, DL_DTYPE_F32), *gxo = in_place ? gx : dl_gpu_alloc(n, DL_DTYPE_F32);
  void *gbr = dl_gpu_upload(br, n, dt), *ggam = dl_gpu_upload(gam, d, dt), *gg = dl_gpu_upload(g, d, dt);
  void *gb = dl_gpu_upload(b, d, dt), *gy = dl_gpu_alloc(n, dt);
  float *gmean = dl_gpu_alloc(rows, DL_DTYPE_F32), *grstd = dl_gpu_alloc(rows, DL_DTYPE_F32);
  dl_cuda_residual_layernorm(dt, gxo, gy, gmean, grstd, gx, gbr, ggam, gg, gb, rows, d, 1e-6f, 0);
  char name[96];
  snprintf(name, sizeof name, "residual_layernorm%s.d%d.x", in_place ? "_inplace" : "", d);
  dl_gpu_download(got, gxo, n, DL_DTYPE_F32);
  dl_gpu_compare(name, dt, got, want_x, n, TOL_STREAM);
  snprintf(name, sizeof name, "residual_layernorm%s.d%d.y", in_place ? "_inplace" : "", d);
  dl_gpu_download(got, gy, n, dt);
  dl_gpu_compare(name, dt, got, want_y, n, t.out);
  dl_gpu_download(got, grstd, rows, DL_DTYPE_F32);
  dl_gpu_compare("residual_layernorm.rstd", dt, got, rstd, rows, TOL_STREAM);
  // Without a branch: the LayerNorm of the float32 stream alone.
  dl_layernorm(want_y, x, g, b, rows, d, 1e-6f);
  float *gx0 = dl_gpu_upload(x, n, DL_DTYPE_F32);
  dl_cuda_residual_layernorm(dt, NULL, gy, NULL, NULL, gx0, NULL, NULL, gg, gb, rows, d, 1e-6f, 0);
  dl_gpu_download(got, gy, n, dt);
  snprintf(name, sizeof name, "layernorm_f32_input.d%d", d);
  dl_gpu_compare(name, dt, got, want_y, n, t.out);
  free(x); free(br); free(gam); free(g); free(b); free(want_x); free(want_y); free(mean); free(rstd); free(got);
  if (!in_place) dl_gpu_free(gxo);
  dl_gpu_free(gx); dl_gpu_free(gx0); dl_gpu_free(gbr); dl_gpu_free(ggam); dl_gpu_free(gg); dl_gpu_free(gb);
  dl_gpu_free(gy); dl_gpu_free(gmean); dl_gpu_free(grstd);
}

// LayerScale 1e-5 on a stream of magnitude ~1: the update (x_out - x_in) must
// survive. A bf16 stream rounds it away entirely (relative error 1). In
// float32 one rounding of x_out is up to 6e-8 absolute against updates of
// ~1e-5, and the GPU may round differently from the CPU (FMA): up to ~1 %
// per element, ~0.5 % over the vector; allowed 2e-2.
static void layerscale_tiny_case(dl_dtype dt) {
  const int rows = 257, d = 384;
  const size_t n = (size_t)rows * d;
  float *x = dl_test_random(n, &seed, 2.0f), *br = dl_test_input(n, &seed, 2.0f, dt), *gam = dl_test_host(d);
  float *one = dl_test_host(d);
  float *zero = calloc(d, sizeof(float)), *want = dl_test_host(n), *got = dl_test_host(n);
  for (int j = 0; j < d; j++) gam[j] = 1e-5f, one[j] = 1.0f;
  if (dt == DL_DTYPE_BF16) dl_bf16_round_all(gam, d);  // the value the GPU stores
  memcpy(want, x, n * sizeof(float));
  dl_residual_scaled(want, br, gam, rows, d);
  for (size_t i = 0; i < n; i++) want[i] -= x[i];
  float *gx = dl_gpu_upload(x, n, DL_DTYPE_F32), *gxo = dl_gpu_alloc(n, DL_DTYPE_F32);
  void *gbr = dl_gpu_upload(br, n, dt), *ggam = dl_gpu_upload(gam, d, dt), *gg = dl_gpu_upload(one, d, dt);
  void *gb = dl_gpu_upload(zero, d, dt), *gy = dl_gpu_alloc(n, dt);
  dl_cuda_residual_layernorm(dt, gxo, gy, NULL, NULL, gx, gbr, ggam, gg, gb, rows, d, 1e-6f, 0);
  dl_gpu_download(got, gxo, n, DL_DTYPE_F32);
  for (size_t i = 0; i < n; i++) got[i] -= x[i];
  dl_gpu_compare("residual_layernorm.layerscale_1e-5_update", dt, got, want, n, 2e-2);
  free(x); free(br); free(gam); free(one); free(zero); free(want); free(got);
  dl_gpu_free(gx); dl_gpu_free(gxo); dl_gpu_free(gbr); dl_gpu_free(ggam); dl_gpu_free(gg); dl_gpu_free(gb);
  dl_gpu_free(gy);
}

// The LayerNorm backward into a float32 residual gradient that already
// holds a value, with dg, db in the same pass (both start non-zero).
static void layernorm_backward_residual_case(dl_dtype dt, int rows, int d, dl_parity_tol t) {
  const size_t n = (size_t)rows * d;
  float *x = dl_test_random(n, &seed, 4.0f), *g = dl_test_input(d, &seed, 2.0f, dt);
  float *dy = dl_test_input(n, &seed, 1.0f, dt);
  float *resid = dl_test_random(n, &seed, 1.0f), *dg = dl_test_random(d, &seed, 1.0f);
  float *db = dl_test_random(d, &seed, 1.0f), *mean = dl_test_host(rows), *rstd = dl_test_host(rows);
  float *dx = dl_test_host(n), *got = dl_test_host(n);
  for (size_t i = 0; i < n; i++) x[i] += 1.5f;
  dl_layernorm_stats(mean, rstd, x, rows, d, 1e-6f);
  float *gx = dl_gpu_upload(x, n, DL_DTYPE_F32), *gres = dl_gpu_upload(resid, n, DL_DTYPE_F32);
  float *gdg = dl_gpu_upload(dg, d, DL_DTYPE_F32), *gdb = dl_gpu_upload(db, d, DL_DTYPE_F32);
  float *gmean = dl_gpu_upload(mean, rows, DL_DTYPE_F32), *grstd = dl_gpu_upload(rstd, rows, DL_DTYPE_F32);
  void *gg = dl_gpu_upload(g, d, dt), *gdy = dl_gpu_upload(dy, n, dt);
  float *scratch = dl_test_host(dl_layernorm_backward_scratch_floats(d));
  dl_layernorm_backward(dx, dg, db, dy, x, g, mean, rstd, rows, d, scratch);
  for (size_t i = 0; i < n; i++) resid[i] += dx[i];
  dl_cuda_layernorm_backward_residual(dt, gres, gdg, gdb, gdy, gx, gg, gmean, grstd, rows, d, 0);
  char name[96];
  snprintf(name, sizeof name, "layernorm_backward_residual.d%d.dresid", d);
  dl_gpu_download(got, gres, n, DL_DTYPE_F32);
  dl_gpu_compare(name, dt, got, resid, n, t.acc);  // float32 out, bf16-exact dy and g in
  dl_gpu_download(got, gdg, d, DL_DTYPE_F32);
  dl_gpu_compare("layernorm_backward_residual.dg", dt, got, dg, d, t.acc);
  dl_gpu_download(got, gdb, d, DL_DTYPE_F32);
  dl_gpu_compare("layernorm_backward_residual.db", dt, got, db, d, t.acc);
  free(x); free(g); free(dy); free(resid); free(dg); free(db); free(mean); free(rstd); free(dx); free(got);
  free(scratch);
  dl_gpu_free(gx); dl_gpu_free(gres); dl_gpu_free(gdg); dl_gpu_free(gdb); dl_gpu_free(gmean); dl_gpu_free(grstd);
  dl_gpu_free(gg); dl_gpu_free(gdy);
}

// LayerScale's backward from a float32 gradient with the branch's bias
// gradient in the same pass.
static void layerscale_backward_case(dl_dtype dt, dl_parity_tol t) {
  const int rows = 514, d = 384;
  const size_t n = (size_t)rows * d;
  float *dx = dl_test_random(n, &seed, 1.0f), *y = dl_test_input(n, &seed, 2.0f, dt);
  float *gam = dl_test_input(d, &seed, 1.0f, dt);
  float *dy = dl_test_host(n), *dgam = calloc(d, sizeof(float)), *dbias = calloc(d, sizeof(float));
  float *got = dl_test_host(n);
  float *scratch = dl_test_host((size_t)d * omp_get_max_threads());
  dl_residual_scaled_backward(dy, dgam, dx, y, gam, rows, d, scratch);
  column_sums(dbias, dy, rows, d);
  float *gdx = dl_gpu_upload(dx, n, DL_DTYPE_F32), *gdgam = dl_gpu_alloc(d, DL_DTYPE_F32);
  float *gdbias = dl_gpu_alloc(d, DL_DTYPE_F32);
  void *gy = dl_gpu_upload(y, n, dt), *ggam = dl_gpu_upload(gam, d, dt), *gdy = dl_gpu_alloc(n, dt);
  dl_cuda_layerscale_backward(dt, gdy, gdgam, gdbias, gdx, gy, ggam, rows, d, 0);
  dl_gpu_download(got, gdy, n, dt);
  dl_gpu_compare("layerscale_backward.dy", dt, got, dy, n, t.out);
  dl_gpu_download(got, gdgam, d, DL_DTYPE_F32);
  dl_gpu_compare("layerscale_backward.dgamma", dt, got, dgam, d, t.acc);
  dl_gpu_download(got, gdbias, d, DL_DTYPE_F32);
  dl_gpu_compare("layerscale_backward.dbias", dt, got, dbias, d, t.acc);
  free(dx); free(y); free(gam); free(dy); free(dgam); free(dbias); free(got); free(scratch);
  dl_gpu_free(gdx); dl_gpu_free(gdgam); dl_gpu_free(gdbias); dl_gpu_free(gy); dl_gpu_free(ggam); dl_gpu_free(gdy);
}

// GELU's backward with the fc1 bias gradient in the same pass; n = 1030
// columns leaves a partial block of 32.
static void gelu_backward_bias_grad_case(dl_dtype dt, dl_parity_tol t) {
  const int rows = 514, cols = 1030;
  const size_t n = (size_t)rows * cols;
  float *pre = dl_test_input(n, &seed, 8.0f, dt), *dy = dl_test_input(n, &seed, 1.0f, dt), *dx = dl_test_host(n);
  float *got = dl_test_host(n);
  float *db = dl_test_random(cols, &seed, 1.0f);
  float *gdb = dl_gpu_upload(db, cols, DL_DTYPE_F32);
  void *gp = dl_gpu_upload(pre, n, dt), *gdy = dl_gpu_upload(dy, n, dt), *gdx = dl_gpu_alloc(n, dt);
  dl_gelu_backward(dx, dy, pre, n);
  column_sums(db, dx, rows, cols);
  dl_cuda_gelu_backward_bias_grad(dt, gdx, gdb, gdy, gp, rows, cols, 0);
  dl_gpu_download(got, gdx, n, dt);
  dl_gpu_compare("gelu_backward_bias_grad.dx", dt, got, dx, n, t.out);
  dl_gpu_download(got, gdb, cols, DL_DTYPE_F32);
  dl_gpu_compare("gelu_backward_bias_grad.db", dt, got, db, cols, t.acc);
  free(pre); free(dy); free(dx); free(got); free(db);
  dl_gpu_free(gdb); dl_gpu_free(gp); dl_gpu_free(gdy); dl_gpu_free(gdx);
}

// The 16-byte vector paths with a scalar tail (n = 8k + 5) and the all-scalar
// path (pointers one element past a 16-byte boundary): GELU, add, convert.
static void vector_tail_case(dl_dtype dt, dl_parity_tol t) {
  const size_t n = 8 * 4099 + 5;
  float *x = dl_test_input(n + 1, &seed, 6.0f, dt), *a = dl_test_input(n + 1, &seed, 1.0f, dt);
  float *want = dl_test_host(n + 1), *got = dl_test_host(n + 1);
  void *gx = dl_gpu_upload(x, n + 1, dt), *gy = dl_gpu_alloc(n + 1, dt), *ga = dl_gpu_upload(a, n + 1, dt);
  const size_t e = dl_dtype_size(dt);
  for (int off = 0; off < 2; off++) {
    const char *path = off ? "scalar" : "vector+tail";
    char name[96];
    memcpy(want, x + off, n * sizeof(float));
    dl_gelu_inplace(want, n);
    dl_cuda_gelu(dt, (char *)gy + off * e, (const char *)gx + off * e, n, 0);
    dl_gpu_download(got, gy, n + 1, dt);
    snprintf(name, sizeof name, "gelu.%s", path);
    dl_gpu_compare(name, dt, got + off, want, n, t.out);
    for (size_t i = 0; i < n; i++) want[i] = got[i + off] + a[i + off];  // from the stored GELU output
    dl_cuda_add(dt, (char *)gy + off * e, (const char *)ga + off * e, n, 0);
    dl_gpu_download(got, gy, n + 1, dt);
    snprintf(name, sizeof name, "add.%s", path);
    dl_gpu_compare(name, dt, got + off, want, n, t.out);
  }
  // Storage conversion both ways: float32 -> dt -> float32 is the rounding.
  float *f = dl_test_random(n + 1, &seed, 3.0f), *gf = dl_gpu_upload(f, n + 1, DL_DTYPE_F32);
  float *gback = dl_gpu_alloc(n + 1, DL_DTYPE_F32);
  void *gt = dl_gpu_alloc(n + 1, dt);
  for (int off = 0; off < 2; off++) {
    for (size_t i = 0; i < n; i++) want[i] = dt == DL_DTYPE_BF16 ? dl_bf16_round(f[i + off]) : f[i + off];
    dl_cuda_convert((char *)gt + off * e, dt, gf + off, DL_DTYPE_F32, n, 0);
    dl_cuda_convert(gback + off, DL_DTYPE_F32, (const char *)gt + off * e, dt, n, 0);
    dl_gpu_download(got, gback, n + 1, DL_DTYPE_F32);
    dl_gpu_compare(off ? "convert.scalar" : "convert.vector+tail", dt, got + off, want, n, 1e-7);
  }
  free(x); free(a); free(want); free(got); free(f);
  dl_gpu_free(gx); dl_gpu_free(gy); dl_gpu_free(ga); dl_gpu_free(gf); dl_gpu_free(gback); dl_gpu_free(gt);
}

void dl_test_residual_ops(dl_dtype dt, dl_parity_tol t) {
  residual_layernorm_case(dt, 514, 384, 0, t);
  residual_layernorm_case(dt, 75, 390, 0, t);
  residual_layernorm_case(dt, 257, 384, 1, t);
  layerscale_tiny_case(dt);
  layernorm_backward_residual_case(dt, 514, 384, t);
  layernorm_backward_residual_case(dt, 75, 390, t);
  layerscale_backward_case(dt, t);
  gelu_backward_bias_grad_case(dt, t);
  vector_tail_case(dt, t);
}
