// Data parallel inside a student group with NCCL: the flat gradient buffer
// all-reduced on the module's own stream (so the compute stream can go on
// with work that does not touch the gradients), and the small sums and
// maxima of the losses (Sinkhorn-Knopp, centering) as a dl_cuda_reduce.
// Rank 0 creates the NCCL unique id; it reaches the other ranks through a
// file rendezvous (model/cuda/rendezvous.h, dl_nccl_dp_init) or through any
// channel the caller has (the student group's broadcast: dl_nccl_dp_init_id).
#ifndef DISTILL_MODEL_CUDA_NCCL_DP_H
#define DISTILL_MODEL_CUDA_NCCL_DP_H

#include <stddef.h>

#include <cuda_runtime.h>
#include <nccl.h>

#include "common/err.h"
#include "model/cuda/cuda_ops.h"

typedef struct dl_nccl_dp {
  ncclComm_t comm;
  cudaStream_t stream;              // the gradient all-reduce's own stream
  cudaEvent_t grads_ready, reduced; // compute -> reduction -> compute ordering
  int rank, world;
  double timeout_s;  // DISTILL_NCCL_TIMEOUT_S (model/cuda/rendezvous.h), default 600
} dl_nccl_dp;

// Joins the group: rank 0 publishes the id at rendezvous_path for `session`
// (a tag unique to this run, e.g. the run directory plus its start time),
// the others wait up to timeout_s for it. Call with the rank's device current.
// The communicator is non-blocking: setup and every collective are polled
// with ncclCommGetAsyncError, and a failure or DISTILL_NCCL_TIMEOUT_S
// seconds without progress abort it (ncclCommAbort) and come back as an
// error, so a dead peer ends the other ranks instead of hanging them.
int dl_nccl_dp_init(dl_nccl_dp *dp, const char *rendezvous_path, const char *session, int rank, int world,
                    double timeout_s, dl_err *err);
// The same with the id already shared: rank 0 made it with dl_nccl_dp_make_id
// and every rank passes those DL_NCCL_ID_BYTES bytes.
#define DL_NCCL_ID_BYTES sizeof(ncclUniqueId)
void dl_nccl_dp_make_id(void *id);
int dl_nccl_dp_init_id(dl_nccl_dp *dp, const void *id, int rank, int world, dl_err *err);
void dl_nccl_dp_free(dl_nccl_dp *dp);

// Starts the average over ranks of grads[0..n) once the work queued so far
// on `compute` is done; returns at once. grads may be any sub-range of the
// flat buffer: a backward pass can start the range of the blocks it has
// finished (the later blocks first) while it computes the earlier ones.
// The ranges run in call order on the module's stream, so finish() after
// the last covers them all.
void dl_nccl_dp_allreduce_grads_start(dl_nccl_dp *dp, float *grads, size_t n, cudaStream_t compute);
// Makes `compute` wait for the all-reduce (nothing blocks on the host).
void dl_nccl_dp_allreduce_grads_finish(dl_nccl_dp *dp, cudaStream_t compute);

// Waits for the work queued on s (the step's end) while polling the
// communicator: 0 when done; -1 with one line, the communicator aborted,
// when a peer failed or nothing finished within the timeout.
int dl_nccl_dp_wait(dl_nccl_dp *dp, cudaStream_t s, dl_err *err);

// The losses' reductions, in-stream on the caller's stream (they are small
// and on the critical path): sum or maximum over ranks, in place.
void dl_nccl_dp_reduce(float *device_data, size_t n, int is_max, void *dp, cudaStream_t s);
static inline dl_cuda_reduce dl_nccl_dp_reducer(dl_nccl_dp *dp) {
  return (dl_cuda_reduce){.fn = dl_nccl_dp_reduce, .ctx = dp};
}

// The group as a training step sees it (model/cuda/train_step_cuda.h).
dl_cuda_data_parallel dl_nccl_dp_data_parallel(dl_nccl_dp *dp);

#endif
