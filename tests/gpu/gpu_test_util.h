// Helpers for the GPU parity tests: device detection (a missing GPU skips,
// exit 77, never fails), host <-> device copies in either storage type,
// bf16 rounding on the host, and one result line per comparison that
// tests/gpu/check.sh collects into its table.
#ifndef DISTILL_TESTS_GPU_GPU_TEST_UTIL_H
#define DISTILL_TESTS_GPU_GPU_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "model/cuda/cuda_ops.h"

#define DL_TEST_SKIP 77

// 0 when a CUDA device is usable; prints why not otherwise.
int dl_gpu_test_device(void);

// Round-to-nearest-even float -> bf16 -> float, as __float2bfloat16 does.
float dl_bf16_round(float x);
void dl_bf16_round_all(float *x, size_t n);

// Device buffer of n elements of dt holding host floats (rounded when bf16).
void *dl_gpu_upload(const float *host, size_t n, dl_dtype dt);
void *dl_gpu_alloc(size_t n, dl_dtype dt);  // zeroed
void dl_gpu_download(float *host, const void *dev, size_t n, dl_dtype dt);
void dl_gpu_free(void *dev);

float *dl_test_random(size_t n, uint64_t *state, float scale);
// The same in the precision the GPU will store it (rounded to bf16 for bf16).
float *dl_test_input(size_t n, uint64_t *state, float scale, dl_dtype dt);
// An uninitialized host buffer of n floats (16 bytes of slack), for results.
float *dl_test_host(size_t n);

// Prints "result OP DTYPE rel_err=E tol=T ok|FAIL" through CHECK, after a
// failed check naming any failure a library call recorded since the last.
void dl_gpu_compare(const char *op, dl_dtype dt, const float *got, const float *want, size_t n, double tol);
const char *dl_dtype_name(dl_dtype dt);

#endif
