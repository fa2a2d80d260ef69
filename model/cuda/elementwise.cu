// Element-wise kernels: storage conversion, GELU, SwiGLU, LayerScale with the
// residual add, and their backward passes; the bias gradient.
#include "model/cuda/cuda_check.h"
#include "model/cuda/kernels_common.cuh"
#include "model/cuda/vec_plan.h"

#define THREADS 256

extern "C" size_t dl_dtype_size(dl_dtype dtype) { return dtype == DL_DTYPE_BF16 ? 2 : 4; }

// Grid-stride launches cap the grid: enough blocks to fill any current GPU.
static unsigned capped_blocks(size_t n) {
  const size_t b = (n + THREADS - 1) / THREADS;
  return (unsigned)(b < 65536 ? (b ? b : 1) : 65536);
}

// Four elements per thread and access over the first `head` elements (a
// multiple of 4; every pointer 16-byte aligned), one at a time over the rest.
template <typename D, typename S>
__global__ void convert_kernel(D *dst, const S *src, size_t head, size_t n) {
  const size_t first = blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = first * 4; i < head; i += stride * 4) {
    float v[4];
    dl_ld4(v, src + i);
    dl_st4(dst + i, v);
  }
  for (size_t i = head + first; i < n; i += stride) dl_st(dst + i, dl_ld(src + i));
}

extern "C" void dl_cuda_convert(void *dst, dl_dtype dst_type, const void *src, dl_dtype src_type, size_t n,
                                cudaStream_t s) {
  if (dst_type == src_type) {
    cudaCheck(cudaMemcpyAsync(dst, src, n * dl_dtype_size(dst_type), cudaMemcpyDeviceToDevice, s));
    return;
  }
  const void *ptrs[] = {dst, src};
  const dl_vec_split v = dl_vec_plan(n, sizeof(float), ptrs, 2);  // 4 per access, as the float side
  if (dst_type == DL_DTYPE_BF16)
    convert_kernel<<<capped_blocks(v.head / 4 + v.tail), THREADS, 0, s>>>((__nv_bfloat16 *)dst, (const float *)src,
                                                                         v.head, n);
  else
    convert_kernel<<<capped_blocks(v.head / 4 + v.tail), THREADS, 0, s>>>((float *)dst, (const __nv_bfloat16 *)src,
                                                                         v.head, n);
  cudaCheckLaunch();
}

__device__ __forceinline__ float gelu_exact(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float gelu_exact_grad(float x) {
  const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
  const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
  return cdf + x * pdf;
}

// 16 bytes per thread and access (8 bf16 or 4 float) over the first `head`
// elements (a multiple of the pack; every pointer 16-byte aligned), one
// element at a time over the tail.
template <typename T>
__global__ void gelu_kernel(T *y, const T *x, size_t head, size_t n) {
  constexpr int W = dl_pack<T>::N;
  const size_t first = blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = first * W; i < head; i += stride * W) {
    dl_pack<T> v = dl_ld_pack(x + i);
    for (int k = 0; k < W; k++) dl_st(&v.v[k], gelu_exact(dl_ld(&v.v[k])));
    dl_st_pack(y + i, v);
  }
  for (size_t i = head + first; i < n; i += stride) dl_st(y + i, gelu_exact(dl_ld(x + i)));
}
template <typename T>
__global__ void gelu_backward_kernel(T *dx, const T *dy, const T *pre, size_t head, size_t n) {
  constexpr int W = dl_pack<T>::N;
  const size_t first = blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = first * W; i < head; i += stride * W) {
    dl_pack<T> g = dl_ld_pack(dy + i);
    const dl_pack<T> p = dl_ld_pack(pre + i);
    for (int k = 0; k < W; k++) dl_st(&g.v[k], dl_ld(&g.v[k]) * gelu_exact_grad(dl_ld(&p.v[k])));
    dl_st_pack(dx + i, g);
  }
  for (size_t i = head + first; i < n; i += stride) dl_st(dx + i, dl_ld(dy + i) * gelu_exact_grad(dl_ld(pre + i)));
}

// Threads for a packed launch: one per pack of the head, one per tail element.
static unsigned packed_blocks(const dl_vec_split *v) { return capped_blocks(v->head / v->width + v->tail); }

extern "C" void dl_cuda_gelu(dl_dtype dt, void *y, const void *x, size_t n, cudaStream_t s) {
  const void *ptrs[] = {y, x};
  const dl_vec_split v = dl_vec_plan(n, dl_dtype_size(dt), ptrs, 2);
  DL_DISPATCH(dt, gelu_kernel<T><<<packed_blocks(&v), THREADS, 0, s>>>((T *)y, (const T *)x, v.head, n));
  cudaCheckLaunch();
}
extern "C" void dl_cuda_gelu_backward(dl_dtype dt, void *dx, const void *dy, const void *pre, size_t n,
                                      cudaStream_t s) {
  const void *ptrs[] = {dx, dy, pre};
  const dl_vec_split v = dl_vec_plan(n, dl_dtype_size(dt), ptrs, 3);
  DL_DISPATCH(dt, gelu_backward_kernel<T><<<packed_blocks(&v), THREADS, 0, s>>>((T *)dx, (const T *)dy,
                                                                                (const T *)pre, v.head, n));
  cudaCheckLaunch();
}

// GELU backward with the bias gradient of the layer before it in one pass:
// dx = dy * gelu'(pre) [rows, n] and db += its column sums (float32, before
// dx's rounding). 32 columns per block, 256-row chunks, one atomic per
// column and block.
#define GELU_BG_ROWS 256
template <typename T>
__global__ void gelu_backward_bias_grad_kernel(T *dx, float *db, const T *dy, const T *pre, int rows, int n) {
  __shared__ float part[8][33];
  const int col = blockIdx.x * 32 + threadIdx.x;
  const int r0 = blockIdx.y * GELU_BG_ROWS, r1 = min(rows, r0 + GELU_BG_ROWS);
  float acc = 0.0f;
  if (col < n)
    for (int r = r0 + threadIdx.y; r < r1; r += 8) {
      const size_t i = (size_t)r * n + col;
      const float g = dl_ld(dy + i) * gelu_exact_grad(dl_ld(pre + i));
      dl_st(dx + i, g);
      acc += g;
    }
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < n) {
    for (int k = 1; k < 8; k++) acc += part[k][threadIdx.x];
    atomicAdd(db + col, acc);
  }
}

extern "C" void dl_cuda_gelu_backward_bias_grad(dl_dtype dt, void *dx, float *db, const void *dy, const void *pre,
                                                int rows, int n, cudaStream_t s) {
  const dim3 block(32, 8), grid(dl_blocks(n, 32), dl_blocks(rows, GELU_BG_ROWS));
  DL_DISPATCH(dt, gelu_backward_bias_grad_kernel<T><<<grid, block, 0, s>>>((T *)dx, db, (const T *)dy,
                                                                           (const T *)pre, rows, n));
  cudaCheckLaunch();
}

__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

template <typename T>
__global__ void swiglu_kernel(T *out, const T *xg, int rows, int h) {
  // Blocks over rows, threads over columns: no division per element.
  for (int r = blockIdx.x; r < rows; r += gridDim.x)
    for (int j = threadIdx.x; j < h; j += blockDim.x) {
      const float a = dl_ld(xg + (size_t)r * 2 * h + j), b = dl_ld(xg + (size_t)r * 2 * h + h + j);
      dl_st(out + (size_t)r * h + j, a * sigmoidf(a) * b);
    }
}
template <typename T>
__global__ void swiglu_backward_kernel(T *dxg, const T *dout, const T *xg, int rows, int h) {
  for (int r = blockIdx.x; r < rows; r += gridDim.x)
    for (int j = threadIdx.x; j < h; j += blockDim.x) {
      const size_t i = (size_t)r * h + j, a_at = (size_t)r * 2 * h + j;
      const float a = dl_ld(xg + a_at), b = dl_ld(xg + a_at + h), g = dl_ld(dout + i);
      const float sg = sigmoidf(a), silu = a * sg;
      dl_st(dxg + a_at, g * b * (sg + silu * (1.0f - sg)));
      dl_st(dxg + a_at + h, g * silu);
    }
}

static unsigned row_blocks(int rows) { return (unsigned)(rows < 65536 ? (rows > 0 ? rows : 1) : 65536); }

extern "C" void dl_cuda_swiglu(dl_dtype dt, void *out, const void *xg, int rows, int h, cudaStream_t s) {
  DL_DISPATCH(dt, swiglu_kernel<T><<<row_blocks(rows), THREADS, 0, s>>>((T *)out, (const T *)xg,
                                                                                        rows, h));
  cudaCheckLaunch();
}
extern "C" void dl_cuda_swiglu_backward(dl_dtype dt, void *dxg, const void *dout, const void *xg, int rows, int h,
                                        cudaStream_t s) {
  DL_DISPATCH(dt, swiglu_backward_kernel<T><<<row_blocks(rows), THREADS, 0, s>>>(
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
