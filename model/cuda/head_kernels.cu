// Kernels of the projection heads (model/heads.c) that no other op needs:
// row normalization, y_r = gain_r * x_r / max(||x_r||, eps), which is both
// the L2 normalization of the bottleneck (no gain, eps 1e-12) and the weight
// norm of the last layer (gain weight_g, rows of weight_v, eps 0), and its
// backward pass. One block per row; float32 arithmetic whatever the storage.
#include "model/cuda/cuda_check.h"
#include "model/cuda/kernels_common.cuh"

#define THREADS 256

template <typename TX, typename TY>
__global__ void row_normalize_kernel(TY *y, float *norms, const TX *x, const float *gains, int d, float eps) {
  __shared__ float red[32];
  const TX *xr = x + (size_t)blockIdx.x * d;
  TY *yr = y + (size_t)blockIdx.x * d;
  float ss = 0.0f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) ss += dl_ld(xr + j) * dl_ld(xr + j);
  const float norm = sqrtf(dl_block_sum(ss, red)), den = norm > eps ? norm : eps;
  if (threadIdx.x == 0) norms[blockIdx.x] = norm;
  if (gains) {  // as the CPU's weight norm: one scale, then a product
    const float sc = gains[blockIdx.x] / den;
    for (int j = threadIdx.x; j < d; j += blockDim.x) dl_st(yr + j, sc * dl_ld(xr + j));
  } else {  // as the CPU's F.normalize: a quotient
    for (int j = threadIdx.x; j < d; j += blockDim.x) dl_st(yr + j, dl_ld(xr + j) / den);
  }
}

extern "C" void dl_cuda_row_normalize(dl_dtype y_type, void *y, float *norms, dl_dtype x_type, const void *x,
                                      const float *gains, int rows, int d, float eps, cudaStream_t s) {
  if (x_type == DL_DTYPE_F32) {
    DL_DISPATCH(y_type, row_normalize_kernel<float, T><<<rows, THREADS, 0, s>>>((T *)y, norms, (const float *)x,
                                                                                gains, d, eps));
  } else {
    DL_DISPATCH(y_type, row_normalize_kernel<__nv_bfloat16, T><<<rows, THREADS, 0, s>>>(
                            (T *)y, norms, (const __nv_bfloat16 *)x, gains, d, eps));
  }
  cudaCheckLaunch();
}

// With u = x / ||x||: dgain += dy . u; dx = gain / ||x|| (dy - u (u . dy));
// where the norm was clamped at eps, dx = gain dy / eps (and dgain += dy . x / eps).
template <typename T>
__global__ void row_normalize_backward_kernel(T *dx, float *dgain, const T *dy, const T *x, const float *norms,
                                              const float *gains, int d, float eps, int accumulate) {
  __shared__ float red[32];
  const size_t off = (size_t)blockIdx.x * d;
  const float norm = norms[blockIdx.x], g = gains ? gains[blockIdx.x] : 1.0f;
  const bool clamped = norm <= eps;
  const float inv = 1.0f / (clamped ? eps : norm);
  float dot = 0.0f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) dot += dl_ld(dy + off + j) * dl_ld(x + off + j);
  dot = dl_block_sum(dot, red) * inv;  // dy . u
  if (dgain && threadIdx.x == 0) dgain[blockIdx.x] += dot;
  const float sc = g * inv;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const float gy = dl_ld(dy + off + j);
    const float v = clamped ? sc * gy : sc * (gy - dot * dl_ld(x + off + j) * inv);
    dl_st(dx + off + j, accumulate ? dl_ld(dx + off + j) + v : v);
  }
}

extern "C" void dl_cuda_row_normalize_backward(dl_dtype dt, void *dx, float *dgain, const void *dy, const void *x,
                                               const float *norms, const float *gains, int rows, int d, float eps,
                                               int accumulate, cudaStream_t s) {
  DL_DISPATCH(dt, row_normalize_backward_kernel<T><<<rows, THREADS, 0, s>>>(
                      (T *)dx, dgain, (const T *)dy, (const T *)x, norms, gains, d, eps, accumulate));
  cudaCheckLaunch();
}
