// One rank's step batch: the inputs of `nblocks` consecutive rank blocks
// (rebuilt from the sample stream) and the teacher's targets for them,
// rearranged into the trainer's crop-major order (crop c, image i at row
// c * batch + i, image i = block j's sample s at j * block_size + s).
//
// Targets arrive sample-major within a block, as the teacher computes them
// over the block's global crops in dl_block order: "cls" row s * G + c,
// "patch" rows (s * G + c) * P + p. The two have their own widths: in
// prototypes mode the DINO and the iBOT head's bottlenecks (ViT-g/14: 384
// and 256), in features mode the teacher's width twice.
#ifndef DISTILL_STUDENT_STEP_BATCH_H
#define DISTILL_STUDENT_STEP_BATCH_H

#include "data/sample_stream.h"
#include <stdbool.h>

#include "model/train_step.h"
#include "transport/target_block.h"

typedef struct dl_step_batch {
  int batch, global_crops, local_crops, global_size, local_size, patches;
  int cls_dim, patch_dim;  // widths of the teacher's "cls" and "patch" rows
  bool prototypes;  // targets are head bottlenecks (cfg->mode), not features
  float *global_images, *local_images, *teacher_cls, *teacher_patch;
} dl_step_batch;

void dl_step_batch_init(dl_step_batch *b, const dl_train_config *cfg, int patches, int cls_dim, int patch_dim);
void dl_step_batch_free(dl_step_batch *b);

// Checks that target block `tb` fits (ids, resolution, tensor shapes) and
// copies it and the crops of `blk` into slot j; -1 with a message otherwise.
int dl_step_batch_put(dl_step_batch *b, int j, const dl_block *blk, const dl_target_block *tb, dl_err *err);

dl_train_batch dl_step_batch_view(const dl_step_batch *b);

#endif
