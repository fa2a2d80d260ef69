// DINOv2 self-distillation from scratch (the demo teacher): the teacher is
// the EMA of the student; DINO cross-entropy on the CLS head outputs of every
// crop against the teacher's Sinkhorn-Knopp targets of the other global
// crops, iBOT cross-entropy on the masked patches of the global crops (the
// student sees mask_token there, the teacher the real patch), KoLeo on the
// student's global-crop CLS. Built from the training engine's pieces
// (model/vit_train.h, heads.h, losses.h, optim.h, schedules.h).
//
// Differences from the official code, and why: patches are masked uniformly
// at random instead of in blocks (the demo's grid is 4 x 4 patches, too small
// for block shapes); the per-image mask ratios are spread over
// [mask_ratio_lo, mask_ratio_hi] as DINOv2's collate does.
#ifndef DISTILL_TEACHER_PRETRAIN_H
#define DISTILL_TEACHER_PRETRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "model/heads.h"
#include "model/losses.h"
#include "model/optim.h"
#include "model/schedules.h"
#include "model/step_parts.h"
#include "model/vit_train.h"

typedef struct dl_pretrain_config {
  int batch;                      // images per step
  int global_crops, local_crops;  // 2 and up to 8
  int global_size, local_size;
  dl_head_config dino_head, ibot_head;
  dl_loss_weights weights;        // dino, ibot, koleo
  float student_temp;             // 0.1
  int sk_iters;                   // 3
  float mask_probability;         // share of global crops that are masked (0.5)
  float mask_ratio_lo, mask_ratio_hi;  // 0.1, 0.5
  dl_adamw_config adamw;
  dl_train_schedules sched;
  uint64_t seed;                  // masks and head initialization
} dl_pretrain_config;

typedef struct dl_pretrain_report {
  float total, dino, ibot, koleo;
  int masked;  // patches masked in this step
  double lr, wd, momentum, teacher_temp;
} dl_pretrain_report;

typedef struct dl_pretrainer {
  dl_pretrain_config cfg;
  dl_vit *student;             // not owned; trained in place
  dl_vit teacher;              // a view: the student's layout over mods[0].ema
  dl_head heads[2];            // student DINO and iBOT heads
  dl_head teacher_heads[2];    // views over mods[1..2].ema
  dl_optim_module mods[3];
  dl_vit_train_ws ws_global, ws_local;
  dl_vit_workspace ws_teacher;
  dl_head_ws head_ws[2], teacher_head_ws[2];
  long step;
  int patches;
  bool *masks;                                    // [G*B, P]
  int *mask_rows;                                 // patch rows (G*B*P indexing) that are masked
  dl_crop_buffers crops;                          // backbone outputs and their gradients
  float *masked_x, *d_masked_x;
  float *t_cls_raw, *t_patch_raw, *t_masked_x;    // teacher backbone outputs
  float *logits_cls, *d_logits_cls, *logits_patch, *d_logits_patch, *q_cls, *q_patch;
  float *ibot_w, *scratch;                        // scratch: max(K0, K1) floats
} dl_pretrainer;

// student: an initialized model (its parameters are trained in place).
int dl_pretrainer_init(dl_pretrainer *t, dl_vit *student, const dl_pretrain_config *cfg, dl_err *err);
void dl_pretrainer_free(dl_pretrainer *t);

// One step on a crop-major batch (crop c, image i at row c * batch + i).
int dl_pretrainer_step(dl_pretrainer *t, const float *global_images, const float *local_images,
                       dl_pretrain_report *r, dl_err *err);

#endif
