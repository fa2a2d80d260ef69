// The chunked prototype-loss path (model/cuda/proto_losses.h) against the
// CPU losses (model/losses.c) on the same inputs:
//   - Sinkhorn-Knopp in the log domain vs dl_sinkhorn_knopp, with two rows
//     far below the group's maximum (the CPU's underflowed-row branch), the
//     targets rebuilt on the host from the device's row and column offsets;
//   - centering vs dl_softmax_center then dl_center_update (targets and the
//     moved center);
//   - the fused cross-entropy over chunks of 3 rows vs dl_dino_loss (4
//     student crops, 2 teacher crops) and dl_ibot_loss (weighted rows):
//     loss and gradient;
//   - the tiled column sums vs a host sum.
// K = 300 and 70 or 130 rows: a partial 256-column tile and a partial 64-row
// tile. float32 and bf16 logits (bf16 rounded on the host first, so both
// sides see the same values). Bounds, estimated before any GPU run: 1e-4
// relative L2 (the log-domain offsets round differently from the CPU's
// in-place divisions; every exp is float32 on both sides); the column sums
// 1e-5. No GPU: exit 77 (skipped).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/cuda/proto_losses.h"
#include "model/losses.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/harness.h"

#define K 300
#define TOL 1e-4

static uint64_t seed = 7;

static float *logits_for(int rows, float scale, dl_dtype dt) {
  float *x = dl_test_random((size_t)rows * K, &seed, scale);
  if (dt == DL_DTYPE_BF16) dl_bf16_round_all(x, (size_t)rows * K);
  return x;
}

// The targets the offsets stand for, on the host.
static void targets_host(float *t, const float *l, const dl_cuda_targets *tg) {
  float *ro = malloc((size_t)tg->rows * sizeof(float)), *co = malloc((size_t)K * sizeof(float));
  dl_gpu_download(ro, tg->row_off, (size_t)tg->rows, DL_DTYPE_F32);
  dl_gpu_download(co, tg->col_off, K, DL_DTYPE_F32);
  for (int r = 0; r < tg->rows; r++)
    for (int j = 0; j < K; j++) t[(size_t)r * K + j] = expf(l[(size_t)r * K + j] * tg->inv_t + ro[r] + co[j]);
  free(ro), free(co);
}

static dl_cuda_targets device_targets(const float *l, int rows, float temp, dl_dtype dt) {
  return (dl_cuda_targets){dl_gpu_upload(l, (size_t)rows * K, dt), dt, dl_gpu_alloc((size_t)rows, DL_DTYPE_F32),
                           dl_gpu_alloc(K, DL_DTYPE_F32), rows, K, 1.0f / temp};
}
static void free_targets(dl_cuda_targets *tg) {
  dl_gpu_free((void *)tg->logits), dl_gpu_free(tg->row_off), dl_gpu_free(tg->col_off);
}

static void check_sinkhorn(dl_dtype dt) {
  const int b = 70;
  const float temp = 0.05f;
  float *l = logits_for(b, 3.0f, dt), *want = malloc((size_t)b * K * sizeof(float));
  for (int j = 0; j < K; j++) l[3 * K + j] -= 8.0f, l[50 * K + j] -= 12.0f;  // exp(-160), exp(-240): underflowed
  if (dt == DL_DTYPE_BF16) dl_bf16_round_all(l, (size_t)b * K);
  float *scratch = malloc((K + 4) * sizeof(float)), *got = malloc((size_t)b * K * sizeof(float));
  dl_sinkhorn_knopp(want, l, b, K, temp, 3, NULL, scratch);
  dl_cuda_targets tg = device_targets(l, b, temp, dt);
  float *gscratch = dl_gpu_alloc(K + 4, DL_DTYPE_F32);
  dl_cuda_targets_sinkhorn(&tg, 3, NULL, gscratch, 0);
  targets_host(got, l, &tg);
  char name[96];
  snprintf(name, sizeof name, "sinkhorn_log_domain[%s logits]", dl_dtype_name(dt));
  dl_gpu_compare(name, DL_DTYPE_F32, got, want, (size_t)b * K, TOL);
  snprintf(name, sizeof name, "sinkhorn_log_domain.underflowed_rows[%s logits]", dl_dtype_name(dt));
  dl_gpu_compare(name, DL_DTYPE_F32, got + 50 * K, want + 50 * K, K, TOL);
  free_targets(&tg), dl_gpu_free(gscratch);
  free(l), free(want), free(got), free(scratch);
}

static void check_center(dl_dtype dt) {
  const int b = 130;
  const float temp = 0.07f;
  float *l = logits_for(b, 2.0f, dt), *center = dl_test_random(K, &seed, 0.5f);
  float *want = malloc((size_t)b * K * sizeof(float)), *got = malloc((size_t)b * K * sizeof(float));
  float *scratch = malloc((K + 1) * sizeof(float)), *gcenter_host = malloc(K * sizeof(float));
  float *gcenter = dl_gpu_upload(center, K, DL_DTYPE_F32), *gscratch = dl_gpu_alloc(K + 1, DL_DTYPE_F32);
  dl_softmax_center(want, l, center, b, K, temp);
  dl_center_update(center, l, b, K, 0.9f, NULL, scratch);
  dl_cuda_targets tg = device_targets(l, b, temp, dt);
  dl_cuda_targets_center(&tg, gcenter, 0.9f, NULL, gscratch, 0);
  targets_host(got, l, &tg);
  dl_gpu_download(gcenter_host, gcenter, K, DL_DTYPE_F32);
  char name[96];
  snprintf(name, sizeof name, "center_log_domain.targets[%s logits]", dl_dtype_name(dt));
  dl_gpu_compare(name, DL_DTYPE_F32, got, want, (size_t)b * K, TOL);
  snprintf(name, sizeof name, "center_log_domain.center[%s logits]", dl_dtype_name(dt));
  dl_gpu_compare(name, DL_DTYPE_F32, gcenter_host, center, K, TOL);
  free_targets(&tg), dl_gpu_free(gcenter), dl_gpu_free(gscratch);
  free(l), free(center), free(want), free(got), free(scratch), free(gcenter_host);
}

// The student's logits on the device, the cross-entropy over chunks of 3
// rows written over them; the loss rows summed on the host.
static double ce_chunks(const dl_cuda_ce_chunk *c, float *grad, const float *student, int rows, int nloss,
                        const dl_cuda_targets *tg) {
  void *gs = dl_gpu_upload(student, (size_t)rows * K, tg->dtype);
  float *loss = malloc((size_t)nloss * sizeof(float));
  const size_t e = tg->dtype == DL_DTYPE_BF16 ? 2 : 4;
  for (int r0 = 0; r0 < rows; r0 += 3)
    dl_cuda_cross_entropy_chunk(c, (unsigned char *)gs + (size_t)r0 * K * e, tg, r0, rows - r0 < 3 ? rows - r0 : 3, 0);
  dl_gpu_download(grad, gs, (size_t)rows * K, tg->dtype);
  dl_gpu_download(loss, c->loss_rows, (size_t)nloss, DL_DTYPE_F32);
  double sum = 0.0;
  for (int i = 0; i < nloss; i++) sum += loss[i];
  dl_gpu_free(gs), free(loss);
  return sum;
}

static void check_cross_entropy(dl_dtype dt) {
  const int ns = 4, nt = 2, b = 5, pairs = dl_dino_pairs(ns, nt, true), m = 13, n_crops = 2;
  const float temp = 0.1f, scale = 0.7f;
  // Targets: Sinkhorn-Knopp on the device, rebuilt on the host for the CPU.
  float *tl = logits_for(nt * b + m, 3.0f, dt), *t = malloc((size_t)(nt * b + m) * K * sizeof(float));
  dl_cuda_targets tg = device_targets(tl, nt * b, 0.05f, dt), tgi = device_targets(tl + (size_t)nt * b * K, m, 0.05f, dt);
  float *gscratch = dl_gpu_alloc(K + 4, DL_DTYPE_F32);
  dl_cuda_targets_sinkhorn(&tg, 3, NULL, gscratch, 0);
  dl_cuda_targets_sinkhorn(&tgi, 3, NULL, gscratch, 0);
  targets_host(t, tl, &tg);
  targets_host(t + (size_t)nt * b * K, tl + (size_t)nt * b * K, &tgi);
  // DINO: every (student crop, other teacher crop) pair.
  float *s = logits_for(ns * b, 10.0f, dt), *want = malloc((size_t)ns * b * K * sizeof(float));
  float *got = malloc((size_t)ns * b * K * sizeof(float));
  const float loss = dl_dino_loss(s, t, ns, nt, b, K, temp, true, scale, want);
  const dl_cuda_ce_chunk dc = {dl_gpu_alloc((size_t)pairs * b, DL_DTYPE_F32), NULL, 1, nt, b, 1.0f / temp,
                               scale / b, scale / b};
  const float gl = (float)ce_chunks(&dc, got, s, ns * b, pairs * b, &tg);
  char name[96];
  snprintf(name, sizeof name, "cross_entropy_chunks.dino_loss[%s]", dl_dtype_name(dt));
  dl_gpu_compare(name, DL_DTYPE_F32, &gl, &loss, 1, TOL);
  snprintf(name, sizeof name, "cross_entropy_chunks.dino_grad[%s]", dl_dtype_name(dt));
  dl_gpu_compare(name, dt, got, want, (size_t)ns * b * K, dt == DL_DTYPE_BF16 ? 1e-2 : TOL);
  // iBOT: weighted rows, the mean over crops in the gradient.
  float *si = logits_for(m, 10.0f, dt), *w = dl_test_random(m, &seed, 1.0f);
  for (int i = 0; i < m; i++) w[i] = fabsf(w[i]) + 0.1f;
  const float iloss = dl_ibot_loss(si, t + (size_t)nt * b * K, w, m, K, n_crops, temp, scale, want);
  float *gw = dl_gpu_upload(w, m, DL_DTYPE_F32);
  const dl_cuda_ce_chunk ic = {dl_gpu_alloc(m, DL_DTYPE_F32), gw, 0, 0, 0, 1.0f / temp, 1.0f, scale / n_crops};
  const float igl = (float)(ce_chunks(&ic, got, si, m, m, &tgi) / n_crops * scale);
  snprintf(name, sizeof name, "cross_entropy_chunks.ibot_loss[%s]", dl_dtype_name(dt));
  dl_gpu_compare(name, DL_DTYPE_F32, &igl, &iloss, 1, TOL);
  snprintf(name, sizeof name, "cross_entropy_chunks.ibot_grad[%s]", dl_dtype_name(dt));
  dl_gpu_compare(name, dt, got, want, (size_t)m * K, dt == DL_DTYPE_BF16 ? 1e-2 : TOL);
  free_targets(&tg), free_targets(&tgi), dl_gpu_free(gscratch), dl_gpu_free(dc.loss_rows), dl_gpu_free(ic.loss_rows);
  dl_gpu_free(gw);
  free(tl), free(t), free(s), free(want), free(got), free(si), free(w);
}

static void check_column_sums(void) {
  const int rows = 130;
  float *x = dl_test_random((size_t)rows * K, &seed, 1.0f), *want = calloc(K, sizeof(float)), got[K];
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < K; j++) want[j] += x[(size_t)r * K + j];
  float *gx = dl_gpu_upload(x, (size_t)rows * K, DL_DTYPE_F32), *gs = dl_gpu_alloc(K, DL_DTYPE_F32);
  dl_cuda_column_sums(gs, gx, rows, K, 0);
  dl_gpu_download(got, gs, K, DL_DTYPE_F32);
  dl_gpu_compare("column_sums[130 x 300]", DL_DTYPE_F32, got, want, K, 1e-5);
  dl_gpu_free(gx), dl_gpu_free(gs), free(x), free(want);
}

int main(void) {
  if (dl_gpu_test_device()) return DL_TEST_SKIP;
  const dl_dtype types[2] = {DL_DTYPE_F32, DL_DTYPE_BF16};
  for (int i = 0; i < 2; i++) {
    check_sinkhorn(types[i]);
    check_center(types[i]);
    check_cross_entropy(types[i]);
  }
  check_column_sums();
  return dl_test_summary("test_cuda_proto_losses");
}
