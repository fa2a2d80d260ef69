#include "teacher/pretrain.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "data/rng.h"
#include "model/ibot_masks.h"
#include "model/step_parts.h"


static dl_crop_shape crop_shape(const dl_pretrain_config *c) {
  return (dl_crop_shape){c->batch, c->global_crops, c->local_crops, c->global_size, c->local_size};
}

static int check_config(const dl_vit *s, const dl_pretrain_config *c, dl_err *err) {
  const int p = s->cfg.patch;
  if (c->batch < 2 || c->global_crops < 1 || c->local_crops < 0)
    return dl_fail(err, "pretraining: batch %d (at least 2 for KoLeo), %d global and %d local crops", c->batch,
                   c->global_crops, c->local_crops);
  if (c->global_size % p || (c->local_crops && c->local_size % p))
    return dl_fail(err, "pretraining: crop sizes %d and %d are not multiples of the patch size %d", c->global_size,
                   c->local_size, p);
  const dl_head_config *h[2] = {&c->dino_head, &c->ibot_head};
  for (int k = 0; k < 2; k++)
    if (h[k]->in_dim != s->cfg.dim || h[k]->prototypes <= 0)
      return dl_fail(err, "pretraining: head %d takes %d features (model: %d) with %d prototypes", k, h[k]->in_dim,
                     s->cfg.dim, h[k]->prototypes);
  if (!(c->mask_ratio_lo >= 0 && c->mask_ratio_lo <= c->mask_ratio_hi && c->mask_ratio_hi < 1))
    return dl_fail(err, "pretraining: mask ratios need 0 <= low <= high < 1");
  return 0;
}

int dl_pretrainer_init(dl_pretrainer *t, dl_vit *student, const dl_pretrain_config *cfg, dl_err *err) {
  memset(t, 0, sizeof *t);
  if (check_config(student, cfg, err)) return -1;
  t->cfg = *cfg;
  t->student = student;
  const int D = student->cfg.dim, B = cfg->batch, GB = cfg->global_crops * B;
  const int g = cfg->global_size / student->cfg.patch;
  t->patches = g * g;
  dl_head_init(&t->heads[0], &cfg->dino_head);
  dl_head_init(&t->heads[1], &cfg->ibot_head);
  dl_head_init_random(&t->heads[0], cfg->seed * 2 + 1);
  dl_head_init_random(&t->heads[1], cfg->seed * 2 + 2);
  dl_modules_init(t->mods, student, t->heads, &cfg->adamw);
  // The teacher is the EMA: views of the student's and heads' layouts over the EMA buffers.
  t->teacher = *student;
  t->teacher.params = t->mods[0].ema;
  for (int k = 0; k < 2; k++) {
    t->teacher_heads[k] = t->heads[k];
    t->teacher_heads[k].params = t->mods[k + 1].ema;
  }
  const size_t rows_cls = (size_t)(cfg->global_crops + cfg->local_crops) * B, rows_patch = (size_t)GB * t->patches;
  const size_t K0 = (size_t)cfg->dino_head.prototypes, K1 = (size_t)cfg->ibot_head.prototypes;
  t->masks = dl_calloc(rows_patch, sizeof(bool));
  t->mask_rows = dl_calloc(rows_patch, sizeof(int));
  const dl_crop_shape shape = crop_shape(cfg);
  dl_crop_buffers_init(&t->crops, &shape, D, t->patches);
  t->masked_x = dl_zeros(rows_patch * D);
  t->d_masked_x = dl_zeros(rows_patch * D);
  t->t_cls_raw = dl_zeros((size_t)GB * D);
  t->t_patch_raw = dl_zeros(rows_patch * D);
  t->t_masked_x = dl_zeros(rows_patch * D);
  t->logits_cls = dl_zeros(rows_cls * K0);
  t->d_logits_cls = dl_zeros(rows_cls * K0);
  t->q_cls = dl_zeros((size_t)GB * K0);
  t->logits_patch = dl_zeros(rows_patch * K1);
  t->d_logits_patch = dl_zeros(rows_patch * K1);
  t->q_patch = dl_zeros(rows_patch * K1);
  t->ibot_w = dl_zeros(rows_patch);
  t->scratch = dl_zeros(K0 > K1 ? K0 : K1);
  return 0;
}

void dl_pretrainer_free(dl_pretrainer *t) {
  for (int k = 0; k < 3; k++) dl_optim_module_free(&t->mods[k]);
  for (int k = 0; k < 2; k++) {
    dl_head_free(&t->heads[k]);
    dl_head_ws_free(&t->head_ws[k]);
    dl_head_ws_free(&t->teacher_head_ws[k]);
  }
  dl_vit_train_ws_free(&t->ws_global);
  dl_vit_train_ws_free(&t->ws_local);
  dl_vit_workspace_free(&t->ws_teacher);
  dl_crop_buffers_free(&t->crops);
  float *bufs[] = {t->masked_x, t->d_masked_x,
                   t->t_cls_raw, t->t_patch_raw, t->t_masked_x, t->logits_cls, t->d_logits_cls, t->q_cls,
                   t->logits_patch, t->d_logits_patch, t->q_patch, t->ibot_w, t->scratch};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
  free(t->masks);
  free(t->mask_rows);
  memset(t, 0, sizeof *t);
}

// DINOv2's collate: a share of the global crops is masked, the i-th of them
// with a ratio drawn in [lo + i*(hi-lo)/n, lo + (i+1)*(hi-lo)/n], so one
// batch spans the whole range (model/ibot_masks.h; random patches, not
// blocks). Returns the number of masked patches.
static int draw_masks(dl_pretrainer *t) {
  const dl_pretrain_config *c = &t->cfg;
  const int GB = c->global_crops * c->batch, g = c->global_size / t->student->cfg.patch;
  dl_rng r = dl_rng_make(dl_key_derive(dl_mix64(c->seed + 0x6d61736bull), (uint64_t)t->step));
  const dl_mask_draw d = {DL_MASK_RANDOM_PATCHES, c->mask_probability, c->mask_ratio_lo, c->mask_ratio_hi, 0};
  dl_draw_crop_masks(t->masks, GB, g, g, &d, &r);
  return dl_mask_rows(t->masks, (size_t)GB * t->patches, t->mask_rows);
}

// The EMA teacher on the unmasked global crops: Sinkhorn-Knopp targets for
// the CLS of every global crop and for the patches the student sees masked.
static int teacher_targets(dl_pretrainer *t, const float *global_images, int M, float temp, dl_err *err) {
  const dl_pretrain_config *c = &t->cfg;
  const int GB = c->global_crops * c->batch, D = t->student->cfg.dim;
  dl_vit_outputs o = {t->t_cls_raw, NULL, t->t_patch_raw, NULL};
  if (dl_vit_forward(&t->teacher, global_images, GB, c->global_size, c->global_size, NULL, &t->ws_teacher, &o, err))
    return -1;
  const int K0 = c->dino_head.prototypes, K1 = c->ibot_head.prototypes;
  dl_head_forward(&t->teacher_heads[0], DL_HEAD_FULL, t->t_cls_raw, GB, t->q_cls, &t->teacher_head_ws[0]);
  dl_sinkhorn_knopp(t->q_cls, t->q_cls, GB, K0, temp, c->sk_iters, NULL, t->scratch);
  if (M == 0) return 0;
  dl_gather_rows(t->t_masked_x, t->t_patch_raw, t->mask_rows, M, D);
  dl_head_forward(&t->teacher_heads[1], DL_HEAD_FULL, t->t_masked_x, M, t->q_patch, &t->teacher_head_ws[1]);
  dl_sinkhorn_knopp(t->q_patch, t->q_patch, M, K1, temp, c->sk_iters, NULL, t->scratch);
  return 0;
}

// Student heads, the three losses, and their gradients down to the backbone outputs.
static void losses_and_head_grads(dl_pretrainer *t, int M, dl_pretrain_report *r) {
  const dl_pretrain_config *c = &t->cfg;
  const int G = c->global_crops, L = c->local_crops, B = c->batch, D = t->student->cfg.dim;
  const int GB = G * B, P = t->patches, K0 = c->dino_head.prototypes, K1 = c->ibot_head.prototypes;
  dl_head_forward(&t->heads[0], DL_HEAD_FULL, t->crops.cls_all, (G + L) * B, t->logits_cls, &t->head_ws[0]);
  const int pairs = dl_dino_pairs(G + L, G, true);
  memset(t->d_logits_cls, 0, (size_t)(G + L) * B * K0 * sizeof(float));  // rows without a pair keep 0
  r->dino = dl_dino_loss(t->logits_cls, t->q_cls, G + L, G, B, K0, c->student_temp, true, c->weights.dino / pairs,
                         t->d_logits_cls);
  dl_head_backward(&t->heads[0], &t->head_ws[0], t->d_logits_cls, t->mods[1].grads, t->crops.d_cls_all);
  memset(t->crops.d_patch_g, 0, (size_t)GB * P * D * sizeof(float));
  r->ibot = 0.0f;
  if (M > 0) {
    dl_gather_rows(t->masked_x, t->crops.patch_g, t->mask_rows, M, D);
    dl_head_forward(&t->heads[1], DL_HEAD_FULL, t->masked_x, M, t->logits_patch, &t->head_ws[1]);
    dl_ibot_weights(t->ibot_w, t->masks, GB, P);
    r->ibot = dl_ibot_loss(t->logits_patch, t->q_patch, t->ibot_w, M, K1, GB, c->student_temp, c->weights.ibot,
                           t->d_logits_patch);
    dl_head_backward(&t->heads[1], &t->head_ws[1], t->d_logits_patch, t->mods[2].grads, t->d_masked_x);
    dl_scatter_rows(t->crops.d_patch_g, t->d_masked_x, t->mask_rows, M, D);
  }
  const dl_crop_shape shape = crop_shape(c);
  r->koleo = dl_koleo_global_crops(&shape, D, c->weights.koleo, &t->crops);
}

int dl_pretrainer_step(dl_pretrainer *t, const float *global_images, const float *local_images,
                       dl_pretrain_report *r, dl_err *err) {
  const dl_pretrain_config *c = &t->cfg;
  const dl_crop_shape shape = crop_shape(c);
  const dl_step_values v = dl_step_values_at(&c->sched, t->step);
  memset(r, 0, sizeof *r);
  r->lr = v.lr;
  r->wd = v.wd;
  r->momentum = v.momentum;
  r->teacher_temp = v.teacher_temp;
  const int M = draw_masks(t);
  r->masked = M;
  if (teacher_targets(t, global_images, M, (float)r->teacher_temp, err)) return -1;
  if (dl_crops_forward(t->student, &shape, global_images, t->masks, local_images, &t->ws_global, &t->ws_local,
                       &t->crops, err))
    return -1;
  for (int k = 0; k < 3; k++) dl_optim_zero_grad(&t->mods[k]);
  losses_and_head_grads(t, M, r);
  r->total = r->dino + r->ibot + r->koleo;
  dl_crops_backward(t->student, &shape, &t->ws_global, &t->ws_local, &t->crops, t->mods[0].grads);
  double grad_norm[3];
  dl_modules_update(t->mods, 3, &c->adamw, t->step, &v, grad_norm);
  t->step++;
  return 0;
}
