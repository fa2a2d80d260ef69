// `distill-gpu teacher --recipe R --device cuda`: the teacher engine's
// forward passes (the backbone, and the heads' bottlenecks for the
// prototypes and both target kinds) on the GPU in bf16, with the outputs
// copied back to the host in float32 for encoding (teacher/engine.h).
// Built only into distill-gpu (DISTILL_HAVE_CUDA_BACKEND).
#ifndef DISTILL_CLI_TEACHER_CUDA_H
#define DISTILL_CLI_TEACHER_CUDA_H

#include <stdbool.h>

#include "teacher/engine.h"

// Runs on the device given to dl_teacher_cuda_use_gpu (distill-gpu teacher
// --gpu N, default the local rank), else the current one; refuses at start
// a backbone the CUDA attention cannot run. Every CUDA, cuBLAS failure comes
// back as the call's dl_err (model/cuda/cuda_check.h).
extern const dl_forward_backend dl_teacher_cuda_backend;

// Before the engine starts: the device the backend's start() makes current.
void dl_teacher_cuda_use_gpu(int device);
// Whether the last start() failed in CUDA or cuBLAS (exit 1), not on the
// model (a refused head dimension: exit 2).
bool dl_teacher_cuda_start_failed(void);

#endif
