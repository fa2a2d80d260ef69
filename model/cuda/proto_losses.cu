// Sinkhorn-Knopp, centering and the cross-entropy on the teacher's one copy
// of logits, in the log domain (model/cuda/proto_losses.h).
#include <cfloat>

#include "model/cuda/cuda_check.h"
#include "model/cuda/kernels_common.cuh"
#include "model/cuda/proto_losses.h"

#define THREADS 256
#define COL_ROWS 64  // rows per column-sum block: 256 x 64 elements, one atomic per column

// ---- column sums: one block per 256 columns x COL_ROWS rows ----
// row_off NULL: sums of x itself; otherwise of exp(x / temp + row_off + col_off).
template <typename T>
static __global__ void column_sums_kernel(float *cols, const T *x, const float *row_off, const float *col_off, int rows,
                                   int k, float inv_t) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= k) return;
  const float cj = row_off ? col_off[j] : 0.0f;
  for (int r0 = blockIdx.y * COL_ROWS; r0 < rows; r0 += gridDim.y * COL_ROWS) {
    const int r1 = r0 + COL_ROWS < rows ? r0 + COL_ROWS : rows;
    float acc = 0.0f;
    for (int r = r0; r < r1; r++) {
      const float v = dl_ld(x + (size_t)r * k + j);
      acc += row_off ? expf(v * inv_t + row_off[r] + cj) : v;
    }
    atomicAdd(cols + j, acc);
  }
}

template <typename T>
static void column_sums(float *cols, const T *x, const float *row_off, const float *col_off, int rows, int k,
                        float inv_t, cudaStream_t s) {
  cudaCheck(cudaMemsetAsync(cols, 0, (size_t)k * sizeof(float), s));
  const unsigned tiles = dl_blocks((size_t)rows, COL_ROWS);
  const dim3 grid(dl_blocks((size_t)k, THREADS), tiles < 65535 ? tiles : 65535);
  column_sums_kernel<T><<<grid, THREADS, 0, s>>>(cols, x, row_off, col_off, rows, k, inv_t);
  cudaCheckLaunch();
}

extern "C" void dl_cuda_column_sums(float *sums, const float *x, int rows, int k, cudaStream_t s) {
  column_sums<float>(sums, x, NULL, NULL, rows, k, 1.0f, s);
}

// ---- Sinkhorn-Knopp in the log domain ----
// scalars: [0] the maximum of l / temp, [1] the sum of exp(l / temp - max), [2] the rows (B).
static __global__ void sk_start_kernel(float *scalars, int rows) {
  scalars[0] = -INFINITY;
  scalars[1] = 0.0f;
  scalars[2] = (float)rows;
}
template <typename T>
static __global__ void sk_max_kernel(float *mx, const T *l, size_t n, float inv_t) {
  __shared__ float red[32];
  float m = -INFINITY;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    m = fmaxf(m, dl_ld(l + i) * inv_t);
  m = dl_block_max(m, red);
  if (threadIdx.x == 0) dl_atomic_max_float(mx, m);
}
template <typename T>
static __global__ void sk_total_kernel(float *sum, const T *l, const float *mx, size_t n, float inv_t) {
  __shared__ float red[32];
  float acc = 0.0f;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    acc += expf(dl_ld(l + i) * inv_t - *mx);
  acc = dl_block_sum(acc, red);
  if (threadIdx.x == 0) atomicAdd(sum, acc);
}
// q = exp(l / temp - max) / sum: row_off = -max - log(sum) (+ log B when no
// iteration follows: the final q *= B), col_off = 0.
static __global__ void sk_offsets_kernel(float *row_off, float *col_off, const float *scalars, int rows, int k,
                                  int final) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const float off = -scalars[0] - logf(scalars[1]) + (final ? logf(scalars[2]) : 0.0f);
  if (i < rows) row_off[i] = off;
  if (i < k) col_off[i] = 0.0f;
}
// q[:, j] /= cols[j] / k; a prototype whose every exp underflowed keeps 0.
static __global__ void sk_columns_kernel(float *col_off, const float *cols, int k) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j < k) col_off[j] = cols[j] > 0.0f ? col_off[j] - logf(cols[j]) - logf((float)k) : -INFINITY;
}
// q[r, :] = exp(a_j - logsumexp(a)) (/ B): a_j = l / temp + col_off[j]. The
// maximum is subtracted inside the row, so a row far below the group's
// maximum gets its own exact value (the CPU's sk_underflowed_row).
template <typename T>
static __global__ void rows_lse_kernel(float *row_off, const T *l, const float *col_off, int k, float inv_t,
                                const float *count) {
  __shared__ float red[32];
  const T *lr = l + (size_t)blockIdx.x * k;
  float m = -INFINITY, z = 0.0f;
  for (int j = threadIdx.x; j < k; j += blockDim.x) {
    const float a = dl_ld(lr + j) * inv_t + col_off[j];
    if (a == -INFINITY) continue;
    if (a > m) z = z * expf(m - a) + 1.0f, m = a;
    else z += expf(a - m);
  }
  const float M = dl_block_max(m, red);
  z = dl_block_sum(m == -INFINITY ? 0.0f : z * expf(m - M), red);
  if (threadIdx.x == 0) row_off[blockIdx.x] = -(M + logf(z)) - (count ? logf(*count) : 0.0f);
}

static void reduce(const dl_cuda_reduce *red, float *data, size_t n, int is_max, cudaStream_t s) {
  if (red && red->fn) red->fn(data, n, is_max, red->ctx, s);
}

template <typename T>
static void sinkhorn(const dl_cuda_targets *tg, const T *l, int iters, const dl_cuda_reduce *red, float *scratch,
                     cudaStream_t s) {
  const int b = tg->rows, k = tg->k;
  const size_t n = (size_t)b * k;
  float *cols = scratch, *scalars = scratch + k;
  const unsigned grid = dl_blocks(n, THREADS) < 1024 ? dl_blocks(n, THREADS) : 1024;
  sk_start_kernel<<<1, 1, 0, s>>>(scalars, b);
  sk_max_kernel<T><<<grid, THREADS, 0, s>>>(scalars, l, n, tg->inv_t);
  reduce(red, scalars, 1, 1, s);
  sk_total_kernel<T><<<grid, THREADS, 0, s>>>(scalars + 1, l, scalars, n, tg->inv_t);
  reduce(red, scalars + 1, 2, 0, s);
  const int both = b > k ? b : k;
  sk_offsets_kernel<<<dl_blocks((size_t)both, THREADS), THREADS, 0, s>>>(tg->row_off, tg->col_off, scalars, b, k,
                                                                       iters == 0);
  for (int it = 0; it < iters; it++) {
    column_sums<T>(cols, l, tg->row_off, tg->col_off, b, k, tg->inv_t, s);
    reduce(red, cols, (size_t)k, 0, s);
    sk_columns_kernel<<<dl_blocks((size_t)k, THREADS), THREADS, 0, s>>>(tg->col_off, cols, k);
    // The last iteration's / B and the final * B cancel.
    rows_lse_kernel<T><<<b, THREADS, 0, s>>>(tg->row_off, l, tg->col_off, k, tg->inv_t,
                                             it == iters - 1 ? NULL : scalars + 2);
  }
  cudaCheckLaunch();
}

extern "C" void dl_cuda_targets_sinkhorn(const dl_cuda_targets *tg, int iters, const dl_cuda_reduce *red,
                                         float *scratch, cudaStream_t s) {
  DL_DISPATCH(tg->dtype, sinkhorn<T>(tg, (const T *)tg->logits, iters, red, scratch, s));
}

// ---- centering ----
static __global__ void center_offsets_kernel(float *col_off, const float *center, int k, float inv_t) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j < k) col_off[j] = -center[j] * inv_t;
}
static __global__ void center_count_kernel(float *slot, int b) { *slot = (float)b; }
static __global__ void center_move_kernel(float *center, const float *sums, int k, float momentum) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j < k) center[j] = center[j] * momentum + sums[j] / sums[k] * (1.0f - momentum);
}

template <typename T>
static void centering(const dl_cuda_targets *tg, const T *l, float *center, float momentum,
                      const dl_cuda_reduce *red, float *scratch, cudaStream_t s) {
  const int b = tg->rows, k = tg->k;
  const unsigned kb = dl_blocks((size_t)k, THREADS);
  // The softmax takes the center before this batch moves it.
  center_offsets_kernel<<<kb, THREADS, 0, s>>>(tg->col_off, center, k, tg->inv_t);
  rows_lse_kernel<T><<<b, THREADS, 0, s>>>(tg->row_off, l, tg->col_off, k, tg->inv_t, NULL);
  column_sums<T>(scratch, l, NULL, NULL, b, k, 1.0f, s);
  center_count_kernel<<<1, 1, 0, s>>>(scratch + k, b);
  reduce(red, scratch, (size_t)k + 1, 0, s);
  center_move_kernel<<<kb, THREADS, 0, s>>>(center, scratch, k, momentum);
  cudaCheckLaunch();
}

extern "C" void dl_cuda_targets_center(const dl_cuda_targets *tg, float *center, float momentum,
                                       const dl_cuda_reduce *red, float *scratch, cudaStream_t s) {
  DL_DISPATCH(tg->dtype, centering<T>(tg, (const T *)tg->logits, center, momentum, red, scratch, s));
}

// ---- the fused cross-entropy over a chunk of student rows ----
template <typename T>
static __global__ void ce_chunk_kernel(dl_cuda_ce_chunk c, T *logits, const T *tl, const float *row_off,
                                const float *col_off, int k, float inv_tt, int row0) {
  __shared__ float red[32];
  const int r = row0 + blockIdx.x;
  T *sr = logits + (size_t)blockIdx.x * k;
  int nt = 0, trow[DL_PROTO_MAX_TEACHER_CROPS], slot[DL_PROTO_MAX_TEACHER_CROPS];
  if (c.dino) {
    const int si = r / c.batch, img = r % c.batch;
    const int before = si < c.nt ? si * (c.nt - 1) : c.nt * (c.nt - 1) + (si - c.nt) * c.nt;
    for (int ti = 0; ti < c.nt; ti++) {
      if (ti == si) continue;
      trow[nt] = ti * c.batch + img, slot[nt] = (before + nt) * c.batch + img;
      nt++;
    }
  } else {
    trow[0] = slot[0] = r, nt = 1;
  }
  float ro[DL_PROTO_MAX_TEACHER_CROPS], dot[DL_PROTO_MAX_TEACHER_CROPS], ts[DL_PROTO_MAX_TEACHER_CROPS];
#pragma unroll
  for (int p = 0; p < DL_PROTO_MAX_TEACHER_CROPS; p++) ro[p] = p < nt ? row_off[trow[p]] : 0.0f, dot[p] = ts[p] = 0.0f;
  // Pass 1: the student row's logsumexp (online), each target's sum and dot product.
  float m = -INFINITY, z = 0.0f;
  for (int j = threadIdx.x; j < k; j += blockDim.x) {
    const float sv = dl_ld(sr + j) * c.inv_temp, cj = col_off[j];
    if (sv > m) z = z * expf(m - sv) + 1.0f, m = sv;
    else z += expf(sv - m);
#pragma unroll
    for (int p = 0; p < DL_PROTO_MAX_TEACHER_CROPS; p++) {
      if (p >= nt) break;
      const float t = expf(dl_ld(tl + (size_t)trow[p] * k + j) * inv_tt + ro[p] + cj);
      dot[p] += t * sv;
      ts[p] += t;
    }
  }
  const float M = dl_block_max(m, red);
  const float lse = M + logf(dl_block_sum(m == -INFINITY ? 0.0f : z * expf(m - M), red));
  const float w = c.weights ? c.weights[r] : 1.0f;
#pragma unroll
  for (int p = 0; p < DL_PROTO_MAX_TEACHER_CROPS; p++) {
    if (p >= nt) break;
    dot[p] = dl_block_sum(dot[p], red);
    ts[p] = dl_block_sum(ts[p], red);
    if (threadIdx.x == 0) c.loss_rows[slot[p]] = -w * (dot[p] - ts[p] * lse) * c.loss_scale;
  }
  // Pass 2: the gradient over the logits, summed over the targets.
  float tsum = 0.0f;
#pragma unroll
  for (int p = 0; p < DL_PROTO_MAX_TEACHER_CROPS; p++) tsum += p < nt ? ts[p] : 0.0f;
  const float g = c.grad_scale * w * c.inv_temp;
  for (int j = threadIdx.x; j < k; j += blockDim.x) {
    const float cj = col_off[j];
    float tj = 0.0f;
#pragma unroll
    for (int p = 0; p < DL_PROTO_MAX_TEACHER_CROPS; p++) {
      if (p >= nt) break;
      tj += expf(dl_ld(tl + (size_t)trow[p] * k + j) * inv_tt + ro[p] + cj);
    }
    dl_st(sr + j, g * (expf(dl_ld(sr + j) * c.inv_temp - lse) * tsum - tj));
  }
}

extern "C" void dl_cuda_cross_entropy_chunk(const dl_cuda_ce_chunk *c, void *logits, const dl_cuda_targets *tg,
                                            int row0, int n, cudaStream_t s) {
  if (n <= 0) return;
  DL_DISPATCH(tg->dtype, ce_chunk_kernel<T><<<n, THREADS, 0, s>>>(*c, (T *)logits, (const T *)tg->logits,
                                                                  tg->row_off, tg->col_off, tg->k, tg->inv_t,
                                                                  row0));
  cudaCheckLaunch();
}
