// Overfitting: a small student trained by dl_trainer_step on one fixed batch
// and fixed teacher outputs must drive each loss down by an asserted factor,
// one loss at a time (its weight 1, the others 0) and then all together:
// DINO and iBOT cross-entropy (Sinkhorn-Knopp targets, and once with softmax
// centering), KoLeo, and the feature losses. KoLeo on B = 4 vectors is at
// least -log sqrt(8/3) per crop (the regular tetrahedron's edge on the unit
// sphere is the largest nearest-neighbour distance), so its factor is on the
// distance to that optimum, loss + G log sqrt(8/3) (run with weight 1).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/train_step.h"
#include "tests/harness.h"
#include "tests/train/ref_util.h"

#define G 2
#define L 2
#define B 4
#define GS 16
#define LS 8
#define PATCH 4
#define K 16
#define BOTTLENECK 8
#define TEACHER_DIM 24

static unsigned long long rng = 1234;

static void init_student(dl_vit *vit) {
  dl_vit_config cfg = {.patch = PATCH, .dim = 32, .depth = 2, .heads = 2, .ffn_hidden = 64, .registers = 0,
                       .pos_grid = GS / PATCH, .ffn = DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
  dl_vit_init_empty(vit, &cfg);
  for (int i = 0; i < vit->layout.count; i++) {
    const dl_param_entry *e = &vit->layout.entries[i];
    float scale = 0.02f, base = 0.0f;
    if (e->ndim == 2 && e->shape[0] > 1 && !strstr(e->name, "token")) scale = 1.0f / sqrtf((float)e->shape[1]);
    if (strstr(e->name, "patch_embed.proj.weight")) scale = 1.0f / sqrtf(3.0f * PATCH * PATCH);
    if (strstr(e->name, "norm") && strstr(e->name, "weight")) scale = 0.0f, base = 1.0f;
    if (strstr(e->name, "gamma")) scale = 0.0f, base = 0.1f;
    if (strstr(e->name, "bias")) scale = 0.0f;
    for (size_t j = 0; j < e->numel; j++) vit->params[e->offset + j] = base + scale * 1.7f * ref_rand(&rng);
  }
}

static float *rnd(size_t n) {
  float *x = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) x[i] = ref_rand(&rng);
  return x;
}

static void normalize_rows(float *x, size_t rows, int d) {
  for (size_t r = 0; r < rows; r++) {
    double ss = 0.0;
    for (int j = 0; j < d; j++) ss += (double)x[r * d + j] * x[r * d + j];
    for (int j = 0; j < d; j++) x[r * d + j] /= (float)sqrt(ss);
  }
}

typedef enum { T_DINO, T_IBOT, T_KOLEO, T_FEAT_CLS, T_FEAT_COS, T_FEAT_L1, T_COUNT } term;
static const char *kTermNames[T_COUNT] = {"DINO", "iBOT", "KoLeo (above its optimum)", "feature CLS 1-cos", "feature patch 1-cos",
                                          "feature patch smooth-L1"};

static float term_of(const dl_step_report *r, term k) {
  const float v[T_COUNT] = {r->dino, r->ibot, r->koleo + G * 0.5f * logf(8.0f / 3.0f), r->feat_cls, r->feat_cos, r->feat_l1};
  return v[k];
}

// Trains `steps` steps; returns first and last values of the checked terms.
static void run(const char *label, dl_train_mode mode, bool sinkhorn, dl_loss_weights w, const term *terms,
                int nterms, const float *factors, int steps) {
  dl_vit vit;
  init_student(&vit);
  dl_head_config hc = {.in_dim = 32, .hidden_dim = 48, .out_dim = BOTTLENECK, .nlayers = 3, .prototypes = K};
  dl_head tdino, tibot;
  dl_head_init(&tdino, &hc);
  dl_head_init(&tibot, &hc);
  dl_head_init_random(&tdino, 11);
  dl_head_init_random(&tibot, 12);
  dl_train_config cfg = {
      .mode = mode, .batch = B, .global_crops = G, .local_crops = L, .global_size = GS, .local_size = LS,
      .weights = w, .student_temp = 0.1f, .sinkhorn = sinkhorn, .center_momentum = 0.9f, .sk_iters = 3,
      .dino_head = hc, .ibot_head = hc, .teacher_dim = TEACHER_DIM, .adamw = dl_adamw_config_default(),
      .sched = {.lr = dl_schedule_constant(3e-3), .last_layer_lr = dl_schedule_constant(3e-3),
                .wd = dl_schedule_constant(0.0), .momentum = dl_schedule_constant(0.99),
                .teacher_temp = dl_schedule_constant(0.04)}};
  cfg.adamw.clip = 3.0f;
  dl_trainer t;
  dl_err err;
  int rc = dl_trainer_init(&t, &vit, &cfg, &tdino, &tibot, 5, &err);
  CHECK(rc == 0, "%s: trainer init %s", label, rc ? err.msg : "ok");
  if (rc) return;
  const int P = (GS / PATCH) * (GS / PATCH);
  const int width = mode == DL_TRAIN_PROTOTYPES ? BOTTLENECK : TEACHER_DIM;
  float *gimg = rnd((size_t)G * B * 3 * GS * GS), *limg = rnd((size_t)L * B * 3 * LS * LS);
  float *tcls = rnd((size_t)G * B * width), *tpatch = rnd((size_t)G * B * P * width);
  if (mode == DL_TRAIN_PROTOTYPES) {
    normalize_rows(tcls, (size_t)G * B, width);
    normalize_rows(tpatch, (size_t)G * B * P, width);
  }
  dl_train_batch batch = {gimg, limg, tcls, tpatch};
  dl_step_report first = {0}, r = {0};
  for (int s = 0; s < steps && rc == 0; s++) {
    rc = dl_trainer_step(&t, &batch, &r, &err);
    if (s == 0) first = r;
  }
  CHECK(rc == 0, "%s: %d steps ran", label, steps);
  for (int i = 0; i < nterms; i++) {
    const float a = term_of(&first, terms[i]), b = term_of(&r, terms[i]);
    CHECK(isfinite(b) && b * factors[i] <= a, "%s: %s %.5f -> %.5f after %d steps, down %.1fx >= %.0fx", label,
          kTermNames[terms[i]], a, b, steps, a / b, factors[i]);
  }
  free(gimg); free(limg); free(tcls); free(tpatch);
  dl_trainer_free(&t);
  dl_head_free(&tdino);
  dl_head_free(&tibot);
  dl_vit_free(&vit);
}

int main(void) {
  const dl_loss_weights none = {0};
  dl_loss_weights w = none;
  w.dino = 1.0f;
  run("DINO alone, Sinkhorn-Knopp", DL_TRAIN_PROTOTYPES, true, w, (term[]){T_DINO}, 1, (float[]){3}, 100);
  run("DINO alone, softmax centering", DL_TRAIN_PROTOTYPES, false, w, (term[]){T_DINO}, 1, (float[]){4}, 100);
  w = none;
  w.ibot = 1.0f;
  run("iBOT alone", DL_TRAIN_PROTOTYPES, true, w, (term[]){T_IBOT}, 1, (float[]){4}, 100);
  w = none;
  w.koleo = 1.0f;
  run("KoLeo alone", DL_TRAIN_PROTOTYPES, true, w, (term[]){T_KOLEO}, 1, (float[]){10}, 100);
  w = none;
  w.feat_cls = 1.0f;
  w.feat_cos = 0.9f;
  run("features 1-cos", DL_TRAIN_FEATURES, true, w, (term[]){T_FEAT_CLS, T_FEAT_COS}, 2, (float[]){4, 4}, 100);
  w = none;
  w.feat_l1 = 1.0f;
  run("features smooth-L1 alone", DL_TRAIN_FEATURES, true, w, (term[]){T_FEAT_L1}, 1, (float[]){4}, 100);
  run("all prototype losses", DL_TRAIN_PROTOTYPES, true, dl_loss_weights_default(), (term[]){T_DINO, T_IBOT}, 2,
      (float[]){2, 2}, 100);
  return dl_test_summary("test_overfit");
}
