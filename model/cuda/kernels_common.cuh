// Shared device helpers for the CUDA kernels: loads and stores that convert
// the storage type (float or bf16) to float for arithmetic, and block-wide
// reductions. Every kernel accumulates in float whatever it stores.
#ifndef DISTILL_MODEL_CUDA_KERNELS_COMMON_CUH
#define DISTILL_MODEL_CUDA_KERNELS_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "model/cuda/cuda_ops.h"

__device__ __forceinline__ float dl_ld(const float *p) { return *p; }
__device__ __forceinline__ float dl_ld(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void dl_st(float *p, float v) { *p = v; }
__device__ __forceinline__ void dl_st(__nv_bfloat16 *p, float v) { *p = __float2bfloat16(v); }

__device__ __forceinline__ float dl_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float dl_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the result. shared: 32 floats.
__device__ __forceinline__ float dl_block_sum(float v, float *shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = dl_warp_sum(v);
  __syncthreads();  // shared may still be read by a previous reduction
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : 0.0f;
  return dl_warp_sum(v);
}
// The same in double (the losses' sums, as the CPU's). shared: 32 doubles.
__device__ __forceinline__ double dl_block_sum_double(double v, double *shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : 0.0;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float dl_block_max(float v, float *shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = dl_warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : -INFINITY;
  return dl_warp_max(v);
}

// Float atomic maximum through the integer order of IEEE floats.
__device__ __forceinline__ void dl_atomic_max_float(float *addr, float v) {
  if (v >= 0.0f)
    atomicMax((int *)addr, __float_as_int(v));
  else
    atomicMin((unsigned int *)addr, __float_as_uint(v));
}

static inline unsigned dl_blocks(size_t n, unsigned threads) { return (unsigned)((n + threads - 1) / threads); }

// Instantiates a host entry point for both storage types: BODY uses T.
#define DL_DISPATCH(dtype, ...)                     \
  do {                                              \
    if ((dtype) == DL_DTYPE_BF16) {                 \
      typedef __nv_bfloat16 T;                      \
      __VA_ARGS__;                                  \
    } else {                                        \
      typedef float T;                              \
      __VA_ARGS__;                                  \
    }                                               \
  } while (0)

#endif
