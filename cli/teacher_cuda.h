// `distill-gpu teacher --recipe R --device cuda`: the teacher engine's
// forward passes (the backbone, and the heads' bottlenecks for the
// prototypes and both target kinds) on the GPU in bf16, with the outputs
// copied back to the host in float32 for encoding (teacher/engine.h).
// Built only into distill-gpu (DISTILL_HAVE_CUDA_BACKEND).
#ifndef DISTILL_CLI_TEACHER_CUDA_H
#define DISTILL_CLI_TEACHER_CUDA_H

#include "teacher/engine.h"

// Runs on the device current when the engine starts (CUDA_VISIBLE_DEVICES
// picks it); refuses at start a backbone the CUDA attention cannot run.
extern const dl_forward_backend dl_teacher_cuda_backend;

#endif
