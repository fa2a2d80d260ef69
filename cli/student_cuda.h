// `distill-gpu student --device cuda`: the CUDA training step
// (model/cuda/train_step_cuda.h) as the student service's step backend, on
// this rank's GPU, with the group's gradients and loss sums over NCCL.
// Built only into distill-gpu (DISTILL_HAVE_CUDA_BACKEND).
#ifndef DISTILL_CLI_STUDENT_CUDA_H
#define DISTILL_CLI_STUDENT_CUDA_H

#include "common/err.h"
#include "student/reduce.h"
#include "student/student_run.h"

typedef struct dl_student_cuda dl_student_cuda;

// Takes GPU dl_gpu_for_rank(local_rank, 0, device_count) (student/gpu_rank.h)
// and, in a group of several ranks, forms the NCCL group from rank 0's
// unique id sent through g's broadcast: every rank calls it at the same
// point, once the group has formed. NULL with a message when the broadcast
// fails (a rank is gone).
dl_student_cuda *dl_student_cuda_open(dl_group *g, int local_rank, int device_count, dl_err *err);
void dl_student_cuda_close(dl_student_cuda *c);
int dl_student_cuda_device(const dl_student_cuda *c);

// The step backend (bf16 storage) on c's device and group.
dl_step_backend dl_student_cuda_backend(dl_student_cuda *c);

#endif
