#include "model/cuda/nccl_dp.h"

#include <string.h>

#ifndef DISTILL_HAVE_NCCL
#define DISTILL_HAVE_NCCL 1
#endif
#include "model/cuda/cuda_check.h"
#include "model/cuda/rendezvous.h"

int dl_nccl_dp_init(dl_nccl_dp *dp, const char *rendezvous_path, const char *session, int rank, int world,
                    double timeout_s, dl_err *err) {
  memset(dp, 0, sizeof *dp);
  if (world < 1 || rank < 0 || rank >= world) return dl_fail(err, "nccl: rank %d outside a group of %d", rank, world);
  ncclUniqueId id;
  if (rank == 0) {
    ncclCheck(ncclGetUniqueId(&id));
    if (dl_rendezvous_publish(rendezvous_path, session, &id, sizeof id, err)) return -1;
  } else if (dl_rendezvous_wait(rendezvous_path, session, &id, sizeof id, timeout_s, err)) {
    return -1;
  }
  return dl_nccl_dp_init_id(dp, &id, rank, world, err);
}

void dl_nccl_dp_make_id(void *id) { ncclCheck(ncclGetUniqueId((ncclUniqueId *)id)); }

int dl_nccl_dp_init_id(dl_nccl_dp *dp, const void *id, int rank, int world, dl_err *err) {
  memset(dp, 0, sizeof *dp);
  if (world < 1 || rank < 0 || rank >= world) return dl_fail(err, "nccl: rank %d outside a group of %d", rank, world);
  ncclUniqueId uid;
  memcpy(&uid, id, sizeof uid);
  ncclCheck(ncclCommInitRank(&dp->comm, world, uid, rank));
  cudaCheck(cudaStreamCreateWithFlags(&dp->stream, cudaStreamNonBlocking));
  cudaCheck(cudaEventCreateWithFlags(&dp->grads_ready, cudaEventDisableTiming));
  cudaCheck(cudaEventCreateWithFlags(&dp->reduced, cudaEventDisableTiming));
  dp->rank = rank;
  dp->world = world;
  return 0;
}

void dl_nccl_dp_free(dl_nccl_dp *dp) {
  if (dp->comm) ncclCheck(ncclCommDestroy(dp->comm));
  if (dp->stream) cudaCheck(cudaStreamDestroy(dp->stream));
  if (dp->grads_ready) cudaCheck(cudaEventDestroy(dp->grads_ready));
  if (dp->reduced) cudaCheck(cudaEventDestroy(dp->reduced));
  memset(dp, 0, sizeof *dp);
}

void dl_nccl_dp_allreduce_grads_start(dl_nccl_dp *dp, float *grads, size_t n, cudaStream_t compute) {
  cudaCheck(cudaEventRecord(dp->grads_ready, compute));
  cudaCheck(cudaStreamWaitEvent(dp->stream, dp->grads_ready, 0));
  // ncclAvg: the mean gradient, as DDP/FSDP produce it.
  ncclCheck(ncclAllReduce(grads, grads, n, ncclFloat32, ncclAvg, dp->comm, dp->stream));
  cudaCheck(cudaEventRecord(dp->reduced, dp->stream));
}

void dl_nccl_dp_allreduce_grads_finish(dl_nccl_dp *dp, cudaStream_t compute) {
  cudaCheck(cudaStreamWaitEvent(compute, dp->reduced, 0));
}

void dl_nccl_dp_reduce(float *device_data, size_t n, int is_max, void *ctx, cudaStream_t s) {
  dl_nccl_dp *dp = ctx;
  if (dp->world == 1) return;
  ncclCheck(ncclAllReduce(device_data, device_data, n, ncclFloat32, is_max ? ncclMax : ncclSum, dp->comm, s));
}

static void grads_start(void *ctx, float *grads, size_t n, cudaStream_t compute) {
  dl_nccl_dp_allreduce_grads_start(ctx, grads, n, compute);
}
static void grads_finish(void *ctx, cudaStream_t compute) { dl_nccl_dp_allreduce_grads_finish(ctx, compute); }

dl_cuda_data_parallel dl_nccl_dp_data_parallel(dl_nccl_dp *dp) {
  return (dl_cuda_data_parallel){.world = dp->world, .reduce = dl_nccl_dp_reducer(dp), .grads_start = grads_start,
                                 .grads_finish = grads_finish, .ctx = dp};
}
