// The recipe sections of the teacher side:
//   teacher:   what `distill teacher --recipe R` serves
//   pretrain:  the self-distillation run of `distill pretrain` (the demo teacher)
// Parsed by recipe_teacher.c; recipe.c dispatches the two section names here.
#ifndef DISTILL_RECIPE_RECIPE_TEACHER_H
#define DISTILL_RECIPE_RECIPE_TEACHER_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

#define DL_RECIPE_PATH_MAX 1024

typedef enum dl_target_kind { DL_TARGET_FEATURES = 0, DL_TARGET_PROTOTYPES = 1, DL_TARGET_BOTH = 2 } dl_target_kind;

typedef struct dl_recipe_teacher {
  bool present;                    // the recipe has a teacher section
  char weights[DL_RECIPE_PATH_MAX];  // backbone .safetensors (required)
  char heads[DL_RECIPE_PATH_MAX];    // DINO + iBOT heads (required for prototypes and both)
  dl_target_kind target;           // features (default), prototypes, or both
  int batch;                       // images per forward pass (default 32)
  int cache_mb;                    // block cache budget (default 1024)
  char codec[128];                 // codec spec (transport/codec.h), default "f32"
  int zstd_level;                  // default 0
  int workers;                     // decode+augment threads (default 2)
  // Sharing among families (docs/operations.md, "Sharing"):
  char lead_policy[16];            // pace (default), spill or free
  int max_lead_mb;                 // pacing bound; 0: half of cache_mb
  double family_grace_s;           // a silent family still holds the others this long (default 30)
  char spill_dir[DL_RECIPE_PATH_MAX];  // the spill store (policy spill)
  int spill_mb;                    // its budget
} dl_recipe_teacher;

typedef struct dl_recipe_pretrain {
  bool present;
  // model
  int patch, dim, depth, heads, mlp_ratio;
  double layerscale;
  // heads (DINO and iBOT alike)
  int head_hidden, head_bottleneck, head_prototypes, head_layers;
  // optimization
  int batch;                       // images per step (a multiple of data.block_size)
  long steps, warmup_steps, freeze_last_layer_steps, teacher_temp_warmup_steps;
  double lr, min_lr, weight_decay, weight_decay_end, momentum, momentum_end;
  double teacher_temp_start, teacher_temp, student_temp;
  double clip, layer_decay, patch_embed_lr_mult;
  // losses
  double dino_weight, ibot_weight, koleo_weight;
  double mask_probability, mask_ratio_lo, mask_ratio_hi;
  int sk_iters;
  // logging and saving
  int log_every, save_every;
} dl_recipe_pretrain;

void dl_recipe_teacher_defaults(dl_recipe_teacher *t, dl_recipe_pretrain *p);

// Parses one section's mapping node. `doc` and `node` are libyaml's
// (yaml_document_t *, yaml_node_t *), kept opaque here so that this header
// does not pull in yaml.h. Errors are FILE:LINE: message.
int dl_recipe_parse_teacher(const char *file, void *doc, const void *node, dl_recipe_teacher *out, dl_err *err);
int dl_recipe_parse_pretrain(const char *file, void *doc, const void *node, dl_recipe_pretrain *out, dl_err *err);

#endif
