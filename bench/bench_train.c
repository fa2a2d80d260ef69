// One full distillation training step of a DINOv2 ViT-S/14 student on the
// CPU (DESIGN.md section 6): forward and backward over 2 global crops at 224
// and 8 local crops at 98 per image, the DINO and iBOT heads (65536
// prototypes, bottleneck 256, hidden 2048), the teacher's frozen last layers
// on its bottlenecks, Sinkhorn-Knopp targets, the DINO, iBOT and KoLeo
// losses, clipping, AdamW and the EMA. Prints each repeat's time and the
// median, the median time of each phase of the step, and how many values the
// step left subnormal (a denormal-slow CPU would pay for those);
// bench/torch_train.py runs the same step in PyTorch.
//   usage: bench_train BATCH REPEATS
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_setup.h"
#include "common/timing.h"
#include "eval/knn.h"
#include "model/train_step.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// Subnormal values in x [n]: added to *sub, n to *all.
static void count_subnormal(const float *x, size_t n, size_t *sub, size_t *all) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++) c += fpclassify(x[i]) == FP_SUBNORMAL;
  *sub += c, *all += n;
}

// After the timed steps: the trainer's state (parameters, gradients, AdamW
// moments, EMA), the backbone's activations and the heads' outputs.
static void report_subnormals(const dl_trainer *t) {
  size_t s[3] = {0}, n[3] = {0};
  for (int k = 0; k < 3; k++) {
    const dl_optim_module *m = &t->mods[k];
    const float *bufs[] = {m->params, m->grads, m->m, m->v, m->ema};
    for (int b = 0; b < 5; b++) count_subnormal(bufs[b], m->layout->total, &s[0], &n[0]);
  }
  count_subnormal(t->ws_global.buf, t->ws_global.cap, &s[1], &n[1]);
  count_subnormal(t->ws_local.buf, t->ws_local.cap, &s[1], &n[1]);
  const size_t K1 = (size_t)t->heads[1].cfg.prototypes;
  const float *heads[] = {t->out_patch, t->d_out_patch, t->t_patch};
  for (int b = 0; b < 3; b++) count_subnormal(heads[b], (size_t)t->ibot_rows * K1, &s[2], &n[2]);
  printf("subnormal values after the last step: state %zu of %zu, activations %zu of %zu, "
         "iBOT logits/gradients/targets %zu of %zu\n", s[0], n[0], s[1], n[1], s[2], n[2]);
}

static float *random_buffer(size_t n, float scale, uint64_t *seed) {
  float *x = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) x[i] = scale * dl_bench_uniform(seed);
  return x;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_train BATCH REPEATS\n");
    return 2;
  }
  const int batch = atoi(argv[1]), repeats = atoi(argv[2]);
  const int G = 2, L = 8, BN = DL_BENCH_BOTTLENECK;
  dl_vit_config vc = {.patch = 14, .dim = 384, .depth = 12, .heads = 6, .ffn_hidden = 1536, .registers = 0,
                      .pos_grid = 37, .ffn = DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
  dl_vit vit;
  uint64_t seed = 1;
  dl_bench_random_student(&vit, &vc, &seed);
  const dl_train_config cfg = dl_bench_train_config(DL_TRAIN_PROTOTYPES, batch, vc.dim);
  dl_head tdino, tibot;
  dl_bench_teacher_heads(&tdino, &tibot, &cfg);
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
  dl_l2_normalize_rows(tcls, G * batch, BN);
  dl_l2_normalize_rows(tpatch, G * batch * (int)P, BN);
  dl_train_batch b = {gimg, limg, tcls, tpatch};
  dl_step_report r;
  double *times = malloc((size_t)repeats * sizeof(double));
  double *phases = malloc((size_t)repeats * DL_STEP_PHASES * sizeof(double));
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
    if (i < 0) continue;
    times[i] = dt;
    for (int p = 0; p < DL_STEP_PHASES; p++) phases[(size_t)p * repeats + i] = r.phase_s[p];
  }
  // Where the step's time goes (the trainer's own phase clocks), each the
  // median over the repeats: a slow phase shows here before it moves the ratio.
  printf("distill phases (median s):");
  for (int p = 0; p < DL_STEP_PHASES; p++) {
    qsort(phases + (size_t)p * repeats, (size_t)repeats, sizeof(double), cmp_double);
    printf(" %s %.3f", dl_step_phase_names[p], phases[(size_t)p * repeats + repeats / 2]);
  }
  printf("\n");
  report_subnormals(&t);
  qsort(times, (size_t)repeats, sizeof(double), cmp_double);
  printf("distill_step_s=%.4f\n", times[repeats / 2]);
  free(phases);
  free(times); free(gimg); free(limg); free(tcls); free(tpatch);
  dl_trainer_free(&t);
  dl_head_free(&tdino);
  dl_head_free(&tibot);
  dl_vit_free(&vit);
  return 0;
}
