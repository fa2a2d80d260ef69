// One full distillation training step of a DINOv2 ViT-S/14 student on the
// CPU (DESIGN.md section 6): forward and backward over 2 global crops at 224
// and 8 local crops at 98 per image, the DINO and iBOT heads (65536
// prototypes, bottleneck 256, hidden 2048), the teacher's frozen last layers
// on its bottlenecks, Sinkhorn-Knopp targets, the DINO, iBOT and KoLeo
// losses, clipping, AdamW and the EMA. Prints each repeat's time and the
// median; bench/torch_train.py runs the same step in PyTorch.
//   usage: bench_train BATCH REPEATS [STEPS_PHASES]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timing.h"
#include "model/train_step.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static float next_uniform(unsigned long long *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((*s >> 40) & 0xFFFFFF) / 16777216.0f - 0.5f;
}

static float *random_buffer(size_t n, float scale, unsigned long long *seed) {
  float *x = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) x[i] = scale * next_uniform(seed);
  return x;
}

static void normalize_rows(float *x, size_t rows, int d) {
  for (size_t r = 0; r < rows; r++) {
    double ss = 0.0;
    for (int j = 0; j < d; j++) ss += (double)x[r * d + j] * x[r * d + j];
    for (int j = 0; j < d; j++) x[r * d + j] /= (float)sqrt(ss);
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_train BATCH REPEATS\n");
    return 2;
  }
  const int batch = atoi(argv[1]), repeats = atoi(argv[2]);
  const int G = 2, L = 8, K = 65536, BN = 256;
  dl_vit_config vc = {.patch = 14, .dim = 384, .depth = 12, .heads = 6, .ffn_hidden = 1536, .registers = 0,
                      .pos_grid = 37, .ffn = DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
  dl_vit vit;
  dl_vit_init_empty(&vit, &vc);
  unsigned long long seed = 1;
  for (int i = 0; i < vit.layout.count; i++) {
    const dl_param_entry *e = &vit.layout.entries[i];
    const int gain = strstr(e->name, "norm") && strstr(e->name, "weight");
    for (size_t j = 0; j < e->numel; j++)
      vit.params[e->offset + j] = gain ? 1.0f : strstr(e->name, "gamma") ? 1e-5f : 0.04f * next_uniform(&seed);
  }
  dl_head_config hc = {.in_dim = 384, .hidden_dim = 2048, .out_dim = BN, .nlayers = 3, .prototypes = K};
  dl_head_config tc = hc;
  tc.in_dim = 1536;  // the ViT-g teacher's heads; only their last layers run here
  dl_head tdino, tibot;
  dl_head_init(&tdino, &tc);
  dl_head_init(&tibot, &tc);
  dl_head_init_random(&tdino, 101);
  dl_head_init_random(&tibot, 102);
  dl_train_config cfg = {
      .mode = DL_TRAIN_PROTOTYPES, .batch = batch, .global_crops = G, .local_crops = L, .global_size = 224,
      .local_size = 98, .weights = dl_loss_weights_default(), .student_temp = 0.1f, .sinkhorn = true,
      .center_momentum = 0.9f, .sk_iters = 3, .dino_head = hc, .ibot_head = hc, .adamw = dl_adamw_config_default(),
      .sched = {.lr = {.base = 1e-3, .final = 1e-6, .total = 1000, .warmup = 10},
                .last_layer_lr = {.base = 1e-3, .final = 1e-6, .total = 1000, .warmup = 10},
                .wd = {.base = 0.04, .final = 0.2, .total = 1000},
                .momentum = {.base = 0.994, .final = 1.0, .total = 1000},
                .teacher_temp = {.base = 0.07, .final = 0.07, .total = 1000, .warmup = 30, .start_warmup = 0.04}}};
  cfg.adamw.clip = 3.0f;
  cfg.adamw.layer_decay = 0.9f;
  cfg.adamw.patch_embed_lr_mult = 0.2f;
  dl_trainer t;
  dl_err err;
  if (dl_trainer_init(&t, &vit, &cfg, &tdino, &tibot, 7, &err)) {
    fprintf(stderr, "bench_train: %s\n", err.msg);
    return 1;
  }
  const size_t P = 16 * 16;
  float *gimg = random_buffer((size_t)G * batch * 3 * 224 * 224, 2.0f, &seed);
  float *limg = random_buffer((size_t)L * batch * 3 * 98 * 98, 2.0f, &seed);
  float *tcls = random_buffer((size_t)G * batch * BN, 1.0f, &seed);
  float *tpatch = random_buffer((size_t)G * batch * P * BN, 1.0f, &seed);
  normalize_rows(tcls, (size_t)G * batch, BN);
  normalize_rows(tpatch, (size_t)G * batch * P, BN);
  dl_train_batch b = {gimg, limg, tcls, tpatch};
  dl_step_report r;
  double *times = malloc((size_t)repeats * sizeof(double));
  for (int i = -1; i < repeats; i++) {  // one warm-up step
    double t0 = dl_now_seconds();
    if (dl_trainer_step(&t, &b, &r, &err)) {
      fprintf(stderr, "bench_train: %s\n", err.msg);
      return 1;
    }
    double dt = dl_now_seconds() - t0;
    printf("distill step %d: %.3f s  loss %.4f (dino %.4f ibot %.4f koleo %.4f)\n", i + 1, dt, r.total, r.dino,
           r.ibot, r.koleo);
    fflush(stdout);
    if (i >= 0) times[i] = dt;
  }
  qsort(times, (size_t)repeats, sizeof(double), cmp_double);
  printf("distill_step_s=%.4f\n", times[repeats / 2]);
  free(times); free(gimg); free(limg); free(tcls); free(tpatch);
  dl_trainer_free(&t);
  dl_head_free(&tdino);
  dl_head_free(&tibot);
  dl_vit_free(&vit);
  return 0;
}
