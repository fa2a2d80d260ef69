// The CUDA ViT forward against the official-code reference vectors
// (tests/ref/dinov2) and against the CPU forward:
//   float32 storage: within 1e-4 of the reference (the CPU's own bound) and
//                    1e-5 of the CPU forward on the same inputs;
//   bf16 storage:    within 3e-2 of the reference: every block rounds its
//                    activations to 8 significant bits (about 2e-3 each),
//                    and the rounding compounds through the blocks.
// Then a random-weight ViT-S/14 at 224 px (pos-embedding resize 37 -> 16),
// GPU vs CPU. No GPU: exit 77 (skipped).
#include <stdlib.h>
#include <string.h>

#include "model/cuda/vit_cuda.h"
#include "model/safetensors.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/harness.h"

#define TOL_REF_F32 1e-4
#define TOL_CPU_F32 1e-5
#define TOL_REF_BF16 3e-2

static float *read_tensor(const dl_safetensors *st, const char *name, const dl_st_tensor **out) {
  const dl_st_tensor *t = dl_st_find(st, name);
  if (!t) return NULL;
  float *x = malloc((size_t)t->numel * sizeof(float));
  dl_err err;
  if (dl_st_read_f32(t, x, &err)) {
    free(x);
    return NULL;
  }
  if (out) *out = t;
  return x;
}

typedef struct outputs {
  dl_vit_outputs o;
  size_t ncls, nreg, npatch;
} outputs;

static outputs outputs_alloc(const dl_vit_config *c, int n, int np) {
  outputs r = {.ncls = (size_t)n * c->dim, .nreg = (size_t)n * c->registers * c->dim,
               .npatch = (size_t)n * np * c->dim};
  r.o.cls = malloc(r.ncls * sizeof(float));
  r.o.regs = r.nreg ? malloc(r.nreg * sizeof(float)) : NULL;
  r.o.patches = malloc(r.npatch * sizeof(float));
  return r;
}
static void outputs_free(outputs *r) {
  free(r->o.cls);
  free(r->o.regs);
  free(r->o.patches);
}

static void compare_ref(const dl_safetensors *io, const char *tag, const char *name, const float *got, size_t n,
                        const char *label, dl_dtype dt, double tol) {
  char full[128];
  snprintf(full, sizeof full, "%s.%s", tag, name);
  const dl_st_tensor *t = NULL;
  float *ref = read_tensor(io, full, &t);
  CHECK(ref && (size_t)t->numel == n, "%s %s: reference present", label, full);
  if (!ref || (size_t)t->numel != n) {
    free(ref);
    return;
  }
  const double e = dl_rel_err(got, ref, n);
  CHECK(e <= tol, "result model:%s:%s %s rel_err=%.3g tol=%.3g", label, full, dl_dtype_name(dt), e, tol);
  free(ref);
}

static bool *read_masks(const dl_safetensors *io, const char *tag) {
  char name[128];
  snprintf(name, sizeof name, "%s.masks", tag);
  const dl_st_tensor *t = dl_st_find(io, name);
  if (!t || t->dtype != DL_ST_U8) return NULL;
  bool *m = malloc((size_t)t->numel * sizeof(bool));
  for (int64_t i = 0; i < t->numel; i++) m[i] = t->data[i] != 0;
  return m;
}

static void check_case(const dl_vit *vit, dl_cuda_vit *gpu, const dl_safetensors *io, const char *tag,
                       const char *label) {
  char name[128];
  snprintf(name, sizeof name, "%s.input", tag);
  const dl_st_tensor *t = NULL;
  float *x = read_tensor(io, name, &t);
  if (!x) return;
  const int n = (int)t->shape[0], h = (int)t->shape[2], w = (int)t->shape[3];
  const int np = dl_vit_num_patches(&vit->cfg, h, w);
  bool *masks = read_masks(io, tag);
  outputs g = outputs_alloc(&vit->cfg, n, np), c = outputs_alloc(&vit->cfg, n, np);
  dl_err err;
  const int rc = dl_cuda_vit_forward(gpu, x, n, h, w, masks, &g.o, &err);
  CHECK(rc == 0, "%s %s %s: GPU forward %s", label, tag, dl_dtype_name(gpu->dtype), rc ? err.msg : "ran");
  const bool f32 = gpu->dtype == DL_DTYPE_F32;
  if (rc == 0) {
    const double tol = f32 ? TOL_REF_F32 : TOL_REF_BF16;
    compare_ref(io, tag, "x_norm_clstoken", g.o.cls, g.ncls, label, gpu->dtype, tol);
    compare_ref(io, tag, "x_norm_patchtokens", g.o.patches, g.npatch, label, gpu->dtype, tol);
    if (g.nreg) compare_ref(io, tag, "x_norm_regtokens", g.o.regs, g.nreg, label, gpu->dtype, tol);
  }
  if (rc == 0 && f32) {
    dl_vit_workspace ws = {0};
    dl_vit_forward(vit, x, n, h, w, masks, &ws, &c.o, &err);
    dl_vit_workspace_free(&ws);
    double e = dl_rel_err(g.o.patches, c.o.patches, g.npatch);
    CHECK(e <= TOL_CPU_F32, "result model:%s:%s.patches_vs_cpu fp32 rel_err=%.3g tol=%.3g", label, tag, e,
          TOL_CPU_F32);
  }
  outputs_free(&g);
  outputs_free(&c);
  free(masks);
  free(x);
}

static void check_reference(const char *weights, const char *io_path, dl_dtype dt) {
  dl_vit vit;
  dl_err err;
  dl_weights_layout layout;
  const dl_vit_overrides ov = {.heads = 0, .interp = -1};
  int rc = dl_vit_load(weights, &ov, &vit, &layout, &err);
  CHECK(rc == 0, "load %s: %s", weights, rc ? err.msg : "ok");
  if (rc) return;
  dl_safetensors io;
  rc = dl_st_open(io_path, &io, &err);
  CHECK(rc == 0, "open %s", io_path);
  if (rc == 0) {
    dl_cuda_vit gpu;
    dl_cuda_vit_init(&gpu, &vit, dt);
    const char *base = strrchr(weights, '/') ? strrchr(weights, '/') + 1 : weights;
    char label[1200];
    snprintf(label, sizeof label, "%s", base);
    int cases = 0;
    for (int i = 0; i < io.count; i++) {
      const char *nm = io.tensors[i].name, *dot = strstr(nm, ".input");
      if (!dot || strcmp(dot, ".input") != 0 || strchr(nm, '.') != dot) continue;
      char tag[64];
      snprintf(tag, sizeof tag, "%.*s", (int)(dot - nm), nm);
      check_case(&vit, &gpu, &io, tag, label);
      cases++;
    }
    CHECK(cases >= 3, "%s: %d cases", label, cases);
    dl_cuda_vit_free(&gpu);
    dl_st_close(&io);
  }
  dl_vit_free(&vit);
}

// A ViT-S/14 with random weights at 224 px: 12 blocks, the 37 -> 16 resize.
static void check_vits14(dl_dtype dt) {
  const dl_vit_config cfg = {.patch = 14, .dim = 384, .depth = 12, .heads = 6, .ffn_hidden = 1536, .registers = 0,
                             .pos_grid = 37, .ffn = DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
  dl_vit vit;
  dl_vit_init_empty(&vit, &cfg);
  uint64_t s = 99;
  float *r = dl_test_random(vit.layout.total, &s, 0.1f);
  memcpy(vit.params, r, vit.layout.total * sizeof(float));
  free(r);
  // LayerNorm weights near 1 and LayerScale near 0.1, as trained models have.
  for (int i = 0; i < vit.layout.count; i++) {
    const dl_param_entry *e = &vit.layout.entries[i];
    const bool norm_w = strstr(e->name, "norm") && strstr(e->name, ".weight"), ls = strstr(e->name, ".ls");
    if (norm_w || ls)
      for (size_t j = 0; j < e->numel; j++) vit.params[e->offset + j] = norm_w ? 1.0f : 0.1f;
  }
  const int n = 2, res = 224, np = 256;
  float *img = dl_test_random((size_t)n * 3 * res * res, &s, 4.0f);
  outputs g = outputs_alloc(&cfg, n, np), c = outputs_alloc(&cfg, n, np);
  dl_vit_workspace ws = {0};
  dl_err err;
  dl_vit_forward(&vit, img, n, res, res, NULL, &ws, &c.o, &err);
  dl_cuda_vit gpu;
  dl_cuda_vit_init(&gpu, &vit, dt);
  const int rc = dl_cuda_vit_forward(&gpu, img, n, res, res, NULL, &g.o, &err);
  CHECK(rc == 0, "ViT-S/14 224 %s: GPU forward %s", dl_dtype_name(dt), rc ? err.msg : "ran");
  const double tol = dt == DL_DTYPE_F32 ? TOL_CPU_F32 * 10 : TOL_REF_BF16;
  const double e = dl_rel_err(g.o.patches, c.o.patches, g.npatch);
  CHECK(e <= tol, "result model:vits14_random_224:patches_vs_cpu %s rel_err=%.3g tol=%.3g", dl_dtype_name(dt), e,
        tol);
  dl_cuda_vit_free(&gpu);
  dl_vit_workspace_free(&ws);
  outputs_free(&g);
  outputs_free(&c);
  free(img);
  dl_vit_free(&vit);
}

int main(int argc, char **argv) {
  if (dl_gpu_test_device()) return DL_TEST_SKIP;
  const char *ref = argc > 1 ? argv[1] : DISTILL_SOURCE_DIR "/tests/ref/dinov2";
  const char *models[] = {"vit_mlp", "vit_swiglu_reg4"};
  const dl_dtype types[2] = {DL_DTYPE_F32, DL_DTYPE_BF16};
  for (int t = 0; t < 2; t++) {
    for (int m = 0; m < 2; m++) {
      char w[1024], io[1024];
      snprintf(w, sizeof w, "%s/%s.safetensors", ref, models[m]);
      snprintf(io, sizeof io, "%s/%s_io.safetensors", ref, models[m]);
      check_reference(w, io, types[t]);
    }
    check_vits14(types[t]);
  }
  return dl_test_summary("test_cuda_vit");
}
