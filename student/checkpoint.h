// Training checkpoints (DESIGN.md section 6): one safetensors file per
// checkpoint, `ckpt-STEP.safetensors` in the checkpoint folder, holding the
// student backbone and both heads with their EMA and Adam moments, the
// centers, and as metadata the step, the group's block cursor, the model
// shape, the recipe text and an xxHash64 of every tensor byte (so a
// corrupted file is refused, not trained on). Nothing depends on the rank
// count: ranks hold the same parameters and the cursor counts the group's
// blocks. Written atomically (temporary file, fsync, rename); then the EMA
// backbone is exported in the official DINOv2 names (`student-ema-STEP.
// safetensors`, loadable by `distill embed`), `latest` names the checkpoint,
// and checkpoints beyond the last `keep` are removed with their exports.
//
// The trainer draws no random numbers after initialization (distillation
// masks nothing and has no drop path) and the data's randomness is a pure
// function of (seed, sample), so the block cursor is the whole random state.
#ifndef DISTILL_STUDENT_CHECKPOINT_H
#define DISTILL_STUDENT_CHECKPOINT_H

#include <stdint.h>

#include "model/safetensors.h"
#include "model/train_step.h"

#define DL_CKPT_PATH_MAX 1200

typedef struct dl_checkpoint_info {
  long step;
  uint64_t cursor;        // blocks the group has consumed
  dl_vit_config vit;      // the backbone's shape (its position grid changes in the high-resolution phase)
  int global_size;        // global crop size the checkpoint was trained at
  int prototypes;         // target kind
  // For the export's metadata (student/export_catalog.h reads it back):
  bool hires;             // written in the high-resolution phase
  long images_seen;       // step x train.batch
  bool final;             // the run's last step
} dl_checkpoint_info;

int dl_checkpoint_write(const char *dir, const dl_trainer *t, const dl_checkpoint_info *info, const char *recipe_text,
                        int keep, char *written_path, dl_err *err);

// An opened, verified checkpoint (the file stays mapped until closed).
typedef struct dl_checkpoint {
  dl_safetensors st;
  dl_checkpoint_info info;
  char path[DL_CKPT_PATH_MAX];
} dl_checkpoint;

// Opens and verifies a checkpoint (header, every tensor's presence by the
// metadata, the content hash); -1 with a message naming the file and the fault.
int dl_checkpoint_open(const char *path, dl_checkpoint *ck, dl_err *err);
// Copies the state into a trainer built for ck->info.vit and the same recipe;
// -1 when a tensor's shape differs.
int dl_checkpoint_restore(const dl_checkpoint *ck, dl_trainer *t, dl_err *err);
void dl_checkpoint_close(dl_checkpoint *ck);

// Checkpoints of a folder to try in order: the one `latest` names, then the
// others from the newest step down. Returns their count (paths malloc'd).
int dl_checkpoint_candidates(const char *dir, char ***paths);
void dl_checkpoint_candidates_free(char **paths, int n);

// Steps of the files PREFIX-STEP SUFFIX in dir (e.g. "ckpt", ".safetensors";
// "student-ema", ".record"), newest first; *steps malloc'd (also when 0).
int dl_checkpoint_list_steps(const char *dir, const char *prefix, const char *suffix, long **steps);

// The EMA backbone in the official DINOv2 names, with metadata (NULL: none).
int dl_checkpoint_export_ema(const char *path, const dl_trainer *t, const dl_st_meta *meta, int nmeta, dl_err *err);

#endif
