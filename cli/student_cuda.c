#include "cli/student_cuda.h"

#include <stdlib.h>

#include <cuda_runtime.h>

#include "model/cuda/train_step_cuda.h"

int dl_student_cuda_available(dl_err *err) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return dl_fail(err, "no usable CUDA device (%s)", cudaGetErrorString(e));
  if (count == 0) return dl_fail(err, "no usable CUDA device (0 devices)");
  return 0;
}

// The GPU trainer is made for the host trainer's student and configuration,
// then takes its whole state (heads, moments, EMA, centers, step).
static void *start(dl_trainer *host, dl_err *err) {
  dl_cuda_trainer *t = dl_malloc(sizeof *t);
  if (dl_cuda_trainer_init(t, host->student, &host->cfg, host->teacher_last[0], host->teacher_last[1], 0,
                           DL_DTYPE_BF16, NULL, err)) {
    free(t);
    return NULL;
  }
  dl_cuda_trainer_upload(t, host);
  return t;
}

static int step(void *ctx, dl_trainer *host, const dl_train_batch *batch, dl_step_report *report, dl_err *err) {
  dl_cuda_trainer *t = ctx;
  const int rc = dl_cuda_trainer_step(t, batch, report, err);
  host->step = t->step;
  return rc;
}

static void sync_host(void *ctx, dl_trainer *host) { dl_cuda_trainer_download(ctx, host); }

static void stop(void *ctx) {
  dl_cuda_trainer_free(ctx);
  free(ctx);
}

const dl_step_backend dl_student_cuda_backend = {
    .name = "cuda", .start = start, .step = step, .sync = sync_host, .stop = stop};
