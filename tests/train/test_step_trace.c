// Three whole training steps (dl_trainer_step) against the same steps in
// PyTorch written as the official DINOv2 code computes them
// (tests/ref/gen_step_trace.py): the DINO, iBOT and KoLeo losses of every
// step within 1e-4 relative, and every parameter and EMA tensor of the
// backbone and both heads after the last step within 1e-4 relative. This
// ties the pieces together: crop pairing and normalization, the teacher's
// last layers and Sinkhorn-Knopp at the scheduled temperature, the backward
// passes, clipping per module, AdamW's groups and the frozen last layer.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/train_step.h"
#include "tests/harness.h"
#include "tests/train/ref_util.h"

#define STEPS 3

// The key third of attn.qkv.bias has a gradient that is zero in exact
// arithmetic (a key bias adds q.b to every score of a query, which softmax
// ignores): both sides hold float noise there, which Adam's normalization
// turns into updates of up to lr with random signs. Those entries are only
// held to Adam's bound on how far a step moves a parameter,
// lr (1 - beta1) / sqrt(1 - beta2) < 3.2 lr, summed over the steps, for
// either side: |ours - PyTorch's| <= 2 * 3.2 * sum of lr (before layer decay).
#define SUM_LR (5e-3 + 1e-2 + 1e-2)
static double compare_qkv_bias(const dl_safetensors *st, const char *name, const float *got, size_t n) {
  float *ref = ref_read(st, name, NULL);
  const size_t d = n / 3;
  float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (i < d || i >= 2 * d) a[m] = got[i], b[m++] = ref[i];
  const double e = dl_rel_err(a, b, m);
  double worst = 0.0;
  for (size_t i = d; i < 2 * d; i++) worst = fmax(worst, fabs((double)got[i] - ref[i]));
  CHECK(e <= 1e-4, "%s (query and value thirds): relative error %.3g <= 1e-4", name, e);
  CHECK(worst <= 2 * 3.2 * SUM_LR, "%s (key third, zero gradient): max |diff| %.3g <= Adam's bound %.3g", name, worst,
        2 * 3.2 * SUM_LR);
  free(ref); free(a); free(b);
  return e;
}

static double compare_module(const dl_safetensors *st, const char *prefix, const dl_vit_layout *l, const float *got) {
  double worst = 0.0;
  char name[160];
  for (int i = 0; i < l->count; i++) {
    const dl_param_entry *e = &l->entries[i];
    if (e->numel == 0) continue;
    snprintf(name, sizeof name, "%s.%s", prefix, e->name);
    if (strstr(e->name, "attn.qkv.bias")) worst = fmax(worst, compare_qkv_bias(st, name, got + e->offset, e->numel));
    else worst = fmax(worst, ref_compare(st, name, got + e->offset, e->numel, 1e-4));
  }
  return worst;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s step_trace.safetensors\n", argv[0]);
    return 2;
  }
  dl_safetensors st;
  dl_err err;
  int rc = dl_st_open(argv[1], &st, &err);
  CHECK(rc == 0, "open %s%s%s", argv[1], rc ? ": " : "", rc ? err.msg : "");
  if (rc) return dl_test_summary("test_step_trace");
  dl_vit vit;
  dl_vit_config vc = {.patch = 4, .dim = 32, .depth = 2, .heads = 2, .ffn_hidden = 64, .registers = 0,
                      .pos_grid = 4, .ffn = DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
  dl_vit_init_empty(&vit, &vc);
  int loaded = ref_load_layout(&st, "init.backbone", &vit.layout, vit.params);
  dl_head_config hc = {.in_dim = 32, .hidden_dim = 48, .out_dim = 8, .nlayers = 3, .prototypes = 16};
  dl_head_config tc = hc;
  tc.in_dim = 64;
  dl_head teacher[2];
  const char *tnames[2] = {"init.teacher_dino", "init.teacher_ibot"};
  for (int k = 0; k < 2; k++) {
    dl_head_init(&teacher[k], &tc);
    loaded += ref_load_layout(&st, tnames[k], &teacher[k].layout, teacher[k].params);
  }
  dl_train_config cfg = {
      .mode = DL_TRAIN_PROTOTYPES, .batch = 4, .global_crops = 2, .local_crops = 2, .global_size = 16,
      .local_size = 8, .weights = dl_loss_weights_default(), .student_temp = 0.1f, .sinkhorn = true,
      .center_momentum = 0.9f, .sk_iters = 3, .dino_head = hc, .ibot_head = hc, .adamw = dl_adamw_config_default(),
      .sched = {.lr = {.base = 1e-2, .final = 1e-3, .total = STEPS, .warmup = 2, .start_warmup = 5e-3},
                .last_layer_lr = {.base = 1e-2, .final = 1e-3, .total = STEPS, .warmup = 2, .start_warmup = 5e-3,
                                  .zero_until = 2},
                .wd = {.base = 0.04, .final = 0.2, .total = STEPS},
                .momentum = {.base = 0.9, .final = 1.0, .total = STEPS},
                .teacher_temp = {.base = 0.07, .final = 0.07, .total = STEPS, .warmup = 2, .start_warmup = 0.04}}};
  cfg.adamw.clip = 3.0f;
  cfg.adamw.layer_decay = 0.9f;
  cfg.adamw.patch_embed_lr_mult = 0.2f;
  dl_trainer t;
  rc = dl_trainer_init(&t, &vit, &cfg, &teacher[0], &teacher[1], 1, &err);
  CHECK(rc == 0, "trainer init: %s", rc ? err.msg : "ok");
  if (rc) return dl_test_summary("test_step_trace");
  const char *hnames[2] = {"dino_head", "ibot_head"};
  for (int k = 0; k < 2; k++) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "init.%s", hnames[k]);
    loaded += ref_load_layout(&st, prefix, &t.heads[k].layout, t.heads[k].params);
    // The EMA starts from the loaded values, as PyTorch's copy does.
    memcpy(t.mods[k + 1].ema, t.heads[k].params, t.heads[k].layout.total * sizeof(float));
  }
  CHECK(loaded == 35 + 4 * 8, "%d initial tensors loaded (backbone, 2 heads, 2 teacher heads)", loaded);
  float *in[4];
  const char *inputs[4] = {"input.global_images", "input.local_images", "input.teacher_cls", "input.teacher_patch"};
  for (int i = 0; i < 4; i++) in[i] = ref_read(&st, inputs[i], NULL);
  dl_train_batch batch = {in[0], in[1], in[2], in[3]};
  float *ref_losses = ref_read(&st, "losses", NULL);
  for (int it = 0; it < STEPS && ref_losses; it++) {
    dl_step_report r;
    rc = dl_trainer_step(&t, &batch, &r, &err);
    const float got[3] = {r.dino, r.ibot, r.koleo}, *ref = ref_losses + 3 * it;
    const char *names[3] = {"DINO", "iBOT", "KoLeo"};
    for (int k = 0; k < 3; k++) {
      const double e = fabs(got[k] - ref[k]) / fabs(ref[k]);
      CHECK(rc == 0 && e <= 1e-4, "step %d %s loss %.6f (PyTorch %.6f): relative error %.2g <= 1e-4", it, names[k],
            got[k], ref[k], e);
    }
  }
  double worst = 0.0;
  worst = fmax(worst, compare_module(&st, "final.backbone", &vit.layout, vit.params));
  worst = fmax(worst, compare_module(&st, "ema.backbone", &vit.layout, t.mods[0].ema));
  for (int k = 0; k < 2; k++) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "final.%s", hnames[k]);
    worst = fmax(worst, compare_module(&st, prefix, &t.heads[k].layout, t.heads[k].params));
    snprintf(prefix, sizeof prefix, "ema.%s", hnames[k]);
    worst = fmax(worst, compare_module(&st, prefix, &t.heads[k].layout, t.mods[k + 1].ema));
  }
  printf("info after %d steps: worst relative error over parameters and EMA %.3g\n", STEPS, worst);
  for (int i = 0; i < 4; i++) free(in[i]);
  free(ref_losses);
  dl_trainer_free(&t);
  for (int k = 0; k < 2; k++) dl_head_free(&teacher[k]);
  dl_vit_free(&vit);
  dl_st_close(&st);
  return dl_test_summary("test_step_trace");
}
