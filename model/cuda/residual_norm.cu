// The float32 residual stream of the ViT: the LayerScale residual add fused
// with the LayerNorm that follows it, and their backward passes into the
// float32 residual gradient. The stream stays float32 so that an update of
// LayerScale 1e-5 times the branch survives the add (bf16 keeps 8 bits);
// only the LayerNorm output, a GEMM operand, is stored in the model's dtype.
#include "model/cuda/cuda_check.h"
#include "model/cuda/kernels_common.cuh"
#include "model/cuda/vec_plan.h"

#define ROWS_PER_BLOCK 8

// One warp per row, V consecutive columns per lane and access. With a
// branch: x_out = x_in + gamma * branch (float32; x_out may be x_in), then
// the LayerNorm of x_out; without: the LayerNorm of x_in. Two passes for the
// statistics (variance of centered values, as the CPU op); the row is read
// back from L1/L2, written by this same thread.
template <typename T, int V>
__global__ void residual_layernorm_kernel(float *x_out, T *y, float *mean_out, float *rstd_out, const float *x_in,
                                          const T *branch, const T *gamma, const T *g, const T *b, int rows, int d,
                                          float eps) {
  const int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.y, lane = threadIdx.x;
  if (row >= rows) return;
  const size_t base = (size_t)row * d;
  const float *xr = branch ? x_out + base : x_in + base;  // the row the LayerNorm reads
  float sum = 0.0f, v[V];
  for (int j = lane * V; j < d; j += 32 * V) {
    dl_ldv<V>(v, x_in + base + j);
    if (branch) {
      float bv[V], gv[V];
      dl_ldv<V>(bv, branch + base + j);
      dl_ldv<V>(gv, gamma + j);
      for (int k = 0; k < V; k++) v[k] += gv[k] * bv[k];
      dl_stv<V>(x_out + base + j, v);
    }
    for (int k = 0; k < V; k++) sum += v[k];
  }
  const float mean = dl_warp_sum(sum) / (float)d;
  float var = 0.0f;
  for (int j = lane * V; j < d; j += 32 * V) {
    dl_ldv<V>(v, xr + j);
    for (int k = 0; k < V; k++) var += (v[k] - mean) * (v[k] - mean);
  }
  const float rstd = rsqrtf(dl_warp_sum(var) / (float)d + eps);
  for (int j = lane * V; j < d; j += 32 * V) {
    float gv[V], bv[V];
    dl_ldv<V>(v, xr + j);
    dl_ldv<V>(gv, g + j);
    dl_ldv<V>(bv, b + j);
    for (int k = 0; k < V; k++) v[k] = (v[k] - mean) * rstd * gv[k] + bv[k];
    dl_stv<V>(y + base + j, v);
  }
  if (lane == 0 && mean_out) {
    mean_out[row] = mean;
    rstd_out[row] = rstd;
  }
}

extern "C" void dl_cuda_residual_layernorm(dl_dtype dt, float *x_out, void *y, float *mean, float *rstd,
                                           const float *x_in, const void *branch, const void *gamma, const void *g,
                                           const void *b, int rows, int d, float eps, cudaStream_t s) {
  const void *ptrs[] = {x_out, y, x_in, branch, gamma, g, b};
  const int vec = dl_vec_row_width(d, ptrs, 7);
  const dim3 block(32, ROWS_PER_BLOCK), grid(dl_blocks(rows, ROWS_PER_BLOCK));
  DL_DISPATCH(dt, {
    if (vec == 4)
      residual_layernorm_kernel<T, 4><<<grid, block, 0, s>>>(x_out, (T *)y, mean, rstd, x_in, (const T *)branch,
                                                             (const T *)gamma, (const T *)g, (const T *)b, rows, d,
                                                             eps);
    else
      residual_layernorm_kernel<T, 1><<<grid, block, 0, s>>>(x_out, (T *)y, mean, rstd, x_in, (const T *)branch,
                                                             (const T *)gamma, (const T *)g, (const T *)b, rows, d,
                                                             eps);
  });
  cudaCheckLaunch();
}

// The LayerNorm backward with its parameter gradients in the same pass:
// each block takes rows in a grid stride (one warp per row), adds dx into
// the float32 residual gradient, and sums dg, db for its rows in shared
// memory; one atomic per column and block at the end.
template <typename T, int V>
__global__ void layernorm_backward_residual_kernel(float *dresid, float *dg, float *db, const T *dy,
                                                   const float *x, const T *g, const float *mean, const float *rstd,
                                                   int rows, int d) {
  extern __shared__ float acc[];  // dg sums [d], then db sums [d]
  const int lane = threadIdx.x, tid = threadIdx.y * 32 + lane;
  for (int j = tid; j < 2 * d; j += 32 * ROWS_PER_BLOCK) acc[j] = 0.0f;
  __syncthreads();
  for (int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.y; row < rows; row += gridDim.x * ROWS_PER_BLOCK) {
    const size_t base = (size_t)row * d;
    const float mu = mean[row], rs = rstd[row];
    float s1 = 0.0f, s2 = 0.0f;  // sums of dxhat and dxhat * xhat
    for (int j = lane * V; j < d; j += 32 * V) {
      float dyv[V], xv[V], gv[V];
      dl_ldv<V>(dyv, dy + base + j);
      dl_ldv<V>(xv, x + base + j);
      dl_ldv<V>(gv, g + j);
      for (int k = 0; k < V; k++) {
        const float dxh = dyv[k] * gv[k], xh = (xv[k] - mu) * rs;
        s1 += dxh;
        s2 += dxh * xh;
        atomicAdd(acc + j + k, dyv[k] * xh);  // shared-memory atomics: the block's 8 warps share columns
        atomicAdd(acc + d + j + k, dyv[k]);
      }
    }
    s1 = dl_warp_sum(s1) / (float)d;
    s2 = dl_warp_sum(s2) / (float)d;
    for (int j = lane * V; j < d; j += 32 * V) {
      float dyv[V], xv[V], gv[V], r[V];
      dl_ldv<V>(dyv, dy + base + j);
      dl_ldv<V>(xv, x + base + j);
      dl_ldv<V>(gv, g + j);
      dl_ldv<V>(r, dresid + base + j);
      for (int k = 0; k < V; k++) r[k] += rs * (dyv[k] * gv[k] - s1 - (xv[k] - mu) * rs * s2);
      dl_stv<V>(dresid + base + j, r);
    }
  }
  __syncthreads();
  for (int j = tid; j < d; j += 32 * ROWS_PER_BLOCK) {
    if (dg) atomicAdd(dg + j, acc[j]);
    if (db) atomicAdd(db + j, acc[d + j]);
  }
}

// Enough blocks to fill a GPU several times over, few enough that the
// per-block atomics on dg, db stay a small share of the traffic.
#define LN_BACKWARD_MAX_BLOCKS 512u

extern "C" void dl_cuda_layernorm_backward_residual(dl_dtype dt, float *dresid, float *dg, float *db,
                                                    const void *dy, const float *x, const void *g,
                                                    const float *mean, const float *rstd, int rows, int d,
                                                    cudaStream_t s) {
  const void *ptrs[] = {dresid, dy, x, g};
  const int vec = dl_vec_row_width(d, ptrs, 4);
  unsigned blocks = dl_blocks(rows, ROWS_PER_BLOCK);
  if (blocks > LN_BACKWARD_MAX_BLOCKS) blocks = LN_BACKWARD_MAX_BLOCKS;
  const dim3 block(32, ROWS_PER_BLOCK);
  const size_t smem = 2 * (size_t)d * sizeof(float);
  DL_DISPATCH(dt, {
    if (vec == 4)
      layernorm_backward_residual_kernel<T, 4><<<blocks, block, smem, s>>>(dresid, dg, db, (const T *)dy, x,
                                                                           (const T *)g, mean, rstd, rows, d);
    else
      layernorm_backward_residual_kernel<T, 1><<<blocks, block, smem, s>>>(dresid, dg, db, (const T *)dy, x,
                                                                           (const T *)g, mean, rstd, rows, d);
  });
  cudaCheckLaunch();
}

// The backward of x += gamma * y (y = branch + bias) in one pass over dx and
// y: dy = gamma * dx (dtype, the GEMM operand), dgamma += sum_r dx * y and,
// when dbias is given, the branch's bias gradient dbias += sum_r gamma * dx
// (float32, before dy's rounding). 32 columns per block, 256-row chunks, one
// atomic per column and block.
#define LS_ROWS 256
template <typename T>
__global__ void layerscale_backward_kernel(T *dy, float *dgamma, float *dbias, const float *dx, const T *y,
                                           const T *gamma, int rows, int d) {
  __shared__ float pg[8][33], pb[8][33];
  const int col = blockIdx.x * 32 + threadIdx.x;
  const int r0 = blockIdx.y * LS_ROWS, r1 = min(rows, r0 + LS_ROWS);
  float ag = 0.0f, ab = 0.0f;
  if (col < d) {
    const float gm = dl_ld(gamma + col);
    for (int r = r0 + threadIdx.y; r < r1; r += 8) {
      const size_t i = (size_t)r * d + col;
      const float g = dx[i], dyv = gm * g;
      dl_st(dy + i, dyv);
      ag += g * dl_ld(y + i);
      ab += dyv;
    }
  }
  pg[threadIdx.y][threadIdx.x] = ag;
  pb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && col < d) {
    for (int k = 1; k < 8; k++) {
      ag += pg[k][threadIdx.x];
      ab += pb[k][threadIdx.x];
    }
    atomicAdd(dgamma + col, ag);
    if (dbias) atomicAdd(dbias + col, ab);
  }
}

extern "C" void dl_cuda_layerscale_backward(dl_dtype dt, void *dy, float *dgamma, float *dbias, const float *dx,
                                            const void *y, const void *gamma, int rows, int d, cudaStream_t s) {
  const dim3 block(32, 8), grid(dl_blocks(d, 32), dl_blocks(rows, LS_ROWS));
  DL_DISPATCH(dt, layerscale_backward_kernel<T><<<grid, block, 0, s>>>((T *)dy, dgamma, dbias, dx, (const T *)y,
                                                                       (const T *)gamma, rows, d));
  cudaCheckLaunch();
}
