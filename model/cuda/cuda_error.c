// The per-thread first failure behind cuda_check.h's macros. Per thread
// because each GPU worker (a teacher's compute thread, a student rank) runs
// its own device work and must report its own failure.
#include "model/cuda/cuda_check.h"

#include <string.h>

static _Thread_local dl_err first_failure;
static _Thread_local int have_failure;

int dl_cuda_record_failure(const char *lib, const char *what, const char *call, const char *file, int line) {
  if (have_failure) return -1;
  const char *base = strrchr(file, '/');
  dl_fail(&first_failure, "%s error: %s (%s at %s:%d)", lib, what, call, base ? base + 1 : file, line);
  have_failure = 1;
  return -1;
}

int dl_cuda_failed(void) { return have_failure; }

int dl_cuda_take_error(dl_err *err) {
  if (!have_failure) return 0;
  if (err) *err = first_failure;
  have_failure = 0;
  return -1;
}

void dl_cuda_clear_error(void) { have_failure = 0; }

const char *dl_cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
  }
}
