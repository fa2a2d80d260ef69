// One dl_trainer_step with the teacher's heads as released, against the
// same step in PyTorch written from the official loss code
// (tests/ref/gen_head_widths.py): a DINO head with a 384-wide bottleneck and
// an iBOT head with a 256-wide one (ViT-g/14's), or one shared head (a heads
// file without ibot_head.*). The teacher's heads file is read by the
// student's own loader (dl_student_load_teacher_heads); the student's heads
// take each head's bottleneck and prototype count, as dl_student_train_config
// gives them. Checked: the DINO, iBOT and KoLeo losses, the three modules'
// gradient norms and every parameter gradient within 1e-4 relative.
//
// The clipping bound is one no gradient reaches, so the gradient buffers
// after the step hold the gradients before clipping (clipping and AdamW are
// test_step_trace's).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/train_step.h"
#include "student/student_model.h"
#include "tests/harness.h"
#include "tests/train/ref_util.h"

#define TOL 1e-4

// Every tensor's gradient against grad.<module>.<name>; a tensor PyTorch gave
// no gradient (mask_token: nothing is masked) must have none here either.
static double compare_grads(const dl_safetensors *st, const char *module, const dl_vit_layout *l, const float *g) {
  double worst = 0.0;
  char name[160];
  for (int i = 0; i < l->count; i++) {
    const dl_param_entry *e = &l->entries[i];
    if (e->numel == 0) continue;
    snprintf(name, sizeof name, "grad.%s.%s", module, e->name);
    if (!dl_st_find(st, name)) {
      double sum = 0.0;
      for (size_t j = 0; j < e->numel; j++) sum += fabs(g[e->offset + j]);
      CHECK(sum == 0.0, "%s.%s: no gradient in PyTorch, none here (sum of |g| %.3g)", module, e->name, sum);
      continue;
    }
    worst = fmax(worst, ref_compare(st, name, g + e->offset, e->numel, TOL));
  }
  return worst;
}

static dl_train_config make_config(const dl_head teacher[2]) {
  dl_train_config c = {
      .mode = DL_TRAIN_PROTOTYPES, .batch = 3, .global_crops = 2, .local_crops = 2, .global_size = 16,
      .local_size = 8, .weights = dl_loss_weights_default(), .student_temp = 0.1f, .sinkhorn = true,
      .center_momentum = 0.9f, .sk_iters = 3, .adamw = dl_adamw_config_default(),
      .sched = {.lr = {.base = 1e-3, .final = 1e-3, .total = 1},
                .last_layer_lr = {.base = 1e-3, .final = 1e-3, .total = 1},
                .wd = {.base = 0.04, .final = 0.04, .total = 1},
                .momentum = {.base = 0.994, .final = 0.994, .total = 1},
                .teacher_temp = {.base = 0.07, .final = 0.07, .total = 1}}};
  // As dl_student_train_config: each student head takes its teacher head's
  // bottleneck width and prototype count.
  dl_head_config *h[2] = {&c.dino_head, &c.ibot_head};
  for (int k = 0; k < 2; k++)
    *h[k] = (dl_head_config){.in_dim = 32, .hidden_dim = 48, .out_dim = teacher[k].cfg.out_dim, .nlayers = 3,
                             .prototypes = teacher[k].cfg.prototypes};
  c.adamw.clip = 1e30f;  // never reached: the buffers keep the unclipped gradients
  return c;
}

static void run_case(const char *ref_path, const char *heads_path) {
  dl_safetensors st;
  dl_err err;
  int rc = dl_st_open(ref_path, &st, &err);
  CHECK(rc == 0, "open %s%s%s", ref_path, rc ? ": " : "", rc ? err.msg : "");
  if (rc) return;
  dl_head teacher[2];
  rc = dl_student_load_teacher_heads(heads_path, teacher, &err);
  CHECK(rc == 0, "the student loads the teacher's heads %s%s%s", heads_path, rc ? ": " : "", rc ? err.msg : "");
  if (rc) {
    dl_st_close(&st);
    return;
  }
  printf("info %s: DINO bottleneck %d (%d prototypes), iBOT bottleneck %d (%d prototypes)\n", heads_path,
         teacher[0].cfg.out_dim, teacher[0].cfg.prototypes, teacher[1].cfg.out_dim, teacher[1].cfg.prototypes);
  dl_vit vit;
  dl_vit_config vc = {.patch = 4, .dim = 32, .depth = 2, .heads = 2, .ffn_hidden = 64, .registers = 0,
                      .pos_grid = 4, .ffn = DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
  dl_vit_init_empty(&vit, &vc);
  int loaded = ref_load_layout(&st, "init.backbone", &vit.layout, vit.params);
  const dl_train_config cfg = make_config(teacher);
  dl_trainer t;
  rc = dl_trainer_init(&t, &vit, &cfg, &teacher[0], &teacher[1], 1, &err);
  CHECK(rc == 0, "trainer with bottlenecks %d and %d: %s", cfg.dino_head.out_dim, cfg.ibot_head.out_dim,
        rc ? err.msg : "initialized");
  if (rc == 0) {
    const char *hnames[2] = {"init.dino_head", "init.ibot_head"};
    for (int k = 0; k < 2; k++) loaded += ref_load_layout(&st, hnames[k], &t.heads[k].layout, t.heads[k].params);
    CHECK(loaded == 35 + 2 * 8, "%d initial tensors loaded (backbone and the student's 2 heads)", loaded);
    float *in[4];
    const char *inputs[4] = {"input.global_images", "input.local_images", "input.teacher_cls", "input.teacher_patch"};
    for (int i = 0; i < 4; i++) in[i] = ref_read(&st, inputs[i], NULL);
    float *ref_losses = ref_read(&st, "losses", NULL), *ref_norms = ref_read(&st, "grad_norms", NULL);
    dl_step_report r;
    const dl_train_batch batch = {in[0], in[1], in[2], in[3]};
    const bool have = in[0] && in[1] && in[2] && in[3] && ref_losses && ref_norms;
    rc = have ? dl_trainer_step(&t, &batch, &r, &err) : -1;
    CHECK(rc == 0, "one step: %s", rc ? "failed (or the reference lacks inputs)" : "ran");
    if (rc == 0) {
      const float got[3] = {r.dino, r.ibot, r.koleo};
      const char *names[3] = {"DINO", "iBOT", "KoLeo"};
      for (int k = 0; k < 3; k++) {
        const double e = fabs(got[k] - ref_losses[k]) / fabs(ref_losses[k]);
        CHECK(e <= TOL, "%s loss %.6f (PyTorch %.6f): relative error %.2g <= 1e-4", names[k], got[k], ref_losses[k],
              e);
      }
      const char *mods[3] = {"backbone", "dino_head", "ibot_head"};
      for (int k = 0; k < 3; k++) {
        const double e = fabs(r.grad_norm[k] - ref_norms[k]) / ref_norms[k];
        CHECK(e <= TOL, "%s gradient norm before clipping %.6f (PyTorch %.6f): relative error %.2g <= 1e-4", mods[k],
              r.grad_norm[k], ref_norms[k], e);
      }
      double worst = compare_grads(&st, "backbone", &vit.layout, t.mods[0].grads);
      for (int k = 0; k < 2; k++)
        worst = fmax(worst, compare_grads(&st, mods[k + 1], &t.heads[k].layout, t.mods[k + 1].grads));
      printf("info %s: worst relative error over the gradients %.3g\n", ref_path, worst);
    }
    for (int i = 0; i < 4; i++) free(in[i]);
    free(ref_losses);
    free(ref_norms);
    dl_trainer_free(&t);
  }
  for (int k = 0; k < 2; k++) dl_head_free(&teacher[k]);
  dl_vit_free(&vit);
  dl_st_close(&st);
}

int main(int argc, char **argv) {
  if (argc < 3 || argc % 2 == 0) {
    fprintf(stderr, "usage: %s REF.safetensors HEADS.safetensors [REF HEADS]...\n", argv[0]);
    return 2;
  }
  for (int i = 1; i + 1 < argc; i += 2) run_case(argv[i], argv[i + 1]);
  return dl_test_summary("test_head_widths");
}
