#include "model/step_parts.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "model/losses.h"

float *dl_zeros(size_t n) {
  const size_t bytes = (n ? n : 1) * sizeof(float);
  float *p = dl_aligned_alloc(bytes);
  memset(p, 0, bytes);
  return p;
}

void dl_crop_buffers_init(dl_crop_buffers *b, const dl_crop_shape *c, int dim, int patches) {
  const size_t B = (size_t)c->batch, D = (size_t)dim, GB = (size_t)c->global_crops * B;
  const size_t rows_cls = (size_t)(c->global_crops + c->local_crops) * B, rows_patch = GB * (size_t)patches;
  b->cls_all = dl_zeros(rows_cls * D);
  b->d_cls_all = dl_zeros(rows_cls * D);
  b->patch_g = dl_zeros(rows_patch * D);
  b->d_patch_g = dl_zeros(rows_patch * D);
  b->koleo_scratch = dl_zeros(2 * B * D + 2 * B);
  b->koleo_idx = dl_calloc(B ? B : 1, sizeof(int));
}

void dl_crop_buffers_free(dl_crop_buffers *b) {
  free(b->cls_all);
  free(b->d_cls_all);
  free(b->patch_g);
  free(b->d_patch_g);
  free(b->koleo_scratch);
  free(b->koleo_idx);
  memset(b, 0, sizeof *b);
}

void dl_modules_init(dl_optim_module mods[3], dl_vit *backbone, dl_head heads[2], const dl_adamw_config *adamw) {
  const int depth = backbone->cfg.depth;
  dl_optim_module_init(&mods[0], &backbone->layout, backbone->params, depth, adamw);
  for (int k = 0; k < 2; k++) dl_optim_module_init(&mods[k + 1], &heads[k].layout, heads[k].params, depth, adamw);
}

dl_step_values dl_step_values_at(const dl_train_schedules *s, long step) {
  return (dl_step_values){.lr = dl_schedule_at(&s->lr, step),
                          .wd = dl_schedule_at(&s->wd, step),
                          .momentum = dl_schedule_at(&s->momentum, step),
                          .teacher_temp = dl_schedule_at(&s->teacher_temp, step),
                          .last_layer_lr = dl_schedule_at(&s->last_layer_lr, step)};
}

int dl_crops_forward(const dl_vit *vit, const dl_crop_shape *c, const float *global_images, const bool *masks,
                     const float *local_images, dl_vit_train_ws *ws_global, dl_vit_train_ws *ws_local,
                     dl_crop_buffers *b, dl_err *err) {
  const int D = vit->cfg.dim, GB = c->global_crops * c->batch, LB = c->local_crops * c->batch;
  dl_vit_outputs og = {b->cls_all, NULL, b->patch_g, NULL};
  if (dl_vit_forward_train(vit, global_images, GB, c->global_size, c->global_size, masks, ws_global, &og, err))
    return -1;
  if (LB == 0) return 0;
  dl_vit_outputs ol = {b->cls_all + (size_t)GB * D, NULL, NULL, NULL};
  return dl_vit_forward_train(vit, local_images, LB, c->local_size, c->local_size, NULL, ws_local, &ol, err);
}

void dl_crops_backward(const dl_vit *vit, const dl_crop_shape *c, dl_vit_train_ws *ws_global,
                       dl_vit_train_ws *ws_local, const dl_crop_buffers *b, float *grads) {
  const size_t GB = (size_t)c->global_crops * c->batch;
  dl_vit_backward(vit, ws_global, b->d_cls_all, NULL, b->d_patch_g, grads, NULL);
  if (c->local_crops)
    dl_vit_backward(vit, ws_local, b->d_cls_all + GB * vit->cfg.dim, NULL, NULL, grads, NULL);
}

float dl_koleo_global_crops(const dl_crop_shape *c, int dim, float weight, dl_crop_buffers *b) {
  if (weight == 0.0f) return 0.0f;
  const size_t BD = (size_t)c->batch * dim;
  float *grad = b->koleo_scratch, *work = b->koleo_scratch + BD, loss = 0.0f;
  for (int g = 0; g < c->global_crops; g++) {
    loss += dl_koleo_loss(b->cls_all + g * BD, c->batch, dim, weight, grad, work, b->koleo_idx);
    float *d = b->d_cls_all + g * BD;
    for (size_t i = 0; i < BD; i++) d[i] += grad[i];
  }
  return loss;
}

void dl_modules_update(dl_optim_module *mods, int n, const dl_adamw_config *adamw, long step,
                       const dl_step_values *v, double *grad_norm) {
  for (int k = 0; k < n; k++) {
    grad_norm[k] = adamw->clip > 0.0f ? dl_clip_grad_norm(&mods[k], adamw->clip) : 0.0;
    dl_adamw_step(&mods[k], adamw, step + 1, v->lr, v->wd, v->last_layer_lr);
    dl_ema_update(&mods[k], v->momentum);
  }
}
