// Forward parity with the official DINOv2 code: every case tag of every
// reference model, every output tensor, relative error <= 1e-4. The weights
// are read from the file named on the command line (so the same test checks
// the timm and Hugging Face renamings of the same weights).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/embed.h"
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

static void check_case(const dl_vit *vit, const dl_safetensors *io, const char *tag, const char *label) {
  char name[128];
  snprintf(name, sizeof name, "%s.input", tag);
  const dl_st_tensor *t = NULL;
  float *x = read_tensor(io, name, &t);
  if (!x) return;
  dl_embed_result r;
  dl_err err;
  int rc = dl_embed_array(vit, x, (int)t->shape[0], (int)t->shape[2], (int)t->shape[3], 16, &r, &err);
  CHECK(rc == 0, "%s %s: forward on [%lld,3,%lld,%lld] %s", label, tag, (long long)t->shape[0],
        (long long)t->shape[2], (long long)t->shape[3], rc ? err.msg : "ran");
  if (rc == 0) {
    compare(io, tag, "x_norm_clstoken", r.cls, (size_t)r.n * r.dim, label);
    compare(io, tag, "x_norm_patchtokens", r.patches_out, (size_t)r.n * r.patches * r.dim, label);
    compare(io, tag, "x_prenorm", r.prenorm, (size_t)r.n * r.tokens * r.dim, label);
    if (r.registers) compare(io, tag, "x_norm_regtokens", r.regs, (size_t)r.n * r.registers * r.dim, label);
    dl_embed_result_free(&r);
  }
  free(x);
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
  int rc = dl_vit_load(argv[1], NULL, &vit, &layout, &err);
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
