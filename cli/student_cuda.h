// `distill-gpu student --device cuda`: the CUDA training step
// (model/cuda/train_step_cuda.h) as the student service's step backend.
// Built only into distill-gpu (DISTILL_HAVE_CUDA_BACKEND).
#ifndef DISTILL_CLI_STUDENT_CUDA_H
#define DISTILL_CLI_STUDENT_CUDA_H

#include "common/err.h"
#include "student/student_run.h"

// 0 when a CUDA device is usable, else -1 with the runtime's reason.
int dl_student_cuda_available(dl_err *err);

// bf16 storage, one rank (the group's NCCL wiring is not done yet).
extern const dl_step_backend dl_student_cuda_backend;

#endif
