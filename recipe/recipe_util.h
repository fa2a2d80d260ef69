// Helpers shared by the recipe's section parsers (recipe.c and one file per
// group of sections): typed reads of YAML scalars that fail with
// FILE:LINE and the key's full name, so every section refuses bad input the
// same way.
#ifndef DISTILL_RECIPE_RECIPE_UTIL_H
#define DISTILL_RECIPE_RECIPE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

#include "recipe/recipe.h"

typedef struct dl_recipe_ctx {
  const char *name;  // the file, as messages name it
  yaml_document_t *doc;
  dl_err *err;
} dl_recipe_ctx;

// A section parser: one (key, value) of its mapping; returns 0 or -1.
typedef int (*dl_recipe_section_fn)(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r);

// "FILE:LINE: message" for the node's line; returns -1.
int dl_recipe_fail(const dl_recipe_ctx *c, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Typed reads; `key` is the full name for messages ("optim.lr").
int dl_recipe_int(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, long lo, long hi, long *out);
int dl_recipe_int32(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, long lo, long hi, int *out);
int dl_recipe_double(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, double lo, double hi,
                     double *out);
int dl_recipe_float(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, double lo, double hi,
                    float *out);
int dl_recipe_bool(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, bool *out);
int dl_recipe_string(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, char *out, size_t cap);
// A [LOW, HIGH] pair of numbers (the caller checks their range).
int dl_recipe_pair(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, double out[2]);
// One of `choices` (NULL-terminated); *out is its index.
int dl_recipe_choice(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, const char *const *choices,
                     int *out);

// The student's sections (recipe_student.c).
int dl_recipe_parse_model(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r);
int dl_recipe_parse_train(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r);
int dl_recipe_parse_optim(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r);
int dl_recipe_parse_ema(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r);
int dl_recipe_parse_checkpoint(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r);
int dl_recipe_parse_hires(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r);
void dl_recipe_student_defaults(dl_recipe *r);
// The eval section (recipe_eval.c) and its checks against the others.
int dl_recipe_parse_eval(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r);
void dl_recipe_eval_defaults(dl_recipe *r);
int dl_recipe_eval_finish(const dl_recipe_ctx *c, dl_recipe *r);
// Cross-key checks after every section was read (model preset, divisibility).
int dl_recipe_student_finish(const dl_recipe_ctx *c, dl_recipe *r);

#endif
