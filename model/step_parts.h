// The pieces that every training loop runs the same way: the distillation
// step (model/train_step.c) and self-distillation pretraining
// (teacher/pretrain.c). Both hold a backbone and two heads as three optimizer
// modules, run the backbone over crop-major global and local crops, add
// KoLeo on the global CLS, and end with clipping, AdamW and the EMA.
#ifndef DISTILL_MODEL_STEP_PARTS_H
#define DISTILL_MODEL_STEP_PARTS_H

#include <stdbool.h>
#include <stddef.h>

#include "model/heads.h"
#include "model/optim.h"
#include "model/schedules.h"
#include "model/vit_train.h"

// Aligned, zeroed floats (at least one, so a zero-sized buffer is valid).
float *dl_zeros(size_t n);

// The crops of one step, crop-major (crop c, image i at row c * batch + i).
typedef struct dl_crop_shape {
  int batch, global_crops, local_crops, global_size, local_size;
} dl_crop_shape;

// One step's backbone outputs over the crops, their gradients and KoLeo's
// work space: what both training loops hold alike.
typedef struct dl_crop_buffers {
  float *cls_all, *d_cls_all;  // [(G + L) * B, D]: every crop's CLS row, crop-major
  float *patch_g, *d_patch_g;  // [G * B * patches, D]: the global crops' patch rows
  float *koleo_scratch;        // 2 * B * D + 2 * B
  int *koleo_idx;              // B
} dl_crop_buffers;
void dl_crop_buffers_init(dl_crop_buffers *b, const dl_crop_shape *c, int dim, int patches);
void dl_crop_buffers_free(dl_crop_buffers *b);

// The three optimizer modules of a step: the backbone, then the two heads.
void dl_modules_init(dl_optim_module mods[3], dl_vit *backbone, dl_head heads[2], const dl_adamw_config *adamw);

// The schedules' values at one step.
typedef struct dl_step_values {
  double lr, wd, momentum, teacher_temp, last_layer_lr;
} dl_step_values;
dl_step_values dl_step_values_at(const dl_train_schedules *s, long step);

// The backbone over the global crops (masks: [G*B, P] or NULL) into
// b->cls_all's first G*B rows and b->patch_g, then over the local crops into
// cls_all's next L*B rows.
int dl_crops_forward(const dl_vit *vit, const dl_crop_shape *c, const float *global_images, const bool *masks,
                     const float *local_images, dl_vit_train_ws *ws_global, dl_vit_train_ws *ws_local,
                     dl_crop_buffers *b, dl_err *err);

// Its backward pass: b->d_cls_all and b->d_patch_g into the backbone's grads.
void dl_crops_backward(const dl_vit *vit, const dl_crop_shape *c, dl_vit_train_ws *ws_global,
                       dl_vit_train_ws *ws_local, const dl_crop_buffers *b, float *grads);

// KoLeo on each global crop's CLS rows, summed over the crops; its gradient
// is added to b->d_cls_all.
float dl_koleo_global_crops(const dl_crop_shape *c, int dim, float weight, dl_crop_buffers *b);

// Clipping (when adamw->clip > 0; the norms before clipping go to
// grad_norm[k], else 0), AdamW at step + 1 and the EMA, for each module.
void dl_modules_update(dl_optim_module *mods, int n, const dl_adamw_config *adamw, long step,
                       const dl_step_values *v, double *grad_norm);

#endif
