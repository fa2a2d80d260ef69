// Element-wise kernels: storage conversion, GELU, SwiGLU, LayerScale with the
// residual add, and their backward passes; the bias gradient.
#include "model/cuda/cuda_check.h"
#include "model/cuda/kernels_common.cuh"

#define THREADS 256

extern "C" size_t dl_dtype_size(dl_dtype dtype) { return dtype == DL_DTYPE_BF16 ? 2 : 4; }

template <typename D, typename S>
__global__ void convert_kernel(D *dst, const S *src, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dl_st(dst + i, dl_ld(src + i));
}

// Grid-stride launches cap the grid: enough blocks to fill any current GPU.
static unsigned capped_blocks(size_t n) {
  const size_t b = (n + THREADS - 1) / THREADS;
  return (unsigned)(b < 65536 ? (b ? b : 1) : 65536);
}

extern "C" void dl_cuda_convert(void *dst, dl_dtype dst_type, const void *src, dl_dtype src_type, size_t n,
                                cudaStream_t s) {
  if (dst_type == src_type) {
    cudaCheck(cudaMemcpyAsync(dst, src, n * dl_dtype_size(dst_type), cudaMemcpyDeviceToDevice, s));
    return;
  }
  if (dst_type == DL_DTYPE_BF16)
    convert_kernel<<<capped_blocks(n), THREADS, 0, s>>>((__nv_bfloat16 *)dst, (const float *)src, n);
  else
    convert_kernel<<<capped_blocks(n), THREADS, 0, s>>>((float *)dst, (const __nv_bfloat16 *)src, n);
  cudaCheckLaunch();
}

__device__ __forceinline__ float gelu_exact(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float gelu_exact_grad(float x) {
  const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
  const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
  return cdf + x * pdf;
}

template <typename T>
__global__ void gelu_kernel(T *y, const T *x, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dl_st(y + i, gelu_exact(dl_ld(x + i)));
}
template <typename T>
__global__ void gelu_backward_kernel(T *dx, const T *dy, const T *pre, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dl_st(dx + i, dl_ld(dy + i) * gelu_exact_grad(dl_ld(pre + i)));
}

extern "C" void dl_cuda_gelu(dl_dtype dt, void *y, const void *x, size_t n, cudaStream_t s) {
  DL_DISPATCH(dt, gelu_kernel<T><<<capped_blocks(n), THREADS, 0, s>>>((T *)y, (const T *)x, n));
  cudaCheckLaunch();
}
extern "C" void dl_cuda_gelu_backward(dl_dtype dt, void *dx, const void *dy, const void *pre, size_t n,
                                      cudaStream_t s) {
  DL_DISPATCH(dt, gelu_backward_kernel<T><<<capped_blocks(n), THREADS, 0, s>>>((T *)dx, (const T *)dy,
                                                                               (const T *)pre, n));
  cudaCheckLaunch();
}

__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

template <typename T>
__global__ void swiglu_kernel(T *out, const T *xg, int rows, int h) {
  const size_t n = (size_t)rows * h;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const size_t r = i / h, j = i % h;
    const float a = dl_ld(xg + r * 2 * h + j), b = dl_ld(xg + r * 2 * h + h + j);
    dl_st(out + i, a * sigmoidf(a) * b);
  }
}
template <typename T>
__global__ void swiglu_backward_kernel(T *dxg, const T *dout, const T *xg, int rows, int h) {
  const size_t n = (size_t)rows * h;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const size_t r = i / h, j = i % h;
    const float a = dl_ld(xg + r * 2 * h + j), b = dl_ld(xg + r * 2 * h + h + j), g = dl_ld(dout + i);
    const float sg = sigmoidf(a), silu = a * sg;
    dl_st(dxg + r * 2 * h + j, g * b * (sg + silu * (1.0f - sg)));
    dl_st(dxg + r * 2 * h + h + j, g * silu);
  }
}

extern "C" void dl_cuda_swiglu(dl_dtype dt, void *out, const void *xg, int rows, int h, cudaStream_t s) {
  DL_DISPATCH(dt, swiglu_kernel<T><<<capped_blocks((size_t)rows * h), THREADS, 0, s>>>((T *)out, (const T *)xg,
                                                                                        rows, h));
  cudaCheckLaunch();
}
extern "C" void dl_cuda_swiglu_backward(dl_dtype dt, void *dxg, const void *dout, const void *xg, int rows, int h,
                                        cudaStream_t s) {
  DL_DISPATCH(dt, swiglu_backward_kernel<T><<<capped_blocks((size_t)rows * h), THREADS, 0, s>>>(
                      (T *)dxg, (const T *)dout, (const T *)xg, rows, h));
  cudaCheckLaunch();
}

template <typename T>
__global__ void residual_scaled_kernel(T *x, const T *y, const T *gamma, int rows, int d) {
  const size_t n = (size_t)rows * d;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dl_st(x + i, dl_ld(x + i) + dl_ld(gamma + i % d) * dl_ld(y + i));
}
template <typename T>
__global__ void residual_scaled_dy_kernel(T *dy, const T *dx, const T *gamma, int rows, int d) {
  const size_t n = (size_t)rows * d;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dl_st(dy + i, dl_ld(gamma + i % d) * dl_ld(dx + i));
}

// out[col] += sum_r a[r, col] * (b ? b[r, col] : 1): 32 columns per block,
// 256-row chunks, one atomic per column and block.
#define COLSUM_ROWS 256
template <typename T>
__global__ void column_dot_kernel(float *out, const T *a, const T *b, int rows, int d) {
  __shared__ float part[8][33];
  const int col = blockIdx.x * 32 + threadIdx.x;
  const int r0 = blockIdx.y * COLSUM_ROWS, r1 = min(rows, r0 + COLSUM_ROWS);
  float acc = 0.0f;
  if (col < d)
    for (int r = r0 + threadIdx.y; r < r1; r += 8) {
      const size_t i = (size_t)r * d + col;
      acc += dl_ld(a + i) * (b ? dl_ld(b + i) : 1.0f);
    }
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < d) {
    for (int i = 1; i < 8; i++) acc += part[i][threadIdx.x];
    atomicAdd(out + col, acc);
  }
}

extern "C" void dl_cuda_residual_scaled(dl_dtype dt, void *x, const void *y, const void *gamma, int rows, int d,
                                        cudaStream_t s) {
  DL_DISPATCH(dt, residual_scaled_kernel<T><<<capped_blocks((size_t)rows * d), THREADS, 0, s>>>(
                      (T *)x, (const T *)y, (const T *)gamma, rows, d));
  cudaCheckLaunch();
}
extern "C" void dl_cuda_residual_scaled_backward(dl_dtype dt, void *dy, float *dgamma, const void *dx,
                                                 const void *y, const void *gamma, int rows, int d,
                                                 cudaStream_t s) {
  const dim3 block(32, 8), grid(dl_blocks(d, 32), dl_blocks(rows, COLSUM_ROWS));
  DL_DISPATCH(dt, {
    column_dot_kernel<T><<<grid, block, 0, s>>>(dgamma, (const T *)dx, (const T *)y, rows, d);
    residual_scaled_dy_kernel<T><<<capped_blocks((size_t)rows * d), THREADS, 0, s>>>((T *)dy, (const T *)dx,
                                                                                     (const T *)gamma, rows, d);
  });
  cudaCheckLaunch();
}

extern "C" void dl_cuda_bias_grad(dl_dtype dt, float *db, const void *dy, int rows, int n, cudaStream_t s) {
  const dim3 block(32, 8), grid(dl_blocks(n, 32), dl_blocks(rows, COLSUM_ROWS));
  DL_DISPATCH(dt, column_dot_kernel<T><<<grid, block, 0, s>>>(db, (const T *)dy, (const T *)NULL, rows, n));
  cudaCheckLaunch();
}
