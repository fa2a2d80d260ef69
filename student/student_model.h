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

// The training configuration for `world` ranks at a global crop size.
// teacher_heads may be NULL in features mode.
void dl_student_train_config(const dl_recipe *r, int world, int global_size, const dl_head *teacher_heads,
                             int student_dim, dl_train_config *cfg);

#endif
