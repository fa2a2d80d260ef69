// The CUDA ViT training passes against the CPU ones (dl_vit_forward_train,
// dl_vit_backward) on the reference models' weights: outputs and every
// parameter gradient, with position-embedding resizing and masks.
//   float32 storage: outputs within 1e-5, gradients within 1e-4 (a gradient
//                    is a sum over every token of the batch; the GPU sums in
//                    another order);
//   bf16 storage:    outputs within 3e-2, gradients within 6e-2 (activation
//                    gradients are stored in bf16 through every block).
// And the float32 residual stream at LayerScale 1e-5 (the recipes' init):
// the blocks' total update xs[depth] - xs[0] against the CPU's.
// No GPU: exit 77 (skipped).
#include <stdlib.h>
#include <string.h>

#include "model/cuda/cuda_check_fatal.h"
#include "model/cuda/vit_cuda_train.h"
#include "model/vit_train.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/harness.h"

static uint64_t seed = 77;

static void check_case(const dl_vit *vit, dl_dtype dt, int n, int res, bool with_masks, const char *label) {
  const dl_vit_config *c = &vit->cfg;
  const int D = c->dim, R = c->registers, np = dl_vit_num_patches(c, res, res);
  const size_t ncls = (size_t)n * D, nreg = (size_t)n * R * D, npat = (size_t)n * np * D;
  float *img = dl_test_random((size_t)n * 3 * res * res, &seed, 4.0f);
  bool *masks = NULL;
  if (with_masks) {
    masks = malloc((size_t)n * np);
    for (int i = 0; i < n * np; i++) masks[i] = (i * 7 + 3) % 5 == 0;
  }
  float *dcls = dl_test_random(ncls, &seed, 1.0f), *dreg = R ? dl_test_random(nreg, &seed, 1.0f) : NULL;
  float *dpat = dl_test_random(npat, &seed, 1.0f);
  dl_vit_outputs co = {malloc(ncls * sizeof(float)), R ? malloc(nreg * sizeof(float)) : NULL,
                       malloc(npat * sizeof(float)), NULL};
  dl_vit_outputs go = {malloc(ncls * sizeof(float)), R ? malloc(nreg * sizeof(float)) : NULL,
                       malloc(npat * sizeof(float)), NULL};
  const size_t total = vit->layout.total;
  float *cgrads = calloc(total, sizeof(float)), *ggot = malloc(total * sizeof(float));
  dl_err err;
  dl_vit_train_ws cws = {0};
  dl_vit_forward_train(vit, img, n, res, res, masks, &cws, &co, &err);
  dl_vit_backward(vit, &cws, dcls, dreg, dpat, cgrads, NULL);

  dl_cuda_vit gpu;
  dl_cuda_vit_init(&gpu, vit, dt);
  dl_cuda_vit_train_ws gws = {0};
  const int rc = dl_cuda_vit_forward_train(&gpu, img, n, res, res, masks, &gws, &go, &err);
  CHECK(rc == 0, "%s %s: GPU training forward %s", label, dl_dtype_name(dt), rc ? err.msg : "ran");
  if (rc == 0) {
    const bool f32 = dt == DL_DTYPE_F32;
    char name[160];
    snprintf(name, sizeof name, "train:%s.patches", label);
    dl_gpu_compare(name, dt, go.patches, co.patches, npat, f32 ? 1e-5 : 3e-2);
    float *g_dcls = dl_gpu_upload(dcls, ncls, DL_DTYPE_F32), *g_dpat = dl_gpu_upload(dpat, npat, DL_DTYPE_F32);
    float *g_dreg = R ? dl_gpu_upload(dreg, nreg, DL_DTYPE_F32) : NULL;
    float *g_grads = dl_gpu_alloc(total, DL_DTYPE_F32);
    dl_cuda_vit_backward(&gpu, &gws, g_dcls, g_dreg, g_dpat, g_grads);
    cudaCheckFatal(cudaStreamSynchronize(gpu.stream));
    dl_gpu_download(ggot, g_grads, total, DL_DTYPE_F32);
    snprintf(name, sizeof name, "train:%s.all_grads", label);
    dl_gpu_compare(name, dt, ggot, cgrads, total, f32 ? 1e-4 : 6e-2);
    // The worst tensor, so a failure names where to look.
    double worst = 0.0;
    int wi = 0;
    for (int i = 0; i < vit->layout.count; i++) {
      const dl_param_entry *e = &vit->layout.entries[i];
      if (e->numel == 0) continue;
      const double r = dl_rel_err(ggot + e->offset, cgrads + e->offset, e->numel);
      if (r > worst) worst = r, wi = i;
    }
    printf("info %s %s: worst tensor %s rel_err %.3g\n", label, dl_dtype_name(dt), vit->layout.entries[wi].name,
           worst);
    dl_gpu_free(g_dcls); dl_gpu_free(g_dpat); dl_gpu_free(g_dreg); dl_gpu_free(g_grads);
  }
  dl_cuda_vit_train_ws_free(&gws);
  dl_cuda_vit_free(&gpu);
  dl_vit_train_ws_free(&cws);
  free(img); free(masks); free(dcls); free(dreg); free(dpat); free(cgrads); free(ggot);
  free(co.cls); free(co.regs); free(co.patches); free(go.cls); free(go.regs); free(go.patches);
}

// With LayerScale 1e-5 every block adds ~1e-5 of its branch to a stream of
// magnitude ~0.1-1. A bf16 stream (8 significant bits, half-ulp 2^-9
// relative) rounds each update away: its total update would be 0, relative
// error 1. The float32 stream keeps it; what differs from the CPU is the
// branches themselves: float32 storage only in summation order and FMA
// (allowed 1e-3, for one float32 rounding of x, ~6e-8 against updates of
// ~1e-5, summed over 2 x depth adds), bf16 storage by its rounded weights
// and activations, as the outputs' 3e-2 (allowed 0.1). Sets the model's
// LayerScale parameters.
static void check_layerscale_update(dl_vit *vit, dl_dtype dt, const char *label) {
  const dl_vit_config *c = &vit->cfg;
  for (int b = 0; b < c->depth; b++)
    for (int k = 0; k < 2; k++) {
      const dl_param_entry *e = &vit->layout.entries[dl_vit_block_index(c, b, k ? DL_P_LS2 : DL_P_LS1)];
      for (size_t i = 0; i < e->numel; i++) vit->params[e->offset + i] = 1e-5f;
    }
  const int n = 2, res = 56, D = c->dim, np = dl_vit_num_patches(c, res, res), t = 1 + c->registers + np;
  const size_t rows = (size_t)n * t, m = rows * D;
  float *img = dl_test_random((size_t)n * 3 * res * res, &seed, 4.0f);
  dl_vit_outputs co = {malloc((size_t)n * D * sizeof(float)), NULL, malloc((size_t)n * np * D * sizeof(float)), NULL};
  dl_err err;
  dl_vit_train_ws cws = {0};
  dl_vit_forward_train(vit, img, n, res, res, NULL, &cws, &co, &err);
  float *want = malloc(m * sizeof(float)), *got = malloc(m * sizeof(float)), *first = malloc(m * sizeof(float));
  for (size_t i = 0; i < m; i++) want[i] = cws.xs[c->depth][i] - cws.xs[0][i];
  dl_cuda_vit gpu;
  dl_cuda_vit_init(&gpu, vit, dt);
  dl_cuda_vit_train_ws gws = {0};
  const int rc = dl_cuda_vit_forward_train_device(&gpu, img, n, res, res, NULL, &gws, &err);
  CHECK(rc == 0, "%s %s: GPU training forward at LayerScale 1e-5 %s", label, dl_dtype_name(dt), rc ? err.msg : "ran");
  if (rc == 0) {
    cudaCheckFatal(cudaStreamSynchronize(gpu.stream));
    dl_gpu_download(got, gws.xs[c->depth], m, DL_DTYPE_F32);
    dl_gpu_download(first, gws.xs[0], m, DL_DTYPE_F32);
    for (size_t i = 0; i < m; i++) got[i] -= first[i];
    char name[160];
    snprintf(name, sizeof name, "train:%s.layerscale_1e-5_update", label);
    dl_gpu_compare(name, dt, got, want, m, dt == DL_DTYPE_F32 ? 1e-3 : 0.1);
  }
  dl_cuda_vit_train_ws_free(&gws);
  dl_cuda_vit_free(&gpu);
  dl_vit_train_ws_free(&cws);
  free(img); free(co.cls); free(co.patches); free(want); free(got); free(first);
}

int main(int argc, char **argv) {
  if (dl_gpu_test_device()) return DL_TEST_SKIP;
  const char *ref = argc > 1 ? argv[1] : DISTILL_SOURCE_DIR "/tests/ref/dinov2";
  const char *models[] = {"vit_mlp", "vit_swiglu_reg4"};
  const dl_dtype types[2] = {DL_DTYPE_F32, DL_DTYPE_BF16};
  for (int m = 0; m < 2; m++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.safetensors", ref, models[m]);
    dl_vit vit;
    dl_err err;
    dl_weights_layout layout;
    const dl_vit_overrides ov = {.heads = 0, .interp = -1};
    const int rc = dl_vit_load(path, &ov, &vit, &layout, &err);
    CHECK(rc == 0, "load %s: %s", path, rc ? err.msg : "ok");
    if (rc) continue;
    for (int t = 0; t < 2; t++) {
      char label[96];
      snprintf(label, sizeof label, "%s@56", models[m]);  // the stored grid: no resize
      check_case(&vit, types[t], 2, 56, false, label);
      snprintf(label, sizeof label, "%s@84+masks", models[m]);  // resized positions, mask tokens
      check_case(&vit, types[t], 3, 84, true, label);
    }
    for (int t = 0; t < 2; t++) check_layerscale_update(&vit, types[t], models[m]);  // last: it sets LayerScale
    dl_vit_free(&vit);
  }
  return dl_test_summary("test_cuda_vit_train");
}
