// One distillation training step on the CPU, DESIGN.md section 6: the
// student's forward and backward passes over the global and local crops,
// its heads, the losses against the teacher's targets, clipping, AdamW and
// the EMA. The teacher is not run here: a step receives what the teacher
// sends (normalized bottlenecks in prototypes mode, features in features
// mode) and, in prototypes mode, applies the teacher's frozen last layers.
#ifndef DISTILL_MODEL_TRAIN_STEP_H
#define DISTILL_MODEL_TRAIN_STEP_H

#include <stdbool.h>

#include "model/heads.h"
#include "model/ibot_masks.h"
#include "model/losses.h"
#include "model/optim.h"
#include "model/step_parts.h"
#include "model/schedules.h"
#include "model/vit_train.h"

typedef enum dl_train_mode { DL_TRAIN_PROTOTYPES, DL_TRAIN_FEATURES } dl_train_mode;

typedef struct dl_train_config {
  dl_train_mode mode;
  int batch;                       // images per rank
  int global_crops, local_crops;   // 2 and 8
  int global_size, local_size;     // 224 (518 late) and 98
  dl_loss_weights weights;
  float student_temp;              // 0.1
  bool sinkhorn;                   // Sinkhorn-Knopp targets, else softmax centering
  float center_momentum;           // 0.9
  int sk_iters;                    // 3
  dl_head_config dino_head, ibot_head;       // prototypes mode: the student's heads
  dl_ibot_select ibot;             // prototypes mode: the patches iBOT scores (zeroed: every patch)
  int teacher_dim;                 // features mode: the adaptors' output width
  dl_adamw_config adamw;
  dl_train_schedules sched;
  dl_reduce reduce;                // data-parallel sums (fn NULL: one rank)
  int world;                       // ranks whose gradients are averaged through reduce (0 or 1: none)
} dl_train_config;

// What the teacher sends for one batch, crop-major (crop c, image i at row
// c * batch + i).
typedef struct dl_train_batch {
  const float *global_images;  // [G * batch, 3, global_size, global_size]
  const float *local_images;   // [L * batch, 3, local_size, local_size] (NULL when L == 0)
  const float *teacher_cls;    // prototypes: [G * batch, DINO bottleneck]; features: [G * batch, teacher_dim]
  const float *teacher_patch;  // [G * batch * P, iBOT bottleneck (its own width) or teacher_dim]
} dl_train_batch;

// Where a CPU step's time goes (seconds, dl_step_report.phase_s): the
// backbone's forward over every crop; the teacher's last layers and their
// targets (Sinkhorn-Knopp or centering); the student heads forward and
// backward with the losses; the backbone's backward; clipping, AdamW and EMA.
typedef enum {
  DL_PHASE_FORWARD,
  DL_PHASE_TARGETS,
  DL_PHASE_HEADS,
  DL_PHASE_BACKWARD,
  DL_PHASE_UPDATE,
  DL_STEP_PHASES
} dl_step_phase;
extern const char *const dl_step_phase_names[DL_STEP_PHASES];

typedef struct dl_step_report {
  float total, dino, ibot, koleo, feat_cls, feat_cos, feat_l1;  // weighted terms, total their sum
  double grad_norm[3];  // before clipping: backbone, head 0, head 1
  double lr, wd, momentum, teacher_temp;
  double phase_s[DL_STEP_PHASES];  // the CPU trainer's wall time per phase (0 elsewhere)
} dl_step_report;

typedef struct dl_trainer {
  dl_train_config cfg;
  dl_vit *student;                         // not owned; its params are trained in place
  dl_head heads[2];                        // DINO + iBOT heads, or CLS + patch adaptors
  const dl_head *teacher_last[2];          // prototypes: the teacher's DINO and iBOT heads (frozen)
  dl_optim_module mods[3];                 // backbone, heads[0], heads[1]
  dl_vit_train_ws ws_global, ws_local;
  dl_head_ws head_ws[2], teacher_ws[2];
  long step;
  int patches;                             // patch tokens per global crop
  dl_crop_buffers crops;                   // backbone outputs and their gradients
  float *out_cls, *out_patch, *d_out_cls, *d_out_patch;  // head outputs and gradients
  float *t_cls, *t_patch;                  // teacher targets (probabilities or features)
  float *center[2], *scratch, *ibot_w;    // scratch: 2 * max(K0, K1) + 2 floats
  double targets_s;                        // this step's time in teacher_targets so far
  int ibot_rows;                           // rows iBOT scores per step: the selection's size, or every patch
  bool *ibot_masks;                        // [G * B, patches]: this step's selection (selected mode)
  int *ibot_index;                         // [ibot_rows]: the selected rows of crops.patch_g
  float *sel_x, *d_sel_x, *sel_t;          // those rows of patch_g, their gradient, the teacher's bottlenecks
} dl_trainer;

// Shared with the CUDA step (model/cuda/train_step_cuda.h): the checks of
// a configuration against the student and the teacher's heads, the heads'
// creation (DINOv2's initialization, seeds `seed` and `seed + 1`); the
// schedules' values come from dl_step_values_at (model/step_parts.h).
int dl_train_config_check(const dl_vit *student, const dl_train_config *cfg, const dl_head *teacher_dino,
                          const dl_head *teacher_ibot, dl_err *err);
void dl_trainer_heads_init(dl_head heads[2], const dl_vit *student, const dl_train_config *cfg,
                           unsigned long long seed);
// The rows the iBOT head scores per step, global crop patches of `patches`
// each: in prototypes mode with cfg->ibot.selected, the selection's size
// (dl_ibot_selected_upper_bound, the same every step), else every patch.
int dl_trainer_ibot_rows(const dl_train_config *cfg, int patches);

// Heads are created with DINOv2's initialization (seeded); the EMA starts
// as a copy of every parameter.
int dl_trainer_init(dl_trainer *t, dl_vit *student, const dl_train_config *cfg, const dl_head *teacher_dino,
                    const dl_head *teacher_ibot, unsigned long long seed, dl_err *err);
void dl_trainer_free(dl_trainer *t);

// One step at t->step (then incremented): schedules, forward, losses,
// backward, clipping, AdamW, EMA (and the centers in centering mode).
// A zeroed report holding the schedules' values v of its step (the CPU and
// the CUDA step both start from it).
void dl_step_report_start(dl_step_report *r, const dl_step_values *v);

int dl_trainer_step(dl_trainer *t, const dl_train_batch *batch, dl_step_report *report, dl_err *err);

// The iBOT part of a prototypes step, as dl_trainer_step runs it (the parity
// test drives it alone with given masks). dl_trainer_ibot_select: this
// step's selection, drawn for t->step (masks NULL) or taken from masks
// [G * B, patches] (their count must be t->ibot_rows); returns the rows
// selected, -1 when the masks' count differs (every patch when not selected).
// dl_trainer_ibot_loss: the loss on t->crops.patch_g, which (DINOv3's
// distillation) scores the selected rows only: the iBOT head, the teacher's
// last layer and Sinkhorn-Knopp on those rows, weight 1 / n for a crop with n
// of them, divided by every global crop; its gradient goes to the iBOT
// head's grads and to t->crops.d_patch_g (0 on the rows not selected).
int dl_trainer_ibot_select(dl_trainer *t, const bool *masks);
float dl_trainer_ibot_loss(dl_trainer *t, const dl_train_batch *batch, float temp);

#endif
