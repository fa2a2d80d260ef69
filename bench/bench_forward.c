// Forward-pass throughput of a DINOv2 ViT with random weights: prints one
// line per repeat and the median images/s, for bench/run to compare with
// PyTorch measured in the same run. PRECISION bf16 runs the linear layers
// with the bf16 GEMM (model/vit_bf16.h, the CPU bf16 teacher) and also prints
// the CLS and patch tokens' relative error to the float32 pass.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timing.h"
#include "model/vit.h"
#include "model/vit_bf16.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// A cheap deterministic generator; the figures do not depend on the values.
static float next_uniform(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((*s >> 40) & 0xFFFFFF) / 16777216.0f - 0.5f;
}

static double rel_err(const float *x, const float *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    const double d = (double)x[i] - ref[i];
    num += d * d, den += (double)ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : 0.0;
}

static int size_config(const char *name, dl_vit_config *c) {
  static const struct { const char *name; int dim, depth, ffn; } sizes[] = {
      {"vits14", 384, 12, 0}, {"vitb14", 768, 12, 0}, {"vitl14", 1024, 24, 0}, {"vitg14", 1536, 40, 1}};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    if (strcmp(name, sizes[i].name) != 0) continue;
    *c = (dl_vit_config){.patch = 14, .dim = sizes[i].dim, .depth = sizes[i].depth,
                         .heads = sizes[i].dim / 64, .registers = 0, .pos_grid = 37,
                         .ffn = sizes[i].ffn ? DL_FFN_SWIGLU : DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
    c->ffn_hidden = sizes[i].ffn ? 4096 : 4 * sizes[i].dim;
    return 0;
  }
  return -1;
}

int main(int argc, char **argv) {
  if (argc < 5 || argc > 6) {
    fprintf(stderr, "usage: bench_forward SIZE(vits14|vitb14|vitl14|vitg14) BATCH RES REPEATS [f32|bf16]\n");
    return 2;
  }
  const bool bf16 = argc == 6 && strcmp(argv[5], "bf16") == 0;
  if (argc == 6 && !bf16 && strcmp(argv[5], "f32") != 0) {
    fprintf(stderr, "bench_forward: precision %s: use f32 or bf16\n", argv[5]);
    return 2;
  }
  if (bf16 && !dl_gemm_bf16_available()) {
    fprintf(stderr, "bench_forward: bf16 needs AVX-512 BF16 at the avx512 kernel level; this process has neither\n");
    return 2;
  }
  dl_vit_config cfg;
  if (size_config(argv[1], &cfg)) {
    fprintf(stderr, "bench_forward: unknown size %s\n", argv[1]);
    return 2;
  }
  int batch = atoi(argv[2]), res = atoi(argv[3]), repeats = atoi(argv[4]);
  dl_vit vit;
  dl_vit_init_empty(&vit, &cfg);
  uint64_t seed = 1;
  for (size_t i = 0; i < vit.layout.total; i++) vit.params[i] = 0.05f * next_uniform(&seed);
  size_t n_img = (size_t)batch * 3 * res * res;
  float *img = malloc(n_img * sizeof(float));
  for (size_t i = 0; i < n_img; i++) img[i] = next_uniform(&seed);
  int np = dl_vit_num_patches(&cfg, res, res), t = 1 + np;
  float *cls = malloc((size_t)batch * cfg.dim * sizeof(float));
  float *patches = malloc((size_t)batch * np * cfg.dim * sizeof(float));
  dl_vit_outputs out = {cls, NULL, patches, NULL};
  dl_vit_workspace ws = {0};
  dl_err err;
  double *rates = calloc((size_t)repeats, sizeof(double));
  dl_vit_bf16 w16 = {0};
  if (bf16) dl_vit_bf16_pack(&vit, &w16);
  if (dl_vit_forward(&vit, img, batch, res, res, NULL, &ws, &out, &err)) {  // warm-up (and the f32 reference)
    fprintf(stderr, "bench_forward: %s\n", err.msg);
    return 2;
  }
  if (bf16) {
    float *cls32 = malloc((size_t)batch * cfg.dim * sizeof(float));
    float *patches32 = malloc((size_t)batch * np * cfg.dim * sizeof(float));
    memcpy(cls32, cls, (size_t)batch * cfg.dim * sizeof(float));
    memcpy(patches32, patches, (size_t)batch * np * cfg.dim * sizeof(float));
    dl_vit_forward_bf16(&vit, &w16, img, batch, res, res, NULL, &ws, &out, &err);
    printf("bf16_vs_f32 cls_rel_err=%.3e patch_rel_err=%.3e\n", rel_err(cls, cls32, (size_t)batch * cfg.dim),
           rel_err(patches, patches32, (size_t)batch * np * cfg.dim));
    free(cls32);
    free(patches32);
  }
  for (int r = 0; r < repeats; r++) {
    double t0 = dl_now_seconds();
    if (bf16) dl_vit_forward_bf16(&vit, &w16, img, batch, res, res, NULL, &ws, &out, &err);
    else dl_vit_forward(&vit, img, batch, res, res, NULL, &ws, &out, &err);
    rates[r] = batch / (dl_now_seconds() - t0);
    printf("distill %s%s repeat %d: %.3f images/s\n", argv[1], bf16 ? " bf16" : "", r, rates[r]);
  }
  qsort(rates, (size_t)repeats, sizeof(double), cmp_double);
  printf("distill_images_per_s=%.4f tokens=%d checksum=%.6f\n", rates[repeats / 2], t, (double)cls[0]);
  dl_vit_bf16_free(&w16);
  dl_vit_workspace_free(&ws);
  dl_vit_free(&vit);
  free(img); free(cls); free(patches); free(rates);
  return 0;
}
