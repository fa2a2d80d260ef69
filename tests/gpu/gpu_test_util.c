#include "tests/gpu/gpu_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/cuda/cuda_check_fatal.h"
#include "tests/harness.h"

int dl_gpu_test_device(void) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    printf("skip: no usable CUDA device (%s)\n", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    return -1;
  }
  struct cudaDeviceProp prop;
  cudaCheckFatal(cudaGetDeviceProperties(&prop, 0));
  printf("info device: %s, compute capability %d.%d, %.1f GiB\n", prop.name, prop.major, prop.minor,
         (double)prop.totalGlobalMem / (1 << 30));
  return 0;
}

float dl_bf16_round(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) return x;  // inf, NaN
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  memcpy(&x, &u, 4);
  return x;
}

void dl_bf16_round_all(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = dl_bf16_round(x[i]);
}

void *dl_gpu_alloc(size_t n, dl_dtype dt) {
  void *d;
  cudaCheckFatal(cudaMalloc(&d, n * dl_dtype_size(dt) + 16));
  cudaCheckFatal(cudaMemset(d, 0, n * dl_dtype_size(dt) + 16));
  // The memset runs on the legacy stream, which the ops' non-blocking
  // streams do not wait for.
  cudaCheckFatal(cudaDeviceSynchronize());
  return d;
}

void *dl_gpu_upload(const float *host, size_t n, dl_dtype dt) {
  void *d = dl_gpu_alloc(n, dt);
  float *staging;
  cudaCheckFatal(cudaMalloc((void **)&staging, n * sizeof(float) + 16));
  cudaCheckFatal(cudaMemcpy(staging, host, n * sizeof(float), cudaMemcpyHostToDevice));
  dl_cuda_convert(d, dt, staging, DL_DTYPE_F32, n, 0);
  cudaCheckFatal(cudaDeviceSynchronize());
  cudaCheckFatal(cudaFree(staging));
  return d;
}

void dl_gpu_download(float *host, const void *dev, size_t n, dl_dtype dt) {
  float *staging;
  cudaCheckFatal(cudaMalloc((void **)&staging, n * sizeof(float) + 16));
  dl_cuda_convert(staging, DL_DTYPE_F32, dev, dt, n, 0);
  cudaCheckFatal(cudaDeviceSynchronize());
  cudaCheckFatal(cudaMemcpy(host, staging, n * sizeof(float), cudaMemcpyDeviceToHost));
  cudaCheckFatal(cudaFree(staging));
}

void dl_gpu_free(void *dev) {
  if (dev) cudaCheckFatal(cudaFree(dev));
}

float *dl_test_random(size_t n, uint64_t *s, float scale) {
  float *x = malloc(n * sizeof(float) + 16);
  for (size_t i = 0; i < n; i++) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    x[i] = scale * ((float)((*s >> 40) & 0xFFFFFF) / 16777216.0f - 0.5f);
  }
  return x;
}

float *dl_test_input(size_t n, uint64_t *state, float scale, dl_dtype dt) {
  float *x = dl_test_random(n, state, scale);
  if (dt == DL_DTYPE_BF16) dl_bf16_round_all(x, n);
  return x;
}

float *dl_test_host(size_t n) { return malloc(n * sizeof(float) + 16); }

const char *dl_dtype_name(dl_dtype dt) { return dt == DL_DTYPE_BF16 ? "bf16" : "fp32"; }

void dl_gpu_compare(const char *op, dl_dtype dt, const float *got, const float *want, size_t n, double tol) {
  // A library call before this comparison may have recorded a failure
  // (model/cuda/cuda_check.h) instead of exiting: name it with the op.
  dl_err err;
  if (dl_cuda_take_error(&err)) CHECK(0, "%s %s: %s", op, dl_dtype_name(dt), err.msg);
  const double e = dl_rel_err(got, want, n);
  CHECK(e <= tol, "result %s %s rel_err=%.3g tol=%.3g", op, dl_dtype_name(dt), e, tol);
}
