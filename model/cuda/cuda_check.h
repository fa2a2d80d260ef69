// Error checks for every CUDA, cuBLAS(Lt) and NCCL call, in the style of
// llm.c, but without exit(): a library must let its caller decide. A failed
// call records the first failure of this thread (the library, the call's
// text, file:line and the library's own message; the matmuls add their
// shape) and returns from the enclosing void function. The caller at the
// API boundary (a step, a forward, an init) turns the record into a dl_err
// with dl_cuda_take_error, and the command prints one line and exits 1.
// Like CUDA's own sticky errors, later calls after a failure may run on
// garbage, but only the first failure is reported. Host code only.
#ifndef DISTILL_MODEL_CUDA_CUDA_CHECK_H
#define DISTILL_MODEL_CUDA_CUDA_CHECK_H

#include <stdio.h>

#include <cublasLt.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
typedef struct dl_err dl_err;  // common/err.h is C11 (_Noreturn); the kernels need only the name
extern "C" {
#else
#include "common/err.h"
#endif

// Records "LIB error: WHAT (CALL at FILE:LINE)" unless this thread already
// holds a failure; always returns -1.
int dl_cuda_record_failure(const char *lib, const char *what, const char *call, const char *file, int line);
// Whether this thread holds a failure not yet taken.
int dl_cuda_failed(void);
// Moves this thread's failure into err and returns -1; 0 when there is none.
int dl_cuda_take_error(dl_err *err);
// Drops this thread's failure (after it has been reported elsewhere).
void dl_cuda_clear_error(void);

const char *dl_cublas_status_name(cublasStatus_t s);

#ifdef __cplusplus
}
#endif

static inline int dl_cuda_failed_call(cudaError_t e, const char *call, const char *file, int line) {
  if (e == cudaSuccess) return 0;
  char what[192];
  snprintf(what, sizeof what, "%s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
  return dl_cuda_record_failure("cuda", what, call, file, line);
}
static inline int dl_cublas_failed_call(cublasStatus_t s, const char *call, const char *file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS) return 0;
  return dl_cuda_record_failure("cublas", dl_cublas_status_name(s), call, file, line);
}

// In a void function: record and return. cudaCheckOr/cublasCheckOr return
// `value` instead, for the functions that return something.
#define cudaCheck(call) \
  do { \
    if (dl_cuda_failed_call((call), #call, __FILE__, __LINE__)) return; \
  } while (0)
#define cudaCheckOr(call, value) \
  do { \
    if (dl_cuda_failed_call((call), #call, __FILE__, __LINE__)) return (value); \
  } while (0)
#define cublasCheck(call) \
  do { \
    if (dl_cublas_failed_call((call), #call, __FILE__, __LINE__)) return; \
  } while (0)
#define cublasCheckOr(call, value) \
  do { \
    if (dl_cublas_failed_call((call), #call, __FILE__, __LINE__)) return (value); \
  } while (0)
// In a function that reports through dl_err: record, move into err, return -1.
#define cudaTry(call, err) \
  do { \
    if (dl_cuda_failed_call((call), #call, __FILE__, __LINE__)) return dl_cuda_take_error(err); \
  } while (0)

// A kernel launch reports a bad configuration only through the next query.
#define cudaCheckLaunch() cudaCheck(cudaGetLastError())

// After a call that may have recorded a failure: stop here too.
#define dl_cuda_return_if_failed() \
  do { \
    if (dl_cuda_failed()) return; \
  } while (0)

#ifdef DISTILL_HAVE_NCCL
#include <nccl.h>
static inline int dl_nccl_failed_call(ncclResult_t r, const char *call, const char *file, int line) {
  if (r == ncclSuccess || r == ncclInProgress) return 0;  // non-blocking communicators: polled elsewhere
  return dl_cuda_record_failure("nccl", ncclGetErrorString(r), call, file, line);
}
#define ncclCheck(call) \
  do { \
    if (dl_nccl_failed_call((call), #call, __FILE__, __LINE__)) return; \
  } while (0)
#define ncclCheckOr(call, value) \
  do { \
    if (dl_nccl_failed_call((call), #call, __FILE__, __LINE__)) return (value); \
  } while (0)
#define ncclTry(call, err) \
  do { \
    if (dl_nccl_failed_call((call), #call, __FILE__, __LINE__)) return dl_cuda_take_error(err); \
  } while (0)
#endif

#endif
