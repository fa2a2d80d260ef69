// The model FLOPs of one distillation training step, per image: what the
// GPU training benchmarks divide by for their model-FLOP utilization (MFU).
// Pure host arithmetic, tested on the CPU.
#ifndef DISTILL_MODEL_CUDA_TRAIN_FLOPS_H
#define DISTILL_MODEL_CUDA_TRAIN_FLOPS_H

#include "model/train_step.h"

// FLOPs of one head's forward pass per row: its linear layers (and the
// weight-normed last layer in prototypes mode).
double dl_head_forward_flops(const dl_head_config *h);

// Per image of the batch: three times the forward FLOPs of everything that
// is trained (the conventional forward + input gradient + weight gradient):
// the student over `global_crops` crops at global_size and `local_crops` at
// local_size (dl_vit_forward_flops), the first head over every crop's CLS,
// the second over the global crops' patches; plus, in prototypes mode, the
// forward of the teacher's frozen last layers on its bottlenecks (width
// teacher_bottleneck) for the same rows. In features mode the heads are the
// two adaptors (student width -> teacher_dim -> teacher_dim). Element-wise
// work and the losses are not counted, as MFU is conventionally defined.
double dl_train_step_flops(const dl_vit_config *student, const dl_train_config *cfg, int teacher_bottleneck);

#endif
