// What a recipe makes of the student: its ViT (DINOv2's initialization),
// the training configuration with its schedules, and in prototypes mode the
// teacher's frozen DINO and iBOT last layers.
#ifndef DISTILL_STUDENT_STUDENT_MODEL_H
#define DISTILL_STUDENT_STUDENT_MODEL_H

#include "model/train_step.h"
#include "recipe/recipe.h"

// The student's architecture at a global crop size (the stored position grid
// is global_size / patch, as DINOv2 trains: 224 -> 16).
void dl_student_vit_config(const dl_recipe *r, int global_size, dl_vit_config *cfg);

// DINOv2's initialization (vision_transformer.py init_weights): position
// embeddings trunc-normal 0.02, cls and register tokens normal 1e-6,
// mask_token 0, Linear weights trunc-normal 0.02 with zero biases, the patch
// conv PyTorch's default (uniform +-1/sqrt(fan_in)), LayerNorm 1 and 0,
// LayerScale model.layerscale.
void dl_student_vit_init(dl_vit *vit, const dl_vit_config *cfg, float layerscale, uint64_t seed);

// The teacher's last layers: `dino_head.last_layer.weight_{g,v}` and
// `ibot_head.last_layer.weight_{g,v}` of a safetensors file (other tensors
// are ignored). heads[k].cfg.out_dim is the bottleneck the teacher sends.
// A file without any ibot_head.* tensor is a shared head (DINOv2's
// ibot.separate_head: false): the DINO head's last layer serves iBOT too, as
// the teacher's dl_heads_load does, and a line on stderr says so.
int dl_student_load_teacher_heads(const char *path, dl_head heads[2], dl_err *err);

// The training configuration for `world` ranks at a global crop size, with
// the main phase's schedules. teacher_heads may be NULL in features mode.
void dl_student_train_config(const dl_recipe *r, int world, int global_size, const dl_head *teacher_heads,
                             int student_dim, dl_train_config *cfg);

// A run has two phases (docs/recipes.md, hires): the main phase, steps
// [0, train.steps) at crops.global_size, then the high-resolution phase,
// steps [train.steps, train.steps + hires.steps) at hires.size, as DINOv2
// resumed training at high resolution and DINOv3 adapts in a run of its own.
long dl_student_total_steps(const dl_recipe *r);

// The main phase's schedules (DINOv2's, over train.steps; the learning rate
// scaled by sqrt(batch / 1024) with optim.lr_scaling sqrt).
void dl_student_main_schedules(const dl_recipe *r, dl_train_schedules *s);
// The high-resolution phase's own schedules, functions of the run's step
// that start at train.steps: learning rate warmup from 0 to hires.lr (scaled
// like optim.lr) over hires.warmup steps, then a cosine to hires.min_lr; EMA
// momentum a cosine from hires.momentum to hires.momentum_end; weight decay
// and teacher temperature constant. The last layer is not frozen.
void dl_student_hires_schedules(const dl_recipe *r, dl_train_schedules *s);
// Turns a configuration from dl_student_train_config into the
// high-resolution phase's: global and local crop sizes and schedules.
void dl_student_hires_config(const dl_recipe *r, dl_train_config *cfg);

// The share of the EMA after `steps_done` steps that comes from
// high-resolution steps, from the schedules: 1 - the product of the EMA
// momentum over the phase's steps done (the weight the EMA of the main
// phase keeps). 0 before the phase; the exported model's share is that of
// dl_student_total_steps(r).
double dl_student_ema_hires_share(const dl_recipe *r, long steps_done);

#endif
