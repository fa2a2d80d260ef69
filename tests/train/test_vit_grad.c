// Backward parity with the official DINOv2 code: the gradient of
// sum(x_norm_clstoken * R_cls) + sum(x_norm_patchtokens * R_patch)
// (+ sum(x_norm_regtokens * R_reg) where given) with respect to every weight
// and to the input, relative error <= 1e-3 per tensor. Also runs on the
// references of tests/ref/gen_vit_grad_refs.py (legacy interpolation both
// ways, masks, registers), whose metadata may override heads and interp.
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/vit_train.h"
#include "tests/harness.h"
#include "tests/train/ref_util.h"

static void check_grad_case(const dl_vit *vit, const dl_safetensors *io, const char *tag) {
  char name[160];
  snprintf(name, sizeof name, "%s.input", tag);
  const dl_st_tensor *ti = dl_st_find(io, name);
  float *x = ref_read(io, name, NULL);
  const int n = (int)ti->shape[0], h = (int)ti->shape[2], w = (int)ti->shape[3];
  const int D = vit->cfg.dim, np = dl_vit_num_patches(&vit->cfg, h, w);
  dl_vit_outputs out = {malloc((size_t)n * D * 4), NULL, malloc((size_t)n * np * D * 4), NULL};
  const int R = vit->cfg.registers;
  snprintf(name, sizeof name, "%s.masks", tag);
  float *maskf = ref_read(io, name, NULL);
  bool *masks = NULL;
  if (maskf) {
    masks = malloc((size_t)n * np * sizeof(bool));
    for (int i = 0; i < n * np; i++) masks[i] = maskf[i] != 0.0f;
  }
  dl_vit_train_ws ws = {0};
  dl_err err;
  out.regs = R ? malloc((size_t)n * R * D * 4) : NULL;
  int rc = dl_vit_forward_train(vit, x, n, h, w, masks, &ws, &out, &err);
  CHECK(rc == 0, "%s: training forward on [%d,3,%d,%d]%s", tag, n, h, w, masks ? " with masks" : "");
  snprintf(name, sizeof name, "%s.x_norm_clstoken", tag);
  ref_compare(io, name, out.cls, (size_t)n * D, 1e-4);
  snprintf(name, sizeof name, "%s.x_norm_patchtokens", tag);
  ref_compare(io, name, out.patches, (size_t)n * np * D, 1e-4);

  snprintf(name, sizeof name, "%s.grad.R_cls", tag);
  float *r_cls = ref_read(io, name, NULL);
  snprintf(name, sizeof name, "%s.grad.R_patch", tag);
  float *r_patch = ref_read(io, name, NULL);
  snprintf(name, sizeof name, "%s.grad.R_reg", tag);
  float *r_reg = ref_read(io, name, NULL);
  float *grads = calloc(vit->layout.total, sizeof(float));
  float *d_img = malloc((size_t)n * 3 * h * w * sizeof(float));
  // Twice, into the same buffer: gradients accumulate, so halve at the end.
  dl_vit_backward(vit, &ws, r_cls, r_reg, r_patch, grads, d_img);
  dl_vit_backward(vit, &ws, r_cls, r_reg, r_patch, grads, NULL);
  for (size_t i = 0; i < vit->layout.total; i++) grads[i] *= 0.5f;
  snprintf(name, sizeof name, "%s.grad.input", tag);
  ref_compare(io, name, d_img, (size_t)n * 3 * h * w, 1e-3);
  int compared = 0;
  for (int i = 0; i < vit->layout.count; i++) {
    const dl_param_entry *e = &vit->layout.entries[i];
    snprintf(name, sizeof name, "%s.grad.%s", tag, e->name);
    // mask_token has a gradient only where a case masks patches.
    if (e->numel == 0 || (strcmp(e->name, "mask_token") == 0 && !masks)) continue;
    ref_compare(io, name, grads + e->offset, e->numel, 1e-3);
    compared++;
  }
  CHECK(compared >= 30, "%s: %d weight gradients compared", tag, compared);
  free(grads); free(d_img); free(r_cls); free(r_patch); free(r_reg); free(x); free(masks); free(maskf);
  free(out.cls); free(out.patches); free(out.regs);
  dl_vit_train_ws_free(&ws);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s WEIGHTS IO\n", argv[0]);
    return 2;
  }
  dl_vit vit;
  dl_err err;
  dl_weights_layout layout;
  dl_vit_overrides ov = {0, -1};
  dl_safetensors io;
  if (dl_st_open(argv[2], &io, &err) == 0) {  // overrides a real checkpoint cannot carry
    const char *heads = dl_st_meta_get(&io, "heads"), *interp = dl_st_meta_get(&io, "interp");
    if (heads) ov.heads = atoi(heads);
    if (interp) ov.interp = strcmp(interp, "legacy") == 0 ? DL_INTERP_LEGACY : DL_INTERP_ANTIALIAS;
    dl_st_close(&io);
  }
  int rc = dl_vit_load(argv[1], &ov, &vit, &layout, &err);
  CHECK(rc == 0, "load %s: %s", argv[1], rc ? err.msg : "ok");
  if (rc) return dl_test_summary("test_vit_grad");
  rc = dl_st_open(argv[2], &io, &err);
  CHECK(rc == 0, "open %s", argv[2]);
  int cases = 0;
  for (int i = 0; rc == 0 && i < io.count; i++) {
    const char *nm = io.tensors[i].name, *dot = strstr(nm, ".grad.loss");
    if (!dot || strchr(nm, '.') != dot) continue;
    char tag[64];
    snprintf(tag, sizeof tag, "%.*s", (int)(dot - nm), nm);
    check_grad_case(&vit, &io, tag);
    cases++;
  }
  CHECK(cases >= 1, "%d gradient cases in %s", cases, argv[2]);
  if (rc == 0) dl_st_close(&io);
  dl_vit_free(&vit);
  return dl_test_summary("test_vit_grad");
}
