#include "model/train_step.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/timing.h"
#include "model/step_parts.h"

static dl_crop_shape crop_shape(const dl_train_config *c) {
  return (dl_crop_shape){c->batch, c->global_crops, c->local_crops, c->global_size, c->local_size};
}

static int ibot_select_check(const dl_train_config *c, int patches, dl_err *err) {
  const dl_ibot_select *s = &c->ibot;
  if (!s->selected) return 0;
  if (!(s->probability >= 0.0f && s->probability <= 1.0f && s->ratio_lo >= 0.0f && s->ratio_lo <= s->ratio_hi &&
        s->ratio_hi <= 1.0f))
    return dl_fail(err, "training: iBOT selection needs a probability in [0, 1] and 0 <= ratio low <= high <= 1");
  if (c->weights.ibot > 0.0f && dl_trainer_ibot_rows(c, patches) == 0)
    return dl_fail(err, "training: the iBOT selection picks no patch of %d crops of %d patches (probability %g, "
                        "ratios %g to %g); raise them, or set the iBOT weight to 0",
                   c->global_crops * c->batch, patches, s->probability, s->ratio_lo, s->ratio_hi);
  return 0;
}

int dl_train_config_check(const dl_vit *s, const dl_train_config *c, const dl_head *td, const dl_head *ti,
                          dl_err *err) {
  const int p = s->cfg.patch;
  if (c->batch <= 0 || c->global_crops <= 0 || c->local_crops < 0)
    return dl_fail(err, "training: batch %d, %d global and %d local crops", c->batch, c->global_crops, c->local_crops);
  if (c->global_size % p || (c->local_crops && c->local_size % p))
    return dl_fail(err, "training: crop sizes %d and %d are not multiples of the patch size %d", c->global_size,
                   c->local_size, p);
  if (c->mode == DL_TRAIN_FEATURES) return c->teacher_dim > 0 ? 0 : dl_fail(err, "training: teacher_dim not set");
  if (ibot_select_check(c, (c->global_size / p) * (c->global_size / p), err)) return -1;
  const dl_head_config *h[2] = {&c->dino_head, &c->ibot_head};
  const dl_head *t[2] = {td, ti};
  for (int k = 0; k < 2; k++) {
    if (h[k]->in_dim != s->cfg.dim || h[k]->prototypes <= 0)
      return dl_fail(err, "training: head %d takes %d features (student: %d) with %d prototypes", k, h[k]->in_dim,
                     s->cfg.dim, h[k]->prototypes);
    if (!t[k] || t[k]->cfg.prototypes != h[k]->prototypes)
      return dl_fail(err, "training: the teacher's head %d must have the student head's %d prototypes", k,
                     h[k]->prototypes);
  }
  return 0;
}

int dl_trainer_ibot_rows(const dl_train_config *c, int patches) {
  const int GB = c->global_crops * c->batch;
  if (c->mode != DL_TRAIN_PROTOTYPES || !c->ibot.selected) return GB * patches;
  const dl_ibot_select *s = &c->ibot;
  return dl_ibot_selected_upper_bound(GB, patches, s->probability, s->ratio_lo, s->ratio_hi);
}

void dl_trainer_heads_init(dl_head heads[2], const dl_vit *student, const dl_train_config *cfg,
                           unsigned long long seed) {
  if (cfg->mode == DL_TRAIN_PROTOTYPES) {
    dl_head_init(&heads[0], &cfg->dino_head);
    dl_head_init(&heads[1], &cfg->ibot_head);
  } else {
    const int D = student->cfg.dim;
    dl_head_config a = {.in_dim = D, .hidden_dim = cfg->teacher_dim, .out_dim = cfg->teacher_dim, .nlayers = 2};
    dl_head_init(&heads[0], &a);
    dl_head_init(&heads[1], &a);
  }
  dl_head_init_random(&heads[0], seed);
  dl_head_init_random(&heads[1], seed + 1);
}

int dl_trainer_init(dl_trainer *t, dl_vit *student, const dl_train_config *cfg, const dl_head *teacher_dino,
                    const dl_head *teacher_ibot, unsigned long long seed, dl_err *err) {
  memset(t, 0, sizeof *t);
  if (dl_train_config_check(student, cfg, teacher_dino, teacher_ibot, err)) return -1;
  t->cfg = *cfg;
  t->student = student;
  t->teacher_last[0] = teacher_dino;
  t->teacher_last[1] = teacher_ibot;
  const int D = student->cfg.dim, G = cfg->global_crops, L = cfg->local_crops, B = cfg->batch;
  const int g = cfg->global_size / student->cfg.patch;
  t->patches = g * g;
  dl_trainer_heads_init(t->heads, student, cfg, seed);
  dl_modules_init(t->mods, student, t->heads, &cfg->adamw);
  // Distillation masks no patch, so mask_token gets no gradient.
  t->mods[0].groups[dl_vit_global_index(DL_P_MASK)].frozen = true;
  const size_t rows_cls = (size_t)(G + L) * B, rows_patch = (size_t)G * B * t->patches;
  const size_t K0 = (size_t)dl_head_out_dim(&t->heads[0], DL_HEAD_FULL);
  const size_t K1 = (size_t)dl_head_out_dim(&t->heads[1], DL_HEAD_FULL);
  const dl_crop_shape shape = crop_shape(cfg);
  dl_crop_buffers_init(&t->crops, &shape, D, t->patches);
  // The [rows, K1] buffers hold the rows iBOT scores: the selection's size
  // (DINOv3's upperbound), or every patch.
  t->ibot_rows = dl_trainer_ibot_rows(cfg, t->patches);
  const size_t rows_ibot = (size_t)t->ibot_rows;
  t->out_cls = dl_zeros(rows_cls * K0);
  t->d_out_cls = dl_zeros(rows_cls * K0);
  t->out_patch = dl_zeros(rows_ibot * K1);
  t->d_out_patch = dl_zeros(rows_ibot * K1);
  t->t_cls = dl_zeros(rows_cls * K0);
  t->t_patch = dl_zeros(rows_ibot * K1);
  t->center[0] = dl_zeros(K0);
  t->center[1] = dl_zeros(K1);
  const size_t kmax = K0 > K1 ? K0 : K1;
  t->scratch = dl_zeros(2 * kmax + 2);
  t->ibot_w = dl_zeros(rows_ibot);
  if (cfg->mode == DL_TRAIN_PROTOTYPES && cfg->ibot.selected) {
    const size_t W1 = (size_t)teacher_ibot->cfg.out_dim;
    t->ibot_masks = dl_calloc(rows_patch, sizeof(bool));
    t->ibot_index = dl_calloc(rows_ibot ? rows_ibot : 1, sizeof(int));
    t->sel_x = dl_zeros(rows_ibot * D);
    t->d_sel_x = dl_zeros(rows_ibot * D);
    t->sel_t = dl_zeros(rows_ibot * W1);
  } else {
    dl_ibot_weights(t->ibot_w, NULL, G * B, t->patches);
  }
  return 0;
}

void dl_trainer_free(dl_trainer *t) {
  for (int k = 0; k < 3; k++) dl_optim_module_free(&t->mods[k]);
  for (int k = 0; k < 2; k++) {
    dl_head_free(&t->heads[k]);
    dl_head_ws_free(&t->head_ws[k]);
    dl_head_ws_free(&t->teacher_ws[k]);
    free(t->center[k]);
  }
  dl_vit_train_ws_free(&t->ws_global);
  dl_vit_train_ws_free(&t->ws_local);
  dl_crop_buffers_free(&t->crops);
  float *bufs[] = {t->out_cls, t->d_out_cls, t->out_patch, t->d_out_patch, t->t_cls, t->t_patch, t->scratch, t->ibot_w,
                   t->sel_x, t->d_sel_x, t->sel_t};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
  free(t->ibot_masks);
  free(t->ibot_index);
  memset(t, 0, sizeof *t);
}

const char *const dl_step_phase_names[DL_STEP_PHASES] = {"forward", "targets", "heads", "backward", "update"};

// Teacher logits (its frozen last layer on its bottlenecks) -> targets, in
// place; its time is the step's targets phase (t->targets_s).
static void teacher_targets_now(dl_trainer *t, int k, const float *bottleneck, float *out, int rows, float temp) {
  const dl_head *h = t->teacher_last[k];
  const int K = h->cfg.prototypes;
  dl_head_forward(h, DL_HEAD_LAST_LAYER, bottleneck, rows, out, &t->teacher_ws[k]);
  if (t->cfg.sinkhorn) {
    dl_sinkhorn_knopp(out, out, rows, K, temp, t->cfg.sk_iters, &t->cfg.reduce, t->scratch);
    return;
  }
  // Softmax with the current center, then the center moves towards this batch.
  float *prev = t->scratch + K + 1;
  memcpy(prev, t->center[k], (size_t)K * sizeof(float));
  dl_center_update(t->center[k], out, rows, K, t->cfg.center_momentum, &t->cfg.reduce, t->scratch);
  dl_softmax_center(out, out, prev, rows, K, temp);
}

static void teacher_targets(dl_trainer *t, int k, const float *bottleneck, float *out, int rows, float temp) {
  const double t0 = dl_now_seconds();
  teacher_targets_now(t, k, bottleneck, out, rows, temp);
  t->targets_s += dl_now_seconds() - t0;
}

int dl_trainer_ibot_select(dl_trainer *t, const bool *masks) {
  const dl_train_config *c = &t->cfg;
  if (!c->ibot.selected) return t->ibot_rows;
  const int GB = c->global_crops * c->batch, grid = c->global_size / t->student->cfg.patch;
  if (!masks) return dl_ibot_select_step(&c->ibot, t->step, GB, grid, t->ibot_masks, t->ibot_index, t->ibot_w);
  const size_t n = (size_t)GB * t->patches;
  int m = 0;
  for (size_t i = 0; i < n; i++) m += masks[i];
  if (m != t->ibot_rows) return -1;
  memcpy(t->ibot_masks, masks, n * sizeof(bool));
  dl_mask_rows(masks, n, t->ibot_index);
  dl_ibot_weights(t->ibot_w, masks, GB, t->patches);
  return m;
}

float dl_trainer_ibot_loss(dl_trainer *t, const dl_train_batch *b, float temp) {
  const dl_train_config *c = &t->cfg;
  const int GB = c->global_crops * c->batch, K1 = t->heads[1].cfg.prototypes, D = t->student->cfg.dim;
  const int m = t->ibot_rows;
  const bool selected = c->ibot.selected;
  // The head's input rows and the teacher's bottlenecks for them: the
  // selected patches gathered, or every patch in place.
  const float *x = t->crops.patch_g, *tb = b->teacher_patch;
  if (selected) {
    dl_gather_rows(t->sel_x, t->crops.patch_g, t->ibot_index, m, D);
    dl_gather_rows(t->sel_t, b->teacher_patch, t->ibot_index, m, t->teacher_last[1]->cfg.out_dim);
    x = t->sel_x, tb = t->sel_t;
    memset(t->crops.d_patch_g, 0, (size_t)GB * t->patches * D * sizeof(float));
  }
  if (m == 0) return 0.0f;  // only with an iBOT weight of 0 (dl_train_config_check)
  dl_head_forward(&t->heads[1], DL_HEAD_FULL, x, m, t->out_patch, &t->head_ws[1]);
  teacher_targets(t, 1, tb, t->t_patch, m, temp);
  const float loss =
      dl_ibot_loss(t->out_patch, t->t_patch, t->ibot_w, m, K1, GB, c->student_temp, c->weights.ibot, t->d_out_patch);
  dl_head_backward(&t->heads[1], &t->head_ws[1], t->d_out_patch, t->mods[2].grads,
                   selected ? t->d_sel_x : t->crops.d_patch_g);
  if (selected) dl_scatter_rows(t->crops.d_patch_g, t->d_sel_x, t->ibot_index, m, D);
  return loss;
}

static void prototype_losses(dl_trainer *t, const dl_train_batch *b, float temp, dl_step_report *r) {
  const dl_train_config *c = &t->cfg;
  const int G = c->global_crops, L = c->local_crops, B = c->batch, D = t->student->cfg.dim;
  const int rows_cls = (G + L) * B;
  const int K0 = t->heads[0].cfg.prototypes;
  dl_head_forward(&t->heads[0], DL_HEAD_FULL, t->crops.cls_all, rows_cls, t->out_cls, &t->head_ws[0]);
  teacher_targets(t, 0, b->teacher_cls, t->t_cls, G * B, temp);
  const int pairs = dl_dino_pairs(G + L, G, true);
  r->dino = dl_dino_loss(t->out_cls, t->t_cls, G + L, G, B, K0, c->student_temp, true, c->weights.dino / pairs,
                         t->d_out_cls);
  dl_head_backward(&t->heads[0], &t->head_ws[0], t->d_out_cls, t->mods[1].grads, t->crops.d_cls_all);
  const int m = dl_trainer_ibot_select(t, NULL);
  DL_ASSERT(m == t->ibot_rows);  // a selection always reaches its upper bound
  r->ibot = dl_trainer_ibot_loss(t, b, temp);
  // KoLeo on each global crop's backbone CLS, summed over the crops.
  const dl_crop_shape shape = crop_shape(c);
  r->koleo = dl_koleo_global_crops(&shape, D, c->weights.koleo, &t->crops);
}

static void feature_losses(dl_trainer *t, const dl_train_batch *b, dl_step_report *r) {
  const dl_train_config *c = &t->cfg;
  const int G = c->global_crops, L = c->local_crops, B = c->batch, Dt = c->teacher_dim;
  const int rows_cls = (G + L) * B, rows_patch = G * B * t->patches;
  dl_head_forward(&t->heads[0], DL_HEAD_FULL, t->crops.cls_all, rows_cls, t->out_cls, &t->head_ws[0]);
  dl_head_forward(&t->heads[1], DL_HEAD_FULL, t->crops.patch_g, rows_patch, t->out_patch, &t->head_ws[1]);
  // CLS: each global crop to the teacher's same crop, each local crop to
  // every teacher global crop; the mean over those pairs.
  const int pairs = G + L * G;
  float *tmp = t->t_cls;
  memset(t->d_out_cls, 0, (size_t)rows_cls * Dt * sizeof(float));
  r->feat_cls = 0.0f;
  for (int s = 0; s < G + L; s++)
    for (int g = 0; g < G; g++) {
      if (s < G && s != g) continue;
      const size_t so = (size_t)s * B * Dt, to = (size_t)g * B * Dt;
      r->feat_cls += dl_cosine_loss(t->out_cls + so, b->teacher_cls + to, B, Dt, c->weights.feat_cls / pairs, tmp);
      for (size_t i = 0; i < (size_t)B * Dt; i++) t->d_out_cls[so + i] += tmp[i];
    }
  const size_t np = (size_t)rows_patch * Dt;
  r->feat_cos = dl_cosine_loss(t->out_patch, b->teacher_patch, rows_patch, Dt, c->weights.feat_cos, t->d_out_patch);
  r->feat_l1 = dl_smooth_l1_loss(t->out_patch, b->teacher_patch, np, 1.0f, c->weights.feat_l1, t->t_patch);
  for (size_t i = 0; i < np; i++) t->d_out_patch[i] += t->t_patch[i];
  dl_head_backward(&t->heads[0], &t->head_ws[0], t->d_out_cls, t->mods[1].grads, t->crops.d_cls_all);
  dl_head_backward(&t->heads[1], &t->head_ws[1], t->d_out_patch, t->mods[2].grads, t->crops.d_patch_g);
}

void dl_step_report_start(dl_step_report *r, const dl_step_values *v) {
  memset(r, 0, sizeof *r);
  r->lr = v->lr;
  r->wd = v->wd;
  r->momentum = v->momentum;
  r->teacher_temp = v->teacher_temp;
}

int dl_trainer_step(dl_trainer *t, const dl_train_batch *batch, dl_step_report *r, dl_err *err) {
  const dl_train_config *c = &t->cfg;
  const dl_crop_shape shape = crop_shape(c);
  const dl_step_values v = dl_step_values_at(&c->sched, t->step);
  dl_step_report_start(r, &v);
  double t0 = dl_now_seconds(), t1;
  if (dl_crops_forward(t->student, &shape, batch->global_images, NULL, batch->local_images, &t->ws_global,
                       &t->ws_local, &t->crops, err))
    return -1;
  for (int k = 0; k < 3; k++) dl_optim_zero_grad(&t->mods[k]);
  t1 = dl_now_seconds(), r->phase_s[DL_PHASE_FORWARD] = t1 - t0, t0 = t1;
  t->targets_s = 0.0;
  if (c->mode == DL_TRAIN_PROTOTYPES) prototype_losses(t, batch, (float)r->teacher_temp, r);
  else feature_losses(t, batch, r);
  r->total = r->dino + r->ibot + r->koleo + r->feat_cls + r->feat_cos + r->feat_l1;
  t1 = dl_now_seconds(), r->phase_s[DL_PHASE_TARGETS] = t->targets_s;
  r->phase_s[DL_PHASE_HEADS] = t1 - t0 - t->targets_s, t0 = t1;
  dl_crops_backward(t->student, &shape, &t->ws_global, &t->ws_local, &t->crops, t->mods[0].grads);
  t1 = dl_now_seconds(), r->phase_s[DL_PHASE_BACKWARD] = t1 - t0, t0 = t1;
  // Data parallel: every rank's loss is a mean over its own images, so the
  // group's gradient is the mean of the ranks' gradients (before clipping,
  // as DDP/FSDP average before clip_grad_norm_).
  if (c->world > 1 && c->reduce.fn)
    for (int k = 0; k < 3; k++) {
      dl_optim_module *m = &t->mods[k];
      dl_reduce_all(&c->reduce, m->grads, m->layout->total, DL_REDUCE_SUM);
      const float inv = 1.0f / (float)c->world;
      for (size_t i = 0; i < m->layout->total; i++) m->grads[i] *= inv;
    }
  dl_modules_update(t->mods, 3, &c->adamw, t->step, &v, r->grad_norm);
  r->phase_s[DL_PHASE_UPDATE] = dl_now_seconds() - t0;
  t->step++;
  return 0;
}
