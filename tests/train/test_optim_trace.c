// A 10-step AdamW trace against PyTorch (tests/ref/gen_optim_trace.py):
// parameter groups, clipping per module, schedules and the EMA. Every
// parameter and EMA tensor within 1e-5 relative; the updates themselves
// (final - initial) within 1e-4 relative; schedule values within 1e-7
// (the float64 references are read as float32).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/heads.h"
#include "model/optim.h"
#include "model/schedules.h"
#include "model/vit.h"
#include "tests/harness.h"
#include "tests/train/ref_util.h"

#define STEPS 10

typedef struct traced {
  const char *name;
  dl_optim_module mod;
} traced;

// prefix.module.NAME for each entry of the layout (ref_util.h).
static int load_all(const dl_safetensors *st, const char *prefix, const char *module, const dl_vit_layout *l,
                    float *dst) {
  char full[96];
  snprintf(full, sizeof full, "%s.%s", prefix, module);
  return ref_load_layout(st, full, l, dst);
}

static int tensors_of(const dl_vit_layout *l) {
  int n = 0;
  for (int i = 0; i < l->count; i++) n += l->entries[i].numel > 0;
  return n;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s optim_trace.safetensors\n", argv[0]);
    return 2;
  }
  dl_safetensors st;
  dl_err err;
  int rc = dl_st_open(argv[1], &st, &err);
  CHECK(rc == 0, "open %s%s%s", argv[1], rc ? ": " : "", rc ? err.msg : "");
  if (rc) return dl_test_summary("test_optim_trace");

  dl_vit vit;
  dl_vit_config vc = {.patch = 14, .dim = 32, .depth = 2, .heads = 1, .ffn_hidden = 64, .registers = 0,
                      .pos_grid = 2, .ffn = DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
  dl_vit_init_empty(&vit, &vc);
  dl_head head;
  dl_head_config hc = {.in_dim = 32, .hidden_dim = 48, .out_dim = 16, .nlayers = 3, .prototypes = 24};
  dl_head_init(&head, &hc);
  int loaded = load_all(&st, "init", "backbone", &vit.layout, vit.params) +
               load_all(&st, "init", "dino_head", &head.layout, head.params);
  CHECK(loaded == tensors_of(&vit.layout) + tensors_of(&head.layout), "initial values of %d tensors loaded", loaded);

  dl_adamw_config cfg = dl_adamw_config_default();
  cfg.layer_decay = 0.9f;
  cfg.patch_embed_lr_mult = 0.2f;
  cfg.clip = 3.0f;
  traced mods[2] = {{"backbone", {0}}, {"dino_head", {0}}};
  dl_optim_module_init(&mods[0].mod, &vit.layout, vit.params, vc.depth, &cfg);
  dl_optim_module_init(&mods[1].mod, &head.layout, head.params, vc.depth, &cfg);
  float *init_b = malloc(vit.layout.total * sizeof(float)), *init_h = malloc(head.layout.total * sizeof(float));
  memcpy(init_b, vit.params, vit.layout.total * sizeof(float));
  memcpy(init_h, head.params, head.layout.total * sizeof(float));

  dl_train_schedules s = {
      .lr = {.base = 1e-2, .final = 1e-4, .total = STEPS, .warmup = 3},
      .last_layer_lr = {.base = 1e-2, .final = 1e-4, .total = STEPS, .warmup = 3, .zero_until = 4},
      .wd = {.base = 0.04, .final = 0.2, .total = STEPS},
      .momentum = {.base = 0.9, .final = 1.0, .total = STEPS},
      .teacher_temp = {.base = 0.07, .final = 0.07, .total = STEPS, .warmup = 4, .start_warmup = 0.04},
  };
  const char *sched_names[] = {"lr", "last_layer_lr", "wd", "momentum", "teacher_temp"};
  const dl_schedule *sched[] = {&s.lr, &s.last_layer_lr, &s.wd, &s.momentum, &s.teacher_temp};
  for (int k = 0; k < 5; k++) {
    char name[64];
    snprintf(name, sizeof name, "sched.%s", sched_names[k]);
    float *ref = ref_read(&st, name, NULL);
    double worst = 0.0;
    for (int it = 0; it < STEPS && ref; it++) worst = fmax(worst, fabs(dl_schedule_at(sched[k], it) - ref[it]));
    CHECK(ref && worst <= 1e-7, "schedule %s over %d steps: max |diff| %.2g", sched_names[k], STEPS, worst);
    free(ref);
  }
  float *ref_norms[2] = {ref_read(&st, "sched.norm_backbone", NULL), ref_read(&st, "sched.norm_dino_head", NULL)};
  double worst_norm = 0.0;
  int clipped = 0;
  for (int it = 0; it < STEPS; it++) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "grad.%d", it);
    for (int k = 0; k < 2; k++) {
      load_all(&st, prefix, mods[k].name, mods[k].mod.layout, mods[k].mod.grads);
      double norm = dl_clip_grad_norm(&mods[k].mod, cfg.clip);
      clipped += norm > cfg.clip;
      if (ref_norms[k]) worst_norm = fmax(worst_norm, fabs(norm - ref_norms[k][it]) / ref_norms[k][it]);
    }
    for (int k = 0; k < 2; k++)
      dl_adamw_step(&mods[k].mod, &cfg, it + 1, dl_schedule_at(&s.lr, it), dl_schedule_at(&s.wd, it),
                    dl_schedule_at(&s.last_layer_lr, it));
    for (int k = 0; k < 2; k++) dl_ema_update(&mods[k].mod, dl_schedule_at(&s.momentum, it));
  }
  CHECK(ref_norms[0] && ref_norms[1] && worst_norm < 1e-5, "gradient norms before clipping: max relative diff %.2g",
        worst_norm);
  CHECK(clipped >= 4 && clipped <= 16, "clipping acted on %d of %d module-steps", clipped, 2 * STEPS);
  free(ref_norms[0]);
  free(ref_norms[1]);

  double worst_p = 0.0, worst_e = 0.0, worst_d = 0.0;
  int compared = 0;
  for (int k = 0; k < 2; k++) {
    const dl_vit_layout *l = mods[k].mod.layout;
    const float *init = k == 0 ? init_b : init_h;
    for (int i = 0; i < l->count; i++) {
      const dl_param_entry *e = &l->entries[i];
      if (e->numel == 0) continue;
      char name[160];
      snprintf(name, sizeof name, "final.%s.%s", mods[k].name, e->name);
      worst_p = fmax(worst_p, ref_compare(&st, name, mods[k].mod.params + e->offset, e->numel, 1e-5));
      // The update alone, which the parameter's own size would hide.
      float *ref = ref_read(&st, name, NULL), *d_ref = malloc(e->numel * sizeof(float));
      float *d_got = malloc(e->numel * sizeof(float));
      for (size_t j = 0; j < e->numel; j++) {
        d_ref[j] = ref[j] - init[e->offset + j];
        d_got[j] = mods[k].mod.params[e->offset + j] - init[e->offset + j];
      }
      double de = dl_rel_err(d_got, d_ref, e->numel);
      CHECK(de <= 1e-4, "update of %s.%s: relative error %.3g <= 1e-4", mods[k].name, e->name, de);
      worst_d = fmax(worst_d, de);
      free(ref); free(d_ref); free(d_got);
      snprintf(name, sizeof name, "ema.%s.%s", mods[k].name, e->name);
      worst_e = fmax(worst_e, ref_compare(&st, name, mods[k].mod.ema + e->offset, e->numel, 1e-5));
      compared++;
    }
  }
  printf("info %d tensors: worst relative error params %.3g, updates %.3g, EMA %.3g\n", compared, worst_p, worst_d,
         worst_e);
  CHECK(compared == loaded, "%d tensors compared", compared);
  for (int k = 0; k < 2; k++) dl_optim_module_free(&mods[k].mod);
  free(init_b); free(init_h);
  dl_head_free(&head);
  dl_vit_free(&vit);
  dl_st_close(&st);
  return dl_test_summary("test_optim_trace");
}
