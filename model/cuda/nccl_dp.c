#include "model/cuda/nccl_dp.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef DISTILL_HAVE_NCCL
#define DISTILL_HAVE_NCCL 1
#endif
#include "model/cuda/cuda_check.h"
#include "model/cuda/rendezvous.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void pause_briefly(void) {
  const struct timespec p = {0, 200 * 1000};  // 0.2 ms: cheap next to a step, quick next to a timeout
  nanosleep(&p, NULL);
}

// Ends the communicator after a failure or a timeout: ncclCommAbort stops
// its kernels and proxy threads, so the rank can exit instead of waiting on
// a peer that is gone. Returns -1 with "nccl: WHAT (rank R of W)" in err.
static int abort_with(dl_nccl_dp *dp, dl_err *err, const char *what) {
  if (dp->comm) ncclCommAbort(dp->comm);  // its own status cannot help: we are leaving
  dp->comm = NULL;
  return dl_fail(err, "nccl: %s (rank %d of %d, communicator aborted)", what, dp->rank, dp->world);
}

// A non-blocking communicator's calls return ncclInProgress until their
// host-side part is done; the next call must wait for that. Polls the
// communicator's state until it settles, within the group's timeout.
static int settle(dl_nccl_dp *dp, const char *call, double deadline, dl_err *err) {
  for (;;) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(dp->comm, &state);
    if (r != ncclSuccess) state = r;
    if (state == ncclSuccess) return 0;
    char what[256];
    if (state != ncclInProgress) {
      snprintf(what, sizeof what, "%s: %s", call, ncclGetErrorString(state));
      return abort_with(dp, err, what);
    }
    if (now_s() > deadline) {
      snprintf(what, sizeof what, "%s still in progress after %.0f s (DISTILL_NCCL_TIMEOUT_S)", call, dp->timeout_s);
      return abort_with(dp, err, what);
    }
    pause_briefly();
  }
}

int dl_nccl_dp_init(dl_nccl_dp *dp, const char *rendezvous_path, const char *session, int rank, int world,
                    double timeout_s, dl_err *err) {
  memset(dp, 0, sizeof *dp);
  if (world < 1 || rank < 0 || rank >= world) return dl_fail(err, "nccl: rank %d outside a group of %d", rank, world);
  ncclUniqueId id;
  if (rank == 0) {
    ncclTry(ncclGetUniqueId(&id), err);
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
  if (dl_nccl_timeout_parse(getenv("DISTILL_NCCL_TIMEOUT_S"), &dp->timeout_s, err)) return -1;
  dp->rank = rank;
  dp->world = world;
  ncclUniqueId uid;
  memcpy(&uid, id, sizeof uid);
  // Non-blocking: setup and collectives return at once and report through
  // ncclCommGetAsyncError, so a rank whose peer died can notice and abort.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  const ncclResult_t r = ncclCommInitRankConfig(&dp->comm, world, uid, rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    char what[160];
    snprintf(what, sizeof what, "ncclCommInitRankConfig: %s", ncclGetErrorString(r));
    return abort_with(dp, err, what);
  }
  if (settle(dp, "ncclCommInitRankConfig", now_s() + dp->timeout_s, err)) return -1;
  cudaTry(cudaStreamCreateWithFlags(&dp->stream, cudaStreamNonBlocking), err);
  cudaTry(cudaEventCreateWithFlags(&dp->grads_ready, cudaEventDisableTiming), err);
  cudaTry(cudaEventCreateWithFlags(&dp->reduced, cudaEventDisableTiming), err);
  return 0;
}

void dl_nccl_dp_free(dl_nccl_dp *dp) {
  if (dp->comm) {
    // A healthy group finalizes (flushes) before destroying; a failed one aborts.
    dl_err err;
    const ncclResult_t r = ncclCommFinalize(dp->comm);
    if ((r != ncclSuccess && r != ncclInProgress) || settle(dp, "ncclCommFinalize", now_s() + dp->timeout_s, &err))
      abort_with(dp, &err, "finalize");
    else
      ncclCheck(ncclCommDestroy(dp->comm));
  }
  if (dp->stream) cudaCheck(cudaStreamDestroy(dp->stream));
  if (dp->grads_ready) cudaCheck(cudaEventDestroy(dp->grads_ready));
  if (dp->reduced) cudaCheck(cudaEventDestroy(dp->reduced));
  memset(dp, 0, sizeof *dp);
}

// One collective on a non-blocking communicator: the call, then its
// host-side completion; a failure is recorded (cuda_check.h) with the
// communicator aborted, so the step's end reports it.
static void collective(dl_nccl_dp *dp, ncclResult_t r, const char *call) {
  dl_err err;
  if (!dp->comm) {
    dl_cuda_record_failure("nccl", "the communicator was aborted by an earlier failure", call, __FILE__, __LINE__);
    return;
  }
  if (r != ncclSuccess && r != ncclInProgress) {
    char what[160];
    snprintf(what, sizeof what, "%s: %s", call, ncclGetErrorString(r));
    abort_with(dp, &err, what);
  } else if (settle(dp, call, now_s() + dp->timeout_s, &err) == 0) {
    return;
  }
  dl_cuda_record_failure("nccl", err.msg, call, __FILE__, __LINE__);
}

// Called once per gradient bucket in a step: re-recording grads_ready is
// safe, as cudaStreamWaitEvent waits for the record made just before it.
void dl_nccl_dp_allreduce_grads_start(dl_nccl_dp *dp, float *grads, size_t n, cudaStream_t compute) {
  cudaCheck(cudaEventRecord(dp->grads_ready, compute));
  cudaCheck(cudaStreamWaitEvent(dp->stream, dp->grads_ready, 0));
  // ncclAvg: the mean gradient, as DDP/FSDP produce it.
  collective(dp, dp->comm ? ncclAllReduce(grads, grads, n, ncclFloat32, ncclAvg, dp->comm, dp->stream) : ncclSuccess,
             "ncclAllReduce(gradients)");
  cudaCheck(cudaEventRecord(dp->reduced, dp->stream));
}

void dl_nccl_dp_allreduce_grads_finish(dl_nccl_dp *dp, cudaStream_t compute) {
  cudaCheck(cudaStreamWaitEvent(compute, dp->reduced, 0));
}

void dl_nccl_dp_reduce(float *device_data, size_t n, int is_max, void *ctx, cudaStream_t s) {
  dl_nccl_dp *dp = ctx;
  if (dp->world == 1) return;
  collective(dp,
             dp->comm ? ncclAllReduce(device_data, device_data, n, ncclFloat32, is_max ? ncclMax : ncclSum, dp->comm, s)
                      : ncclSuccess,
             "ncclAllReduce(loss sums)");
}

int dl_nccl_dp_wait(dl_nccl_dp *dp, cudaStream_t s, dl_err *err) {
  const double deadline = now_s() + dp->timeout_s;
  for (;;) {
    const cudaError_t e = cudaStreamQuery(s);
    if (e == cudaSuccess) return 0;
    if (e != cudaErrorNotReady) {
      dl_cuda_failed_call(e, "cudaStreamQuery(step stream)", __FILE__, __LINE__);
      return dl_cuda_take_error(err);
    }
    if (dp->comm) {
      ncclResult_t state = ncclSuccess;
      const ncclResult_t r = ncclCommGetAsyncError(dp->comm, &state);
      if (r != ncclSuccess) state = r;
      if (state != ncclSuccess && state != ncclInProgress) {
        char what[160];
        snprintf(what, sizeof what, "a peer failed during the step: %s", ncclGetErrorString(state));
        return abort_with(dp, err, what);
      }
    }
    if (now_s() > deadline) {
      char what[160];
      snprintf(what, sizeof what, "the step's collectives did not finish within %.0f s (a peer is gone or stuck; "
               "DISTILL_NCCL_TIMEOUT_S)", dp->timeout_s);
      return abort_with(dp, err, what);
    }
    pause_briefly();
  }
}

static void grads_start(void *ctx, float *grads, size_t n, cudaStream_t compute) {
  dl_nccl_dp_allreduce_grads_start(ctx, grads, n, compute);
}
static void grads_finish(void *ctx, cudaStream_t compute) { dl_nccl_dp_allreduce_grads_finish(ctx, compute); }
static int wait_step(void *ctx, cudaStream_t s, dl_err *err) { return dl_nccl_dp_wait(ctx, s, err); }

dl_cuda_data_parallel dl_nccl_dp_data_parallel(dl_nccl_dp *dp) {
  return (dl_cuda_data_parallel){.world = dp->world, .reduce = dl_nccl_dp_reducer(dp), .grads_start = grads_start,
                                 .grads_finish = grads_finish, .wait = wait_step, .ctx = dp};
}
