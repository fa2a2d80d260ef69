// Forward parity with the official DINOv2 code: every case tag of every
// reference model, every output tensor, relative error <= 1e-4. The weights
// are read from the file named on the command line (so the same test checks
// the timm and Hugging Face renamings of the same weights).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdbool.h>

#include "model/vit.h"
#include "model/safetensors.h"
#include "tests/harness.h"

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

static void compare(const dl_safetensors *io, const char *tag, const char *name, const float *got,
                    size_t n, const char *label) {
  char full[128];
  snprintf(full, sizeof full, "%s.%s", tag, name);
  const dl_st_tensor *t = NULL;
  float *ref = read_tensor(io, full, &t);
  CHECK(ref && (size_t)t->numel == n, "%s %s: reference present with %zu values", label, full, n);
  if (!ref || (size_t)t->numel != n) return;
  double e = dl_rel_err(got, ref, n);
  CHECK(e <= 1e-4, "%s %s: relative error %.3g <= 1e-4", label, full, e);
  free(ref);
}

// Masks, when the case has them: [n, P] bytes, non-zero = masked patch.
static bool *read_masks(const dl_safetensors *io, const char *tag) {
  char name[128];
  snprintf(name, sizeof name, "%s.masks", tag);
  const dl_st_tensor *t = dl_st_find(io, name);
  if (!t || t->dtype != DL_ST_U8) return NULL;
  bool *m = malloc((size_t)t->numel * sizeof(bool));
  for (int64_t i = 0; i < t->numel; i++) m[i] = t->data[i] != 0;
  return m;
}

static void check_case(const dl_vit *vit, const dl_safetensors *io, const char *tag, const char *label) {
  char name[128];
  snprintf(name, sizeof name, "%s.input", tag);
  const dl_st_tensor *t = NULL;
  float *x = read_tensor(io, name, &t);
  if (!x) return;
  const int n = (int)t->shape[0], h = (int)t->shape[2], w = (int)t->shape[3];
  const int D = vit->cfg.dim, R = vit->cfg.registers, np = dl_vit_num_patches(&vit->cfg, h, w);
  const int tokens = 1 + R + np;
  bool *masks = read_masks(io, tag);
  dl_vit_outputs out = {malloc((size_t)n * D * sizeof(float)), R ? malloc((size_t)n * R * D * sizeof(float)) : NULL,
                        malloc((size_t)n * np * D * sizeof(float)), malloc((size_t)n * tokens * D * sizeof(float))};
  dl_vit_workspace ws = {0};
  dl_err err;
  int rc = dl_vit_forward(vit, x, n, h, w, masks, &ws, &out, &err);
  CHECK(rc == 0, "%s %s: forward on [%d,3,%d,%d]%s %s", label, tag, n, h, w, masks ? " with masks" : "",
        rc ? err.msg : "ran");
  if (rc == 0) {
    compare(io, tag, "x_norm_clstoken", out.cls, (size_t)n * D, label);
    compare(io, tag, "x_norm_patchtokens", out.patches, (size_t)n * np * D, label);
    compare(io, tag, "x_prenorm", out.prenorm, (size_t)n * tokens * D, label);
    if (R) compare(io, tag, "x_norm_regtokens", out.regs, (size_t)n * R * D, label);
  }
  dl_vit_workspace_free(&ws);
  free(out.cls); free(out.regs); free(out.patches); free(out.prenorm);
  free(masks);
  free(x);
}

// Overrides that real checkpoints cannot carry (heads other than dim / 64, a
// non-default interpolation) come from the io file's metadata.
static void read_overrides(const char *io_path, dl_vit_overrides *ov) {
  ov->heads = 0;
  ov->interp = -1;
  dl_safetensors io;
  dl_err err;
  if (dl_st_open(io_path, &io, &err)) return;
  const char *heads = dl_st_meta_get(&io, "heads"), *interp = dl_st_meta_get(&io, "interp");
  if (heads) ov->heads = atoi(heads);
  if (interp) ov->interp = strcmp(interp, "legacy") == 0 ? DL_INTERP_LEGACY : DL_INTERP_ANTIALIAS;
  if (heads || interp) printf("info overrides from %s: heads=%s interp=%s\n", io_path, heads ? heads : "-", interp ? interp : "-");
  dl_st_close(&io);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s WEIGHTS IO [LABEL]\n", argv[0]);
    return 2;
  }
  const char *label = argc > 3 ? argv[3] : "official";
  dl_vit vit;
  dl_err err;
  dl_weights_layout layout;
  dl_vit_overrides ov;
  read_overrides(argv[2], &ov);
  int rc = dl_vit_load(argv[1], &ov, &vit, &layout, &err);
  CHECK(rc == 0, "%s: load %s: %s", label, argv[1], rc ? err.msg : "ok");
  if (rc) return dl_test_summary("test_vit_parity");
  CHECK(strcmp(dl_weights_layout_name(layout), label) == 0 || strcmp(label, "official") == 0,
        "%s: detected the %s name layout", label, dl_weights_layout_name(layout));
  printf("info %s: dim %d depth %d heads %d ffn %s hidden %d registers %d grid %d interp %s\n", label,
         vit.cfg.dim, vit.cfg.depth, vit.cfg.heads, vit.cfg.ffn == DL_FFN_SWIGLU ? "swiglu" : "mlp",
         vit.cfg.ffn_hidden, vit.cfg.registers, vit.cfg.pos_grid,
         vit.cfg.interp == DL_INTERP_LEGACY ? "legacy" : "antialias");
  dl_safetensors io;
  rc = dl_st_open(argv[2], &io, &err);
  CHECK(rc == 0, "open %s", argv[2]);
  if (rc == 0) {
    int cases = 0;
    for (int i = 0; i < io.count; i++) {
      const char *n = io.tensors[i].name, *dot = strstr(n, ".input");
      if (!dot || strcmp(dot, ".input") != 0 || strchr(n, '.') != dot) continue;
      char tag[64];
      snprintf(tag, sizeof tag, "%.*s", (int)(dot - n), n);
      check_case(&vit, &io, tag, label);
      cases++;
    }
    CHECK(cases >= 3, "%s: %d case tags found in %s", label, cases, argv[2]);
    dl_st_close(&io);
  }
  dl_vit_free(&vit);
  return dl_test_summary("test_vit_parity");
}
