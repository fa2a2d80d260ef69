// The pieces that every training loop runs the same way: the distillation
// step (model/train_step.c) and self-distillation pretraining
// (teacher/pretrain.c). Both hold a backbone and two heads as three optimizer
// modules, run the backbone over crop-major global and local crops, add
// KoLeo on the global CLS, and end with clipping, AdamW and the EMA.
#ifndef DISTILL_MODEL_STEP_PARTS_H
#define DISTILL_MODEL_STEP_PARTS_H

#include <stdbool.h>
#include <stddef.h>

#include "model/optim.h"
#include "model/schedules.h"
#include "model/vit_train.h"

// Aligned, zeroed floats (at least one, so a zero-sized buffer is valid).
float *dl_zeros(size_t n);

// The crops of one step, crop-major (crop c, image i at row c * batch + i).
typedef struct dl_crop_shape {
  int batch, global_crops, local_crops, global_size, local_size;
} dl_crop_shape;

// The schedules' values at one step.
typedef struct dl_step_values {
  double lr, wd, momentum, teacher_temp, last_layer_lr;
} dl_step_values;
dl_step_values dl_step_values_at(const dl_train_schedules *s, long step);

// The backbone over the global crops (masks: [G*B, P] or NULL) into
// cls_all [G*B, D] and patch_g [G*B*P, D], then over the local crops into
// cls_all's next L*B rows.
int dl_crops_forward(const dl_vit *vit, const dl_crop_shape *c, const float *global_images, const bool *masks,
                     const float *local_images, dl_vit_train_ws *ws_global, dl_vit_train_ws *ws_local,
                     float *cls_all, float *patch_g, dl_err *err);

// Its backward pass: gradients of cls_all and patch_g into the backbone's grads.
void dl_crops_backward(const dl_vit *vit, const dl_crop_shape *c, dl_vit_train_ws *ws_global,
                       dl_vit_train_ws *ws_local, const float *d_cls_all, const float *d_patch_g, float *grads);

// KoLeo on each global crop's CLS rows, summed over the crops; its gradient
// is added to d_cls_all. scratch: 2 * B * D + 2 * B floats, idx: B ints.
float dl_koleo_global_crops(const dl_crop_shape *c, int dim, float weight, const float *cls_all, float *d_cls_all,
                            float *scratch, int *idx);

// Clipping (when adamw->clip > 0; the norms before clipping go to
// grad_norm[k], else 0), AdamW at step + 1 and the EMA, for each module.
void dl_modules_update(dl_optim_module *mods, int n, const dl_adamw_config *adamw, long step,
                       const dl_step_values *v, double *grad_norm);

#endif
