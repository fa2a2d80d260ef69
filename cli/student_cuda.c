#include "cli/student_cuda.h"

#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime.h>

#include "model/cuda/cuda_check.h"
#include "model/cuda/train_step_cuda.h"
#include "student/gpu_rank.h"
#ifdef DISTILL_HAVE_NCCL
#include "model/cuda/nccl_dp.h"
#endif

struct dl_student_cuda {
  int device;
#ifdef DISTILL_HAVE_NCCL
  dl_nccl_dp dp;  // comm NULL in a group of one
#endif
  dl_cuda_data_parallel group;
};

#ifdef DISTILL_HAVE_NCCL
static int make_nccl_id(void *id, size_t n, void *ctx, dl_err *err) {
  (void)n, (void)ctx;
  dl_nccl_dp_make_id(id);
  return dl_cuda_take_error(err);
}

// Rank 0's id through the group, then the communicator: the step's group.
static int join_nccl(dl_student_cuda *c, dl_group *g, dl_err *err) {
  unsigned char id[DL_NCCL_ID_BYTES];
  if (dl_group_share_id(g, id, sizeof id, make_nccl_id, NULL, err) ||
      dl_nccl_dp_init_id(&c->dp, id, g->rank, g->world, err))
    return -1;
  c->group = dl_nccl_dp_data_parallel(&c->dp);
  return 0;
}
#else
static int join_nccl(dl_student_cuda *c, dl_group *g, dl_err *err) {
  (void)c;
  return dl_fail(err, "a group of %d GPU ranks needs NCCL, which this build lacks", g->world);
}
#endif

dl_student_cuda *dl_student_cuda_open(dl_group *g, int local_rank, int device_count, dl_err *err) {
  const int device = dl_gpu_for_rank(local_rank, 0, device_count, err);
  if (device < 0) return NULL;
  dl_student_cuda *c = dl_calloc(1, sizeof *c);
  c->device = device;
  if (dl_cuda_failed_call(cudaSetDevice(c->device), "cudaSetDevice", __FILE__, __LINE__)) {
    dl_cuda_take_error(err);
    free(c);
    return NULL;
  }
  c->group = (dl_cuda_data_parallel){.world = 1};
  if (g->world > 1 && join_nccl(c, g, err)) {
    free(c);
    return NULL;
  }
  return c;
}

void dl_student_cuda_close(dl_student_cuda *c) {
  if (!c) return;
#ifdef DISTILL_HAVE_NCCL
  if (!dl_cuda_failed_call(cudaSetDevice(c->device), "cudaSetDevice", __FILE__, __LINE__) && c->dp.comm)
    dl_nccl_dp_free(&c->dp);
#endif
  free(c);
  dl_err err;  // nothing to return to: a failure while closing is one line
  if (dl_cuda_take_error(&err)) fprintf(stderr, "distill: student: --device cuda: closing: %s\n", err.msg);
}

int dl_student_cuda_device(const dl_student_cuda *c) { return c->device; }

typedef struct step_state {
  dl_student_cuda *owner;
  dl_cuda_trainer trainer;
} step_state;

// The GPU trainer is made for the host trainer's student and configuration
// (with the group's NCCL data parallel), then takes its whole state (heads,
// moments, EMA, centers, step): every rank starts from the same state.
static void *start(void *user, dl_trainer *host, dl_err *err) {
  dl_student_cuda *c = user;
  cudaCheckOr(cudaSetDevice(c->device), (dl_cuda_take_error(err), NULL));
  step_state *st = dl_malloc(sizeof *st);
  st->owner = c;
  if (dl_cuda_trainer_init(&st->trainer, host->student, &host->cfg, host->teacher_last[0], host->teacher_last[1], 0,
                           DL_DTYPE_BF16, &c->group, err)) {
    free(st);
    return NULL;
  }
  dl_cuda_trainer_upload(&st->trainer, host);
  if (dl_cuda_take_error(err)) {
    free(st);  // the process ends on this error (exit status 1), the device memory with it
    return NULL;
  }
  return st;
}

static int step(void *ctx, dl_trainer *host, const dl_train_batch *batch, dl_step_report *report, dl_err *err) {
  step_state *st = ctx;
  cudaCheckOr(cudaSetDevice(st->owner->device), dl_cuda_take_error(err));
  const int rc = dl_cuda_trainer_step(&st->trainer, batch, report, err);
  host->step = st->trainer.step;
  return rc;
}

static int sync_host(void *ctx, dl_trainer *host, dl_err *err) {
  step_state *st = ctx;
  cudaCheckOr(cudaSetDevice(st->owner->device), dl_cuda_take_error(err));
  dl_cuda_trainer_download(&st->trainer, host);
  return dl_cuda_take_error(err);  // a failed copy: no checkpoint of a half-copied state
}

static void stop(void *ctx) {
  step_state *st = ctx;
  if (!dl_cuda_failed_call(cudaSetDevice(st->owner->device), "cudaSetDevice", __FILE__, __LINE__))
    dl_cuda_trainer_free(&st->trainer);
  free(st);
  dl_err err;  // nothing to return to: a failure while freeing is one line
  if (dl_cuda_take_error(&err)) fprintf(stderr, "distill: student: --device cuda: stopping: %s\n", err.msg);
}

dl_step_backend dl_student_cuda_backend(dl_student_cuda *c) {
  return (dl_step_backend){.name = "cuda", .start = start, .step = step, .sync = sync_host, .stop = stop, .user = c};
}
