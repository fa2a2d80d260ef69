// The pieces the CUDA training step adds to the op set, each against its CPU
// counterpart on the same inputs (bf16 inputs rounded on the host first):
//   - the DINO head (MLP, L2 normalization, weight-normed last layer), the
//     teacher's last layer alone, and the feature adaptor (plain MLP):
//     outputs, every parameter gradient and the input gradient; the same
//     through the chunked API of the training step's loss path;
//   - the feature-mode losses per row (cosine, smooth-L1): loss and
//     gradient, written and accumulated;
//   - splitting the backbone's output tokens into CLS and patch rows.
// Bounds: float32 1e-5 (relative, L2); bf16 3e-2 for outputs and input
// gradients (activations rounded to bf16 in every layer), 6e-2 for parameter
// gradients (sums over rows of bf16 products), as test_cuda_vit_train.
// The losses are float32 on both sides: 1e-5. The split is a copy: exact.
// No GPU: exit 77 (skipped).
#include <stdlib.h>
#include <string.h>

#include "model/cuda/cuda_check.h"
#include "model/cuda/heads_cuda.h"
#include "model/heads.h"
#include "model/losses.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/harness.h"

static uint64_t seed = 99;

static float *input(size_t n, float scale, dl_dtype dt) {
  float *x = dl_test_random(n, &seed, scale);
  if (dt == DL_DTYPE_BF16) dl_bf16_round_all(x, n);
  return x;
}

// chunk > 0: the GPU side through the chunked API (forward_begin, the last
// layer and its backward chunk of rows by chunk, backward_finish), as the
// training step's loss path runs it.
static void check_head(dl_cuda_blas *blas, dl_dtype dt, const dl_head_config *hc, dl_head_mode mode,
                       const char *label, int chunk) {
  const bool f32 = dt == DL_DTYPE_F32;
  dl_head h;
  dl_head_init(&h, hc);
  dl_head_init_random(&h, 5);
  const int m = 37, in = mode == DL_HEAD_LAST_LAYER ? hc->out_dim : hc->in_dim, out = dl_head_out_dim(&h, mode);
  float *x = input((size_t)m * in, 2.0f, dt), *dout = input((size_t)m * out, 1.0f, dt);
  const size_t total = h.layout.total;
  float *want = malloc((size_t)m * out * sizeof(float)), *got = malloc((size_t)m * out * sizeof(float));
  float *cg = calloc(total, sizeof(float)), *gg = malloc(total * sizeof(float));
  float *cdx = malloc((size_t)m * in * sizeof(float)), *gdx = malloc((size_t)m * in * sizeof(float));
  dl_head_ws cws = {0};
  dl_head_forward(&h, mode, x, m, want, &cws);
  dl_head_backward(&h, &cws, dout, cg, cdx);

  dl_cuda_head gh;
  dl_cuda_head_init(&gh, &h, dt, blas, 0);
  dl_cuda_head_ws gws = {0};
  void *gx = dl_gpu_upload(x, (size_t)m * in, dt), *gout = dl_gpu_alloc((size_t)m * out, dt);
  void *gdout = dl_gpu_upload(dout, (size_t)m * out, dt), *gdx_dev = dl_gpu_alloc((size_t)m * in, dt);
  float *ggrads = dl_gpu_alloc(total, DL_DTYPE_F32);
  if (chunk > 0) {
    const size_t row = (size_t)out * dl_dtype_size(dt);
    dl_cuda_head_forward_begin(&gh, mode, gx, m, &gws);
    for (int r0 = 0; r0 < m; r0 += chunk)
      dl_cuda_head_last_rows(&gh, &gws, r0, m - r0 < chunk ? m - r0 : chunk, (unsigned char *)gout + r0 * row);
    for (int r0 = 0; r0 < m; r0 += chunk)
      dl_cuda_head_last_rows_backward(&gh, &gws, r0, m - r0 < chunk ? m - r0 : chunk,
                                      (unsigned char *)gdout + r0 * row, mode == DL_HEAD_LAST_LAYER ? gdx_dev : NULL);
    dl_cuda_head_backward_finish(&gh, &gws, ggrads, gdx_dev);
  } else {
    dl_cuda_head_forward(&gh, mode, gx, m, gout, &gws);
    dl_cuda_head_backward(&gh, &gws, gdout, ggrads, gdx_dev);
  }
  dl_gpu_download(got, gout, (size_t)m * out, dt);
  dl_gpu_download(gg, ggrads, total, DL_DTYPE_F32);
  dl_gpu_download(gdx, gdx_dev, (size_t)m * in, dt);
  char name[128];
  snprintf(name, sizeof name, "heads:%s.out", label);
  dl_gpu_compare(name, dt, got, want, (size_t)m * out, f32 ? 1e-5 : 3e-2);
  snprintf(name, sizeof name, "heads:%s.param_grads", label);
  dl_gpu_compare(name, dt, gg, cg, total, f32 ? 1e-5 : 6e-2);
  snprintf(name, sizeof name, "heads:%s.input_grad", label);
  dl_gpu_compare(name, dt, gdx, cdx, (size_t)m * in, f32 ? 1e-5 : 3e-2);
  dl_gpu_free(gx); dl_gpu_free(gout); dl_gpu_free(gdout); dl_gpu_free(gdx_dev); dl_gpu_free(ggrads);
  dl_cuda_head_ws_free(&gws);
  dl_cuda_head_free(&gh);
  dl_head_ws_free(&cws);
  dl_head_free(&h);
  free(x); free(dout); free(want); free(got); free(cg); free(gg); free(cdx); free(gdx);
}

// One feature loss both ways: written (accumulate 0) and added onto a
// gradient already there (accumulate 1).
static void check_feature_loss(bool cosine) {
  const int rows = 300, d = 96;
  const size_t n = (size_t)rows * d;
  const float scale = 0.7f;
  float *s = dl_test_random(n, &seed, 2.0f), *t = dl_test_random(n, &seed, 2.0f);
  float *prior = dl_test_random(n, &seed, 1.0f), *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
  float *loss_rows = malloc((size_t)rows * sizeof(float));
  const float value = cosine ? dl_cosine_loss(s, t, rows, d, scale, want) : dl_smooth_l1_loss(s, t, n, 1.0f, scale, want);
  float *gs = dl_gpu_upload(s, n, DL_DTYPE_F32), *gt = dl_gpu_upload(t, n, DL_DTYPE_F32);
  float *gd = dl_gpu_upload(prior, n, DL_DTYPE_F32), *grows = dl_gpu_alloc((size_t)rows, DL_DTYPE_F32);
  const char *label = cosine ? "cosine" : "smooth_l1";
  for (int acc = 0; acc < 2; acc++) {
    if (cosine) dl_cuda_cosine_loss_rows(grows, gd, gs, gt, rows, d, scale, acc, 0);
    else dl_cuda_smooth_l1_rows(grows, gd, gs, gt, rows, d, 1.0f, scale, acc, 0);
    dl_gpu_download(got, gd, n, DL_DTYPE_F32);
    dl_gpu_download(loss_rows, grows, (size_t)rows, DL_DTYPE_F32);
    if (acc)  // the written gradient is on the device now: added once more
      for (size_t i = 0; i < n; i++) want[i] *= 2.0f;
    double sum = 0.0;
    for (int r = 0; r < rows; r++) sum += loss_rows[r];
    const float fsum = (float)sum;
    char name[128];
    snprintf(name, sizeof name, "feature_loss:%s.value%s", label, acc ? "+acc" : "");
    dl_gpu_compare(name, DL_DTYPE_F32, &fsum, &value, 1, 1e-5);
    snprintf(name, sizeof name, "feature_loss:%s.grad%s", label, acc ? "+acc" : "");
    dl_gpu_compare(name, DL_DTYPE_F32, got, want, n, 1e-5);
  }
  dl_gpu_free(gs); dl_gpu_free(gt); dl_gpu_free(gd); dl_gpu_free(grows);
  free(s); free(t); free(prior); free(want); free(got); free(loss_rows);
}

static void check_split(dl_dtype dt) {
  const int n = 3, np = 16, R = 2, D = 64, t = 1 + R + np;
  float *x = input((size_t)n * t * D, 2.0f, dt);
  float *cls = malloc((size_t)n * D * sizeof(float)), *pat = malloc((size_t)n * np * D * sizeof(float));
  float *gcls = malloc((size_t)n * D * sizeof(float)), *gpat = malloc((size_t)n * np * D * sizeof(float));
  for (int i = 0; i < n; i++) {
    memcpy(cls + (size_t)i * D, x + (size_t)i * t * D, (size_t)D * sizeof(float));
    memcpy(pat + (size_t)i * np * D, x + ((size_t)i * t + 1 + R) * D, (size_t)np * D * sizeof(float));
  }
  void *gx = dl_gpu_upload(x, (size_t)n * t * D, dt), *dc = dl_gpu_alloc((size_t)n * D, dt);
  void *dp = dl_gpu_alloc((size_t)n * np * D, dt);
  dl_cuda_split_tokens(dt, dc, dp, gx, n, np, R, D, 0);
  dl_gpu_download(gcls, dc, (size_t)n * D, dt);
  dl_gpu_download(gpat, dp, (size_t)n * np * D, dt);
  dl_gpu_compare("split_tokens.cls", dt, gcls, cls, (size_t)n * D, 0.0);
  dl_gpu_compare("split_tokens.patches", dt, gpat, pat, (size_t)n * np * D, 0.0);
  dl_gpu_free(gx); dl_gpu_free(dc); dl_gpu_free(dp);
  free(x); free(cls); free(pat); free(gcls); free(gpat);
}

int main(void) {
  if (dl_gpu_test_device()) return DL_TEST_SKIP;
  dl_cuda_blas blas;
  dl_cuda_blas_init(&blas);
  const dl_head_config dino = {.in_dim = 128, .hidden_dim = 64, .out_dim = 32, .nlayers = 3, .prototypes = 200};
  const dl_head_config adaptor = {.in_dim = 128, .hidden_dim = 96, .out_dim = 96, .nlayers = 2, .prototypes = 0};
  const dl_dtype types[2] = {DL_DTYPE_F32, DL_DTYPE_BF16};
  for (int i = 0; i < 2; i++) {
    check_head(&blas, types[i], &dino, DL_HEAD_FULL, "dino_full", 0);
    check_head(&blas, types[i], &dino, DL_HEAD_LAST_LAYER, "teacher_last_layer", 0);
    check_head(&blas, types[i], &adaptor, DL_HEAD_FULL, "adaptor", 0);
    // 37 rows in chunks of 5 (the last of 2), 200 prototypes.
    check_head(&blas, types[i], &dino, DL_HEAD_FULL, "dino_full_chunks_of_5", 5);
    check_head(&blas, types[i], &dino, DL_HEAD_LAST_LAYER, "teacher_last_layer_chunks_of_5", 5);
    check_split(types[i]);
  }
  check_feature_loss(true);
  check_feature_loss(false);
  dl_cuda_blas_free(&blas);
  return dl_test_summary("test_cuda_heads");
}
