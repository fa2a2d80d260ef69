#include "bench/bench_setup.h"

#include <string.h>

dl_train_config dl_bench_train_config(dl_train_mode mode, int batch, int student_dim) {
  const dl_head_config h = {.in_dim = student_dim, .hidden_dim = 2048, .out_dim = DL_BENCH_BOTTLENECK,
                            .nlayers = 3, .prototypes = DL_BENCH_PROTOTYPES};
  dl_train_config c = {
      .mode = mode, .batch = batch, .global_crops = 2, .local_crops = 8, .global_size = 224, .local_size = 98,
      .weights = dl_loss_weights_default(), .student_temp = 0.1f, .sinkhorn = true, .center_momentum = 0.9f,
      .sk_iters = 3, .dino_head = h, .ibot_head = h, .teacher_dim = DL_BENCH_TEACHER_DIM,
      .adamw = dl_adamw_config_default(),
      .sched = {.lr = {.base = 1e-3, .final = 1e-6, .total = 1000, .warmup = 10},
                .last_layer_lr = {.base = 1e-3, .final = 1e-6, .total = 1000, .warmup = 10},
                .wd = {.base = 0.04, .final = 0.2, .total = 1000},
                .momentum = {.base = 0.994, .final = 1.0, .total = 1000},
                .teacher_temp = {.base = 0.07, .final = 0.07, .total = 1000, .warmup = 30, .start_warmup = 0.04}}};
  c.adamw.clip = 3.0f;
  c.adamw.layer_decay = 0.9f;
  c.adamw.patch_embed_lr_mult = 0.2f;
  return c;
}

float dl_bench_uniform(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((*s >> 40) & 0xFFFFFF) / 16777216.0f - 0.5f;
}

void dl_bench_random_student(dl_vit *vit, const dl_vit_config *cfg, uint64_t *s) {
  dl_vit_init_empty(vit, cfg);
  for (int i = 0; i < vit->layout.count; i++) {
    const dl_param_entry *e = &vit->layout.entries[i];
    const int gain = strstr(e->name, "norm") && strstr(e->name, "weight");
    for (size_t j = 0; j < e->numel; j++)
      vit->params[e->offset + j] = gain ? 1.0f : strstr(e->name, "gamma") ? 1e-5f : 0.04f * dl_bench_uniform(s);
  }
}

void dl_bench_teacher_heads(dl_head *dino, dl_head *ibot, const dl_train_config *cfg) {
  dl_head_config tc = cfg->dino_head;
  tc.in_dim = DL_BENCH_TEACHER_DIM;
  dl_head_init(dino, &tc);
  tc.prototypes = cfg->ibot_head.prototypes;
  dl_head_init(ibot, &tc);
  dl_head_init_random(dino, 101);
  dl_head_init_random(ibot, 102);
}
