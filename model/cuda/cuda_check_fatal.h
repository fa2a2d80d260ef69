// For programs only (tests, benchmarks), never the library: a failed call,
// or a failure a library call recorded before it, prints one line and ends
// the program with status 1. The library itself reports through
// model/cuda/cuda_check.h's record.
#ifndef DISTILL_MODEL_CUDA_CUDA_CHECK_FATAL_H
#define DISTILL_MODEL_CUDA_CUDA_CHECK_FATAL_H

#include <stdio.h>
#include <stdlib.h>

#include "model/cuda/cuda_check.h"

static inline void dl_cuda_exit_on_failure(int failed) {
  dl_err err;
  if (!failed && !dl_cuda_failed()) return;
  if (dl_cuda_take_error(&err)) fprintf(stderr, "%s\n", err.msg);
  exit(EXIT_FAILURE);
}
#define cudaCheckFatal(call) dl_cuda_exit_on_failure(dl_cuda_failed_call((call), #call, __FILE__, __LINE__))
#define cublasCheckFatal(call) dl_cuda_exit_on_failure(dl_cublas_failed_call((call), #call, __FILE__, __LINE__))

#endif
