// Flash attention for head dimension 64, forward and backward, in the layout
// of the CPU op (qkv [batch*t, 3*heads*64], q then k then v, head-major).
// No t x t matrix is ever stored: the forward keeps a running maximum and sum
// per query (online softmax) and saves log-sum-exp; the backward recomputes
// the probabilities from it.
//
// Plain CUDA-core arithmetic, one thread per query row (forward, dQ) or key
// row (dK, dV), float32 accumulation: chosen because it can be reasoned
// about without a GPU to test on. cuDNN's fused attention runs instead where
// its support check passes (attention_dispatch.c); these are the fallback.
#include "model/cuda/cuda_check.h"
#include "model/cuda/kernels_common.cuh"

#define HD DL_CUDA_ATTN_HEAD_DIM
#define ROWS 64        // query (forward, dQ) or key (dK, dV) rows per block: one per thread
#define KV_TILE 64     // keys per shared-memory tile in the forward
#define BWD_TILE 16    // rows of the other side per shared-memory tile in the backward
#define LOG2E 1.4426950408889634f

template <typename T>
__global__ void __launch_bounds__(ROWS) flash_forward_kernel(T *out, float *lse, const T *qkv, int t, int heads,
                                                             float scale) {
  __shared__ float ks[KV_TILE][HD], vs[KV_TILE][HD];
  __shared__ float scores[KV_TILE][ROWS];  // [key][thread]: each thread its own column
  const int b = blockIdx.z, h = blockIdx.y, qi = blockIdx.x * ROWS + threadIdx.x;
  const int D = heads * HD, ld = 3 * D;
  const T *base = qkv + (size_t)b * t * ld + h * HD;
  const bool active = qi < t;
  float q[HD], acc[HD];
  // Scores in base-2 units: exp2f is one instruction.
  const float qscale = scale * LOG2E;
  for (int d = 0; d < HD; d++) {
    q[d] = active ? dl_ld(base + (size_t)qi * ld + d) * qscale : 0.0f;
    acc[d] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int k0 = 0; k0 < t; k0 += KV_TILE) {
    const int nk = min(KV_TILE, t - k0);
    __syncthreads();  // the previous tile is no longer read
    for (int i = threadIdx.x; i < KV_TILE * HD; i += ROWS) {
      const int r = i / HD, d = i % HD;
      const bool in = r < nk;
      ks[r][d] = in ? dl_ld(base + (size_t)(k0 + r) * ld + D + d) : 0.0f;
      vs[r][d] = in ? dl_ld(base + (size_t)(k0 + r) * ld + 2 * D + d) : 0.0f;
    }
    __syncthreads();
    float tile_max = -INFINITY;
    for (int j = 0; j < nk; j++) {
      float s = 0.0f;
#pragma unroll
      for (int d = 0; d < HD; d++) s += q[d] * ks[j][d];
      scores[j][threadIdx.x] = s;
      tile_max = fmaxf(tile_max, s);
    }
    const float m_new = fmaxf(m, tile_max);
    const float correction = exp2f(m - m_new);  // 0 on the first tile (m = -inf)
    l *= correction;
#pragma unroll
    for (int d = 0; d < HD; d++) acc[d] *= correction;
    for (int j = 0; j < nk; j++) {
      const float p = exp2f(scores[j][threadIdx.x] - m_new);
      l += p;
#pragma unroll
      for (int d = 0; d < HD; d++) acc[d] += p * vs[j][d];
    }
    m = m_new;
  }
  if (!active) return;
  const float inv = 1.0f / l;
  T *o = out + ((size_t)b * t + qi) * D + h * HD;
  for (int d = 0; d < HD; d++) dl_st(o + d, acc[d] * inv);
  if (lse) lse[((size_t)b * heads + h) * t + qi] = (m + log2f(l)) / LOG2E;  // natural-log units
}

extern "C" int dl_cuda_attention(dl_dtype dt, void *out, float *lse, const void *qkv, int batch, int t, int heads,
                                 int hd, cudaStream_t s) {
  if (hd != HD || t <= 0 || batch <= 0 || heads <= 0) return -1;
  const dim3 grid(dl_blocks(t, ROWS), heads, batch);
  const float scale = 1.0f / sqrtf((float)hd);
  DL_DISPATCH(dt, flash_forward_kernel<T><<<grid, ROWS, 0, s>>>((T *)out, lse, (const T *)qkv, t, heads, scale));
  cudaCheckOr(cudaGetLastError(), -1);  // a launch reports a bad configuration only here
  return 0;
}

// delta[b, h, i] = sum_d dout[i, d] * out[i, d]: the row term of the softmax backward.
template <typename T>
__global__ void attention_delta_kernel(float *delta, const T *dout, const T *out, int batch, int t, int heads) {
  const size_t n = (size_t)batch * heads * t;
  const size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (idx >= n) return;
  const int i = (int)(idx % t), h = (int)(idx / t % heads), b = (int)(idx / t / heads);
  const size_t off = ((size_t)b * t + i) * heads * HD + h * HD;
  float acc = 0.0f;
  for (int d = 0; d < HD; d++) acc += dl_ld(dout + off + d) * dl_ld(out + off + d);
  delta[idx] = acc;
}

// One thread per key j: dV_j = sum_i p_ij dO_i, dK_j = scale sum_i ds_ij q_i
// with ds_ij = p_ij (dO_i . v_j - delta_i).
template <typename T>
__global__ void __launch_bounds__(ROWS) flash_backward_kv_kernel(T *dqkv, const T *qkv, const T *dout,
                                                                 const float *lse, const float *delta, int t,
                                                                 int heads, float scale) {
  __shared__ float qs[BWD_TILE][HD], dos[BWD_TILE][HD], lses[BWD_TILE], deltas[BWD_TILE];
  __shared__ float dk[HD][ROWS], dv[HD][ROWS];  // [dim][thread]: conflict-free columns
  const int b = blockIdx.z, h = blockIdx.y, kj = blockIdx.x * ROWS + threadIdx.x;
  const int D = heads * HD, ld = 3 * D;
  const T *base = qkv + (size_t)b * t * ld + h * HD;
  const T *dob = dout + (size_t)b * t * D + h * HD;
  const float *lseb = lse + ((size_t)b * heads + h) * t, *deltab = delta + ((size_t)b * heads + h) * t;
  const bool active = kj < t;
  float k[HD], v[HD];
  for (int d = 0; d < HD; d++) {
    k[d] = active ? dl_ld(base + (size_t)kj * ld + D + d) : 0.0f;
    v[d] = active ? dl_ld(base + (size_t)kj * ld + 2 * D + d) : 0.0f;
    dk[d][threadIdx.x] = 0.0f;
    dv[d][threadIdx.x] = 0.0f;
  }
  for (int i0 = 0; i0 < t; i0 += BWD_TILE) {
    const int ni = min(BWD_TILE, t - i0);
    __syncthreads();
    for (int e = threadIdx.x; e < BWD_TILE * HD; e += ROWS) {
      const int r = e / HD, d = e % HD;
      const bool in = r < ni;
      qs[r][d] = in ? dl_ld(base + (size_t)(i0 + r) * ld + d) : 0.0f;
      dos[r][d] = in ? dl_ld(dob + (size_t)(i0 + r) * D + d) : 0.0f;
    }
    if (threadIdx.x < BWD_TILE) {
      const bool in = (int)threadIdx.x < ni;
      lses[threadIdx.x] = in ? lseb[i0 + threadIdx.x] : 0.0f;
      deltas[threadIdx.x] = in ? deltab[i0 + threadIdx.x] : 0.0f;
    }
    __syncthreads();
    if (!active) continue;
    for (int i = 0; i < ni; i++) {
      float s = 0.0f, dp = 0.0f;
#pragma unroll
      for (int d = 0; d < HD; d++) {
        s += qs[i][d] * k[d];
        dp += dos[i][d] * v[d];
      }
      const float p = expf(s * scale - lses[i]);
      const float ds = p * (dp - deltas[i]) * scale;
#pragma unroll
      for (int d = 0; d < HD; d++) {
        dv[d][threadIdx.x] += p * dos[i][d];
        dk[d][threadIdx.x] += ds * qs[i][d];
      }
    }
  }
  if (!active) return;
  T *o = dqkv + ((size_t)b * t + kj) * ld + h * HD;
  for (int d = 0; d < HD; d++) {
    dl_st(o + D + d, dk[d][threadIdx.x]);
    dl_st(o + 2 * D + d, dv[d][threadIdx.x]);
  }
}

// One thread per query i: dQ_i = scale sum_j ds_ij k_j.
template <typename T>
__global__ void __launch_bounds__(ROWS) flash_backward_q_kernel(T *dqkv, const T *qkv, const T *dout,
                                                                const float *lse, const float *delta, int t,
                                                                int heads, float scale) {
  __shared__ float ks[BWD_TILE][HD], vs[BWD_TILE][HD];
  __shared__ float dq[HD][ROWS];
  const int b = blockIdx.z, h = blockIdx.y, qi = blockIdx.x * ROWS + threadIdx.x;
  const int D = heads * HD, ld = 3 * D;
  const T *base = qkv + (size_t)b * t * ld + h * HD;
  const bool active = qi < t;
  float q[HD], dov[HD];
  for (int d = 0; d < HD; d++) {
    q[d] = active ? dl_ld(base + (size_t)qi * ld + d) : 0.0f;
    dov[d] = active ? dl_ld(dout + ((size_t)b * t + qi) * D + h * HD + d) : 0.0f;
    dq[d][threadIdx.x] = 0.0f;
  }
  const size_t row = ((size_t)b * heads + h) * t + qi;
  const float my_lse = active ? lse[row] : 0.0f, my_delta = active ? delta[row] : 0.0f;
  for (int j0 = 0; j0 < t; j0 += BWD_TILE) {
    const int nj = min(BWD_TILE, t - j0);
    __syncthreads();
    for (int e = threadIdx.x; e < BWD_TILE * HD; e += ROWS) {
      const int r = e / HD, d = e % HD;
      const bool in = r < nj;
      ks[r][d] = in ? dl_ld(base + (size_t)(j0 + r) * ld + D + d) : 0.0f;
      vs[r][d] = in ? dl_ld(base + (size_t)(j0 + r) * ld + 2 * D + d) : 0.0f;
    }
    __syncthreads();
    if (!active) continue;
    for (int j = 0; j < nj; j++) {
      float s = 0.0f, dp = 0.0f;
#pragma unroll
      for (int d = 0; d < HD; d++) {
        s += q[d] * ks[j][d];
        dp += dov[d] * vs[j][d];
      }
      const float p = expf(s * scale - my_lse);
      const float ds = p * (dp - my_delta) * scale;
#pragma unroll
      for (int d = 0; d < HD; d++) dq[d][threadIdx.x] += ds * ks[j][d];
    }
  }
  if (!active) return;
  T *o = dqkv + ((size_t)b * t + qi) * ld + h * HD;
  for (int d = 0; d < HD; d++) dl_st(o + d, dq[d][threadIdx.x]);
}

extern "C" size_t dl_cuda_attention_backward_scratch_floats(int batch, int t, int heads) {
  return (size_t)batch * heads * t;
}

extern "C" int dl_cuda_attention_backward(dl_dtype dt, void *dqkv, const void *dout, const void *qkv,
                                          const void *out, const float *lse, int batch, int t, int heads, int hd,
                                          float *scratch, cudaStream_t s) {
  if (hd != HD || t <= 0 || batch <= 0 || heads <= 0) return -1;
  const size_t rows = (size_t)batch * heads * t;
  const dim3 grid(dl_blocks(t, ROWS), heads, batch);
  const float scale = 1.0f / sqrtf((float)hd);
  DL_DISPATCH(dt, {
    attention_delta_kernel<T><<<dl_blocks(rows, 256), 256, 0, s>>>(scratch, (const T *)dout, (const T *)out, batch,
                                                                   t, heads);
    flash_backward_kv_kernel<T><<<grid, ROWS, 0, s>>>((T *)dqkv, (const T *)qkv, (const T *)dout, lse, scratch, t,
                                                      heads, scale);
    flash_backward_q_kernel<T><<<grid, ROWS, 0, s>>>((T *)dqkv, (const T *)qkv, (const T *)dout, lse, scratch, t,
                                                     heads, scale);
  });
  cudaCheckOr(cudaGetLastError(), -1);  // a launch reports a bad configuration only here
  return 0;
}
