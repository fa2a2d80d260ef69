// Error checks for every CUDA, cuBLAS(Lt) and NCCL call, in the style of
// llm.c: a failed call is a bug or a broken machine, never something to
// recover from, so it prints the call site and the library's own message and
// exits. Host code only (C11).
#ifndef DISTILL_MODEL_CUDA_CUDA_CHECK_H
#define DISTILL_MODEL_CUDA_CUDA_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include <cublasLt.h>
#include <cuda_runtime.h>

static inline void dl_cuda_check_at(cudaError_t e, const char *file, int line) {
  if (e == cudaSuccess) return;
  fprintf(stderr, "cuda error at %s:%d: %s (%s)\n", file, line, cudaGetErrorString(e), cudaGetErrorName(e));
  exit(EXIT_FAILURE);
}
#define cudaCheck(call) dl_cuda_check_at((call), __FILE__, __LINE__)

static inline void dl_cublas_check_at(cublasStatus_t s, const char *file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  fprintf(stderr, "cublas error at %s:%d: status %d\n", file, line, (int)s);
  exit(EXIT_FAILURE);
}
#define cublasCheck(call) dl_cublas_check_at((call), __FILE__, __LINE__)

// A kernel launch reports a bad configuration only through the next query.
#define cudaCheckLaunch() cudaCheck(cudaGetLastError())

#ifdef DISTILL_HAVE_NCCL
#include <nccl.h>
static inline void dl_nccl_check_at(ncclResult_t r, const char *file, int line) {
  if (r == ncclSuccess) return;
  fprintf(stderr, "nccl error at %s:%d: %s\n", file, line, ncclGetErrorString(r));
  exit(EXIT_FAILURE);
}
#define ncclCheck(call) dl_nccl_check_at((call), __FILE__, __LINE__)
#endif

#endif
