// A model-backed teacher from a recipe (sections data, crops, teacher): the
// backbone (and in prototypes mode the DINO and iBOT heads), the dataset and
// sample stream, the compute engine, and what WELCOME announces about them.
#ifndef DISTILL_TEACHER_TEACHER_MODEL_H
#define DISTILL_TEACHER_TEACHER_MODEL_H

#include <stdint.h>

#include "common/err.h"
#include "recipe/recipe.h"
#include "teacher/engine.h"

typedef struct dl_teacher_model {
  dl_vit vit;
  dl_head dino, ibot;  // loaded for prototypes and both
  dl_dataset *dataset;
  dl_teacher_engine *engine;
  int target_kind;     // 0 features, 1 prototypes, 2 both (teacher_server.h)
  // Widths of the "cls" and "patch" targets (engine.h: the DINO and iBOT
  // bottlenecks in prototypes mode, which may differ, else the backbone's)
  // and the patch tokens per global crop at the recipe's size.
  uint32_t cls_dim, patch_dim, patch_tokens;
  uint64_t weights_hash;              // xxHash64 of the weights file (and the heads file)
  uint64_t heads_hash;                // dl_heads_last_layer_hash of the heads (0: features)
} dl_teacher_model;

// Loads everything the recipe's teacher section names and starts the engine,
// whose forward passes run on `backend` (NULL: the CPU; engine.h).
int dl_teacher_model_open(const dl_recipe *r, const dl_forward_backend *backend, dl_teacher_model *m, dl_err *err);
void dl_teacher_model_close(dl_teacher_model *m);

#endif
