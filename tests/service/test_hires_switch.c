// The high-resolution switch (student/hires.c) on a small student in both
// official interpolation modes: after two training steps at 28 px, the
// switched model at 42 px computes what the unswitched one computes there by
// on-the-fly interpolation (the first high-resolution step starts where the
// official code would), the EMA table is resized the same way, the second
// Adam moment stays non-negative, everything else carries over bit for bit,
// and the switched trainer trains with the phase's configuration (its own
// local crop size and learning rate).
#include <stdlib.h>
#include <string.h>

#include "data/rng.h"
#include "model/pos_embed.h"
#include "student/hires.h"
#include "student/student_model.h"
#include "tests/harness.h"

static float *random_floats(size_t n, uint64_t key) {
  float *x = malloc(n * sizeof(float));
  dl_rng g = dl_rng_make(key);
  for (size_t i = 0; i < n; i++) x[i] = (float)dl_rng_uniform(&g, -1.0, 1.0);
  return x;
}

static void run(int registers) {
  const char *mode = registers ? "antialias (4 registers)" : "legacy";
  dl_vit_config vc = {.patch = 14, .dim = 32, .depth = 2, .heads = 2, .ffn_hidden = 64, .registers = registers,
                      .pos_grid = 2, .ffn = DL_FFN_MLP, .interp = registers ? DL_INTERP_ANTIALIAS : DL_INTERP_LEGACY};
  dl_vit vit;
  dl_student_vit_init(&vit, &vc, 1e-5f, 9);
  dl_train_config cfg = {.mode = DL_TRAIN_FEATURES, .batch = 2, .global_crops = 2, .local_crops = 1,
                         .global_size = 28, .local_size = 14, .weights = dl_loss_weights_default(),
                         .teacher_dim = 8, .adamw = dl_adamw_config_default()};
  cfg.sched.lr = dl_schedule_constant(1e-2);
  cfg.sched.last_layer_lr = cfg.sched.lr;
  cfg.sched.wd = dl_schedule_constant(0.04);
  cfg.sched.momentum = dl_schedule_constant(0.9);
  cfg.sched.teacher_temp = dl_schedule_constant(0.07);
  dl_trainer t;
  dl_err err;
  CHECK(dl_trainer_init(&t, &vit, &cfg, NULL, NULL, 1, &err) == 0, "%s: trainer", mode);
  float *g = random_floats(4 * 3 * 28 * 28, 1), *l = random_floats(2 * 3 * 14 * 14, 2);
  float *tc = random_floats(4 * 8, 3), *tp = random_floats(4 * 4 * 8, 4);
  dl_train_batch b = {g, l, tc, tp};
  dl_step_report rep;
  for (int s = 0; s < 2; s++) dl_trainer_step(&t, &b, &rep, &err);

  dl_vit hv;
  dl_trainer ht;
  // The phase's own configuration: larger local crops, another learning rate.
  dl_train_config hc = cfg;
  hc.global_size = 42;
  hc.local_size = 28;
  hc.sched.lr = hc.sched.last_layer_lr = dl_schedule_constant(3e-3);
  CHECK(dl_hires_switch(&t, &hc, &hv, &ht, &err) == 0, "%s: switch to 42 px", mode);
  CHECK(hv.cfg.pos_grid == 3 && ht.step == 2 && ht.cfg.global_size == 42 && ht.cfg.local_size == 28 &&
            ht.patches == 9,
        "%s: grid %d, step %ld, global size %d, local size %d, %d patches", mode, hv.cfg.pos_grid, ht.step,
        ht.cfg.global_size, ht.cfg.local_size, ht.patches);

  const int n = 2, P = 9, D = 32;
  float *x = random_floats((size_t)n * 3 * 42 * 42, 5);
  float *c0 = malloc(n * D * sizeof(float)), *c1 = malloc(n * D * sizeof(float));
  float *p0 = malloc(n * P * D * sizeof(float)), *p1 = malloc(n * P * D * sizeof(float));
  float *r0 = malloc(n * 4 * D * sizeof(float) + 4), *r1 = malloc(n * 4 * D * sizeof(float) + 4);
  dl_vit_workspace ws = {0};
  dl_vit_outputs o0 = {c0, r0, p0, NULL}, o1 = {c1, r1, p1, NULL};
  dl_vit_forward(&vit, x, n, 42, 42, NULL, &ws, &o0, &err);
  dl_vit_forward(&hv, x, n, 42, 42, NULL, &ws, &o1, &err);
  double ec = dl_rel_err(c1, c0, (size_t)n * D), ep = dl_rel_err(p1, p0, (size_t)n * P * D);
  CHECK(ec <= 1e-5 && ep <= 1e-5, "%s: 42 px features, resized table vs on-the-fly interpolation: CLS %.2g, patches %.2g (<= 1e-5)",
        mode, ec, ep);

  const int pos = dl_vit_global_index(DL_P_POS);
  const dl_param_entry *eo = &vit.layout.entries[pos], *en = &hv.layout.entries[pos];
  float *want = malloc(9 * D * sizeof(float));
  dl_pos_embed_resize(want, t.mods[0].ema + eo->offset + D, 2, D, 3, 3, vc.interp);
  CHECK(memcmp(want, ht.mods[0].ema + en->offset + D, 9 * D * sizeof(float)) == 0 &&
            memcmp(t.mods[0].ema + eo->offset, ht.mods[0].ema + en->offset, D * sizeof(float)) == 0,
        "%s: the EMA position table resized by the same map, its class row kept", mode);
  int negative = 0;
  for (size_t i = 0; i < en->numel; i++) negative += ht.mods[0].v[en->offset + i] < 0.0f;
  CHECK(negative == 0, "%s: second Adam moment of the table non-negative (%d negative)", mode, negative);
  int same = 1;
  for (int e = 0; e < vit.layout.count; e++) {
    if (e == pos) continue;
    const dl_param_entry *a = &vit.layout.entries[e], *z = &hv.layout.entries[e];
    const float *src[4] = {t.mods[0].params, t.mods[0].ema, t.mods[0].m, t.mods[0].v};
    const float *dst[4] = {ht.mods[0].params, ht.mods[0].ema, ht.mods[0].m, ht.mods[0].v};
    for (int k = 0; k < 4; k++) same &= memcmp(src[k] + a->offset, dst[k] + z->offset, a->numel * sizeof(float)) == 0;
  }
  for (int k = 1; k < 3; k++) {
    const size_t bytes = t.mods[k].layout->total * sizeof(float);
    same &= memcmp(t.mods[k].params, ht.mods[k].params, bytes) == 0 && memcmp(t.mods[k].m, ht.mods[k].m, bytes) == 0 &&
            memcmp(t.mods[k].v, ht.mods[k].v, bytes) == 0 && memcmp(t.mods[k].ema, ht.mods[k].ema, bytes) == 0;
  }
  CHECK(same, "%s: every other backbone tensor and both heads (params, EMA, Adam moments) carried over bit for bit", mode);
  // And the switched trainer trains.
  float *g42 = random_floats(4 * 3 * 42 * 42, 6), *tp42 = random_floats(4 * 9 * 8, 7);
  float *l28 = random_floats(2 * 3 * 28 * 28, 8);
  dl_train_batch b42 = {g42, l28, tc, tp42};
  CHECK(dl_trainer_step(&ht, &b42, &rep, &err) == 0 && rep.total == rep.total && ht.step == 3 && rep.lr == 3e-3,
        "%s: a step after the switch (42 px globals, 28 px locals) at the phase's lr %g: loss %.4f", mode, rep.lr,
        rep.total);

  dl_vit_workspace_free(&ws);
  free(g), free(l), free(tc), free(tp), free(x), free(c0), free(c1), free(p0), free(p1), free(r0), free(r1);
  free(want), free(g42), free(tp42), free(l28);
  dl_trainer_free(&ht);
  dl_vit_free(&hv);
  dl_trainer_free(&t);
  dl_vit_free(&vit);
}

int main(void) {
  run(0);
  run(4);
  return dl_test_summary("test_hires_switch");
}
