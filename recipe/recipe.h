// Recipes: one YAML file describing a distillation run (docs/recipes.md
// explains every key). Sections: `data` and `crops` (the sample stream),
// `model`, `train`, `optim`, `ema`, `checkpoint`, `hires` (the student;
// recipe_student.c), `eval` (recipe_eval.c). Unknown keys and bad values are refused with FILE:LINE,
// so a typo never silently falls back to a default.
#ifndef DISTILL_RECIPE_RECIPE_H
#define DISTILL_RECIPE_RECIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "data/augment.h"
#include "recipe/recipe_teacher.h"

#define DL_RECIPE_PATH_MAX 1024

// model: the student's architecture (a preset by `size`, keys override it).
typedef struct dl_recipe_model {
  int size;               // preset index (small, base, large, giant) or -1
  int patch, dim, depth, heads, ffn_hidden, registers;
  int swiglu;             // 0 MLP, 1 SwiGLU
  int interp;             // -1: by the released models' rule (registers: antialias), else dl_interp_mode
  float layerscale;       // LayerScale init (1e-5)
  float drop_path;        // only 0 (distillation uses none)
  uint64_t seed;          // initialization of the student and its heads
} dl_recipe_model;

// train: the loop, the targets and the losses.
typedef struct dl_recipe_train {
  int prototypes;         // target kind: 0 features, 1 prototypes
  int batch;              // images per step over the whole group
  long steps;             // steps of the main phase (the high-resolution phase follows: hires.steps)
  int teacher_dim;        // features: the teacher's width (0: from the first block)
  char teacher_heads[DL_RECIPE_PATH_MAX];  // prototypes: safetensors with dino_head.* / ibot_head.*
  int head_hidden, head_layers;            // the student's DINO/iBOT heads
  float dino_weight, ibot_weight, koleo_weight, feat_cls_weight, feat_cos_weight, feat_l1_weight;
  float student_temp, teacher_temp, teacher_temp_start;
  long teacher_temp_warmup;
  int sinkhorn;           // 1 Sinkhorn-Knopp, 0 softmax centering
  float center_momentum;
  int sk_iters;
  int window;             // blocks requested ahead per rank
  // iBOT's patches (prototypes): DINOv3's selection or every patch.
  int ibot_selected;                             // 1 selected (default), 0 all
  float ibot_mask_probability;                   // share of the global crops with selected patches (0.5)
  float ibot_mask_ratio_lo, ibot_mask_ratio_hi;  // their ratios, stratified (0.1, 0.5)
} dl_recipe_train;

// optim: AdamW and its schedules.
typedef struct dl_recipe_optim {
  double lr, min_lr, warmup_lr;  // base lr before the sqrt(batch / 1024) scaling
  int scale_lr;                  // 1: lr * sqrt(batch / 1024)
  long warmup;
  double weight_decay, weight_decay_end;
  float layer_decay, patch_embed_lr_mult, clip, beta1, beta2, eps;
  long freeze_last_layer;
} dl_recipe_optim;

typedef struct dl_recipe_ema {
  double momentum, momentum_end;
} dl_recipe_ema;

typedef struct dl_recipe_checkpoint {
  char dir[DL_RECIPE_PATH_MAX];  // empty: OUT/checkpoints
  long every_steps;              // 0: not by steps
  double every_minutes;          // 0: not by time
  int keep;                      // the last N training checkpoints, and their exports
  int keep_best;                 // also the best M exports by best_metric (with an eval section)
  int best_metric;               // dl_eval_metric
} dl_recipe_checkpoint;

// eval: each EMA export evaluated on held-out data while training goes on
// (student/export_eval.h), by `distill knn` (and `distill linear`) run as a
// separate, lower-priority process on rank 0.
typedef enum { DL_EVAL_KNN_TOP1 = 0, DL_EVAL_LINEAR_TOP1 = 1 } dl_eval_metric;
typedef struct dl_recipe_eval {
  char train[1024];              // labelled set the k-NN votes from (and the probe trains on)
  char test[1024];               // held-out labelled set; empty: no eval section
  int limit_train, limit_test;   // evenly spaced subsets (0: all)
  int size, resize;              // the evaluation transform: center crop, shorter side (0: size * 256 / 224)
  int knn_k;                     // 20
  float knn_temperature;         // 0.07
  int linear;                    // 1: also the linear probe
  long every_exports;            // evaluate every Nth export (1), or
  long every_steps;              // the first export at least this many steps after the last one evaluated
  int threads;                   // the evaluation's OpenMP threads (1)
  bool present;                  // the recipe has an eval section
} dl_recipe_eval;

// hires: the high-resolution phase, steps [train.steps, train.steps +
// hires.steps), with its own schedules (student/student_model.h). A key left
// out is derived by dl_recipe_student_finish from DINOv3's high-resolution
// adaptation (docs/recipes.md): lr optim.lr / 4, warmup a third of the
// phase, then constant (min_lr = the scaled peak), EMA momentum 0.999,
// weight decay optim.weight_decay_end, teacher_temp train.teacher_temp,
// local crops crops.local_size.
typedef struct dl_recipe_hires {
  long steps;                     // 0: no high-resolution phase
  int size;                       // global crop size in that phase (518)
  int local_size;                 // local crop size in that phase (the student's own: not in the stream identity)
  double lr;                      // peak before optim.lr_scaling, like optim.lr
  double min_lr;                  // the cosine's final value (not scaled, like optim.min_lr)
  long warmup;                    // linear warmup from 0 to the peak
  double weight_decay;            // constant
  double momentum, momentum_end;  // EMA momentum: cosine from momentum to momentum_end
  float teacher_temp;             // constant
} dl_recipe_hires;

typedef struct dl_recipe {
  // data:
  char dataset[1024];   // KIND:PATH (data/dataset.h), required
  uint64_t seed;        // default 0
  int block_size;       // default 32
  int loader_threads;   // default 2
  // crops: (defaults: DINOv2's)
  dl_crop_spec crops;
  // The student's sections.
  dl_recipe_model model;
  dl_recipe_train train;
  dl_recipe_optim optim;
  dl_recipe_ema ema;
  dl_recipe_checkpoint checkpoint;
  dl_recipe_hires hires;
  dl_recipe_eval eval;
  bool has_model, has_train;  // which student sections the file has
  // teacher:, pretrain: (recipe_teacher.h)
  dl_recipe_teacher teacher;
  dl_recipe_pretrain pretrain;
} dl_recipe;

// Parses the file, then resolves its file paths (dl_recipe_resolve_paths).
int dl_recipe_load(const char *path, dl_recipe *out, dl_err *err);
// The same from memory; `name` stands for the file in messages. Paths stay
// as written.
int dl_recipe_parse(const char *name, const uint8_t *text, size_t n, dl_recipe *out, dl_err *err);

// Relative file paths in a recipe (teacher.weights, teacher.heads,
// train.teacher_heads) name files next to the recipe, so that a recipe and
// its files move together whatever the working folder: each relative path is
// joined to the folder of recipe_path. Absolute paths and data.dataset (a
// dataset spec) are left as they are.
int dl_recipe_resolve_paths(dl_recipe *r, const char *recipe_path, dl_err *err);

// What a teacher and a student must agree on: the sample stream, i.e. the
// recipe's data section (dataset, seed, block size) and crops section. The
// text is "key=value;key=value..." in a fixed order (a teacher refusing a
// student names the keys that differ); the hash is its xxHash64. Both go in
// HELLO. Returns the text's length (cut to n - 1).
#define DL_RECIPE_STREAM_TEXT_MAX 2048
size_t dl_recipe_stream_text(const dl_recipe *r, char *buf, size_t n);
uint64_t dl_recipe_stream_hash(const dl_recipe *r);

// Per-rank sizes of a group of `world` ranks; -1 with a message when the
// batch does not split into whole blocks per rank.
int dl_recipe_rank_blocks(const dl_recipe *r, int world, int *blocks_per_rank, dl_err *err);

#endif
