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

// Four consecutive elements as floats in one access: a float4 (16-byte
// aligned) or four bf16 (8-byte aligned).
struct __align__(8) dl_bf16x4 {
  __nv_bfloat162 lo, hi;
};
__device__ __forceinline__ void dl_ld4(float o[4], const float *p) {
  const float4 q = *reinterpret_cast<const float4 *>(p);
  o[0] = q.x, o[1] = q.y, o[2] = q.z, o[3] = q.w;
}
__device__ __forceinline__ void dl_ld4(float o[4], const __nv_bfloat16 *p) {
  const dl_bf16x4 q = *reinterpret_cast<const dl_bf16x4 *>(p);
  const float2 a = __bfloat1622float2(q.lo), b = __bfloat1622float2(q.hi);
  o[0] = a.x, o[1] = a.y, o[2] = b.x, o[3] = b.y;
}
__device__ __forceinline__ void dl_st4(float *p, const float v[4]) {
  *reinterpret_cast<float4 *>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ __forceinline__ void dl_st4(__nv_bfloat16 *p, const float v[4]) {
  dl_bf16x4 q;
  q.lo = __floats2bfloat162_rn(v[0], v[1]);
  q.hi = __floats2bfloat162_rn(v[2], v[3]);
  *reinterpret_cast<dl_bf16x4 *>(p) = q;
}
// V (1 or 4) consecutive elements: the row kernels' access width.
template <int V, typename T>
__device__ __forceinline__ void dl_ldv(float o[V], const T *p) {
  if constexpr (V == 4) dl_ld4(o, p);
  else o[0] = dl_ld(p);
}
template <int V, typename T>
__device__ __forceinline__ void dl_stv(T *p, const float v[V]) {
  if constexpr (V == 4) dl_st4(p, v);
  else dl_st(p, v[0]);
}

// 16 bytes of elements (8 bf16 or 4 float), loaded and stored in one access
// from 16-byte aligned addresses: the flat element-wise kernels' unit.
template <typename T>
struct __align__(16) dl_pack {
  static constexpr int N = 16 / sizeof(T);
  T v[N];
};
template <typename T>
__device__ __forceinline__ dl_pack<T> dl_ld_pack(const T *p) { return *reinterpret_cast<const dl_pack<T> *>(p); }
template <typename T>
__device__ __forceinline__ void dl_st_pack(T *p, const dl_pack<T> &v) { *reinterpret_cast<dl_pack<T> *>(p) = v; }

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
