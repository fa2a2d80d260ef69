// Recipes: one YAML file describing a distillation run. This loader knows the
// `data` and `crops` sections; the service adds its sections here. Unknown
// keys and bad values are refused with FILE:LINE, so a typo never silently
// falls back to a default.
#ifndef DISTILL_RECIPE_RECIPE_H
#define DISTILL_RECIPE_RECIPE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "data/augment.h"
#include "recipe/recipe_teacher.h"

typedef struct dl_recipe {
  // data:
  char dataset[1024];   // KIND:PATH (data/dataset.h), required
  uint64_t seed;        // default 0
  int block_size;       // default 32
  int loader_threads;   // default 2
  // crops: (defaults: DINOv2's)
  dl_crop_spec crops;
  // teacher:, pretrain: (recipe_teacher.h)
  dl_recipe_teacher teacher;
  dl_recipe_pretrain pretrain;
} dl_recipe;

int dl_recipe_load(const char *path, dl_recipe *out, dl_err *err);
// The same from memory; `name` stands for the file in messages.
int dl_recipe_parse(const char *name, const uint8_t *text, size_t n, dl_recipe *out, dl_err *err);

#endif
