// LayerNorm forward and backward: one warp per row, statistics in float32.
#include "model/cuda/cuda_check.h"
#include "model/cuda/kernels_common.cuh"

#define ROWS_PER_BLOCK 8

template <typename T>
__global__ void layernorm_kernel(T *y, float *mean_out, float *rstd_out, const T *x, const T *g, const T *b,
                                 int rows, int d, float eps) {
  const int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.y, lane = threadIdx.x;
  if (row >= rows) return;
  const T *xr = x + (size_t)row * d;
  // Two passes over the row (it stays in L1/L2): the variance of centered
  // values, as the CPU reference, without cancellation.
  float sum = 0.0f;
  for (int j = lane; j < d; j += 32) sum += dl_ld(xr + j);
  const float mean = dl_warp_sum(sum) / (float)d;
  float var = 0.0f;
  for (int j = lane; j < d; j += 32) {
    const float c = dl_ld(xr + j) - mean;
    var += c * c;
  }
  const float rstd = rsqrtf(dl_warp_sum(var) / (float)d + eps);
  T *yr = y + (size_t)row * d;
  for (int j = lane; j < d; j += 32) dl_st(yr + j, (dl_ld(xr + j) - mean) * rstd * dl_ld(g + j) + dl_ld(b + j));
  if (lane == 0 && mean_out) {
    mean_out[row] = mean;
    rstd_out[row] = rstd;
  }
}

template <typename T>
__global__ void layernorm_dx_kernel(T *dx, const T *dy, const T *x, const T *g, const float *mean,
                                    const float *rstd, int rows, int d) {
  const int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.y, lane = threadIdx.x;
  if (row >= rows) return;
  const T *xr = x + (size_t)row * d, *dyr = dy + (size_t)row * d;
  const float mu = mean[row], rs = rstd[row];
  float s1 = 0.0f, s2 = 0.0f;  // sum of dxhat, sum of dxhat * xhat
  for (int j = lane; j < d; j += 32) {
    const float dxh = dl_ld(dyr + j) * dl_ld(g + j), xh = (dl_ld(xr + j) - mu) * rs;
    s1 += dxh;
    s2 += dxh * xh;
  }
  s1 = dl_warp_sum(s1) / (float)d;
  s2 = dl_warp_sum(s2) / (float)d;
  T *dxr = dx + (size_t)row * d;
  for (int j = lane; j < d; j += 32) {
    const float dxh = dl_ld(dyr + j) * dl_ld(g + j), xh = (dl_ld(xr + j) - mu) * rs;
    dl_st(dxr + j, rs * (dxh - s1 - xh * s2));
  }
}

// dg += sum_rows dy * xhat, db += sum_rows dy: 32 columns per block, partial
// sums over a chunk of rows, then one atomic per column and block.
#define PARAM_GRAD_ROWS 256
template <typename T>
__global__ void layernorm_param_grad_kernel(float *dg, float *db, const T *dy, const T *x, const float *mean,
                                            const float *rstd, int rows, int d) {
  __shared__ float sg[8][33], sb[8][33];
  const int col = blockIdx.x * 32 + threadIdx.x;
  const int r0 = blockIdx.y * PARAM_GRAD_ROWS, r1 = min(rows, r0 + PARAM_GRAD_ROWS);
  float ag = 0.0f, ab = 0.0f;
  if (col < d)
    for (int r = r0 + threadIdx.y; r < r1; r += 8) {
      const float dyv = dl_ld(dy + (size_t)r * d + col);
      ag += dyv * (dl_ld(x + (size_t)r * d + col) - mean[r]) * rstd[r];
      ab += dyv;
    }
  sg[threadIdx.y][threadIdx.x] = ag;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && col < d) {
    for (int i = 1; i < 8; i++) {
      ag += sg[i][threadIdx.x];
      ab += sb[i][threadIdx.x];
    }
    if (dg) atomicAdd(dg + col, ag);
    if (db) atomicAdd(db + col, ab);
  }
}

extern "C" void dl_cuda_layernorm(dl_dtype dt, void *y, float *mean, float *rstd, const void *x, const void *g,
                                  const void *b, int rows, int d, float eps, cudaStream_t s) {
  const dim3 block(32, ROWS_PER_BLOCK);
  DL_DISPATCH(dt, layernorm_kernel<T><<<dl_blocks(rows, ROWS_PER_BLOCK), block, 0, s>>>(
                      (T *)y, mean, rstd, (const T *)x, (const T *)g, (const T *)b, rows, d, eps));
  cudaCheckLaunch();
}

extern "C" void dl_cuda_layernorm_backward(dl_dtype dt, void *dx, float *dg, float *db, const void *dy,
                                           const void *x, const void *g, const float *mean, const float *rstd,
                                           int rows, int d, cudaStream_t s) {
  const dim3 block(32, ROWS_PER_BLOCK);
  const dim3 pgrid(dl_blocks(d, 32), dl_blocks(rows, PARAM_GRAD_ROWS));
  DL_DISPATCH(dt, {
    layernorm_dx_kernel<T><<<dl_blocks(rows, ROWS_PER_BLOCK), block, 0, s>>>(
        (T *)dx, (const T *)dy, (const T *)x, (const T *)g, mean, rstd, rows, d);
    layernorm_param_grad_kernel<T><<<pgrid, block, 0, s>>>(dg, db, (const T *)dy, (const T *)x, mean, rstd,
                                                           rows, d);
  });
  cudaCheckLaunch();
}
