// The DINOv2 losses on the GPU, float32 as the official code: softmax with
// centering, row-wise cross-entropy over large prototype counts (one block
// per row, so 131072 prototypes are 512 per thread), Sinkhorn-Knopp and KoLeo.
// These hold whole [rows, k] matrices: the training step uses the chunked
// path of proto_losses.cu instead; test_cuda_ops holds these to the CPU.
#include <cfloat>

#include "model/cuda/cuda_check.h"
#include "model/cuda/kernels_common.cuh"
#include "model/cuda/proto_losses.h"

#define THREADS 256

__global__ void softmax_center_kernel(float *probs, const float *logits, const float *center, int k, float inv_t) {
  __shared__ float red[32];
  const float *lr = logits + (size_t)blockIdx.x * k;
  float *pr = probs + (size_t)blockIdx.x * k;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < k; j += blockDim.x) mx = fmaxf(mx, (lr[j] - (center ? center[j] : 0.0f)) * inv_t);
  mx = dl_block_max(mx, red);
  float sum = 0.0f;
  for (int j = threadIdx.x; j < k; j += blockDim.x) {
    const float e = expf((lr[j] - (center ? center[j] : 0.0f)) * inv_t - mx);
    pr[j] = e;
    sum += e;
  }
  const float inv = 1.0f / dl_block_sum(sum, red);
  for (int j = threadIdx.x; j < k; j += blockDim.x) pr[j] *= inv;
}

extern "C" void dl_cuda_softmax_center(float *probs, const float *logits, const float *center, int b, int k,
                                       float temp, cudaStream_t s) {
  softmax_center_kernel<<<b, THREADS, 0, s>>>(probs, logits, center, k, 1.0f / temp);
  cudaCheckLaunch();
}

// Two reads of each row: the student's logsumexp found online along with
// the target's sum and its dot product with s / temp, then the gradient.
__global__ void cross_entropy_rows_kernel(float *loss_rows, float *d_student, const float *student,
                                          const float *target, const float *weights, int k, float inv_t,
                                          float grad_scale, int accumulate) {
  __shared__ float red[32];
  const int r = blockIdx.x;
  const float *sr = student + (size_t)r * k, *tr = target + (size_t)r * k;
  float mx = -INFINITY, z = 0.0f, dot = 0.0f, tsum = 0.0f;
  for (int j = threadIdx.x; j < k; j += blockDim.x) {
    const float v = sr[j] * inv_t, t = tr[j];
    if (v > mx) z = z * expf(mx - v) + 1.0f, mx = v;
    else z += expf(v - mx);
    dot += t * v;
    tsum += t;
  }
  const float M = dl_block_max(mx, red);
  const float lse = M + logf(dl_block_sum(mx == -INFINITY ? 0.0f : z * expf(mx - M), red));
  dot = dl_block_sum(dot, red);
  tsum = dl_block_sum(tsum, red);
  const float w = weights ? weights[r] : 1.0f;
  if (threadIdx.x == 0) loss_rows[r] = -w * (dot - tsum * lse);
  if (!d_student) return;
  float *g = d_student + (size_t)r * k;
  const float c = grad_scale * w * inv_t;
  for (int j = threadIdx.x; j < k; j += blockDim.x) {
    const float v = c * (expf(sr[j] * inv_t - lse) * tsum - tr[j]);
    g[j] = accumulate ? g[j] + v : v;
  }
}

extern "C" void dl_cuda_cross_entropy_rows(float *loss_rows, float *d_student, const float *student,
                                           const float *target, const float *weights, int m, int k, float temp,
                                           float grad_scale, int accumulate, cudaStream_t s) {
  cross_entropy_rows_kernel<<<m, THREADS, 0, s>>>(loss_rows, d_student, student, target, weights, k, 1.0f / temp,
                                                  grad_scale, accumulate);
  cudaCheckLaunch();
}

// ---- Sinkhorn-Knopp ----
// scratch layout: [0, k) column sums, k: the maximum, k+1: sum of q, k+2: B.
__global__ void sk_init_kernel(float *scalars, int b) {
  scalars[0] = -INFINITY;
  scalars[1] = 0.0f;
  scalars[2] = (float)b;
}
__global__ void sk_max_kernel(float *mx, const float *logits, size_t n, float inv_t) {
  __shared__ float red[32];
  float m = -INFINITY;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    m = fmaxf(m, logits[i] * inv_t);
  m = dl_block_max(m, red);
  if (threadIdx.x == 0) dl_atomic_max_float(mx, m);
}
__global__ void sk_exp_kernel(float *q, float *sum, const float *logits, const float *mx, size_t n, float inv_t) {
  __shared__ float red[32];
  float acc = 0.0f;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    q[i] = expf(logits[i] * inv_t - *mx);
    acc += q[i];
  }
  acc = dl_block_sum(acc, red);
  if (threadIdx.x == 0) atomicAdd(sum, acc);
}
__global__ void sk_scale_kernel(float *q, const float *div, size_t n, int multiply) {
  const float f = multiply ? *div : 1.0f / *div;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    q[i] *= f;
}
__global__ void sk_scale_rows_kernel(float *x, size_t n, float f) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) x[i] *= f;
}
// As losses.c: below this a row's largest value, its entries within 2^-24
// of it are subnormal.
#define SK_ROW_FLOOR 0x1p-102f

__global__ void sk_rows_kernel(float *q, const float *cols, const float *B, int k, const float *logits,
                               float inv_t) {
  __shared__ float red[32];
  __shared__ double redd[32];
  float *qr = q + (size_t)blockIdx.x * k;
  float sum = 0.0f, row_max = 0.0f;
  for (int j = threadIdx.x; j < k; j += blockDim.x) {
    row_max = fmaxf(row_max, qr[j]);
    // A prototype whose every exp underflowed keeps 0 (not 0 / 0), as on the CPU.
    const float v = cols[j] > 0.0f ? qr[j] / cols[j] / (float)k : 0.0f;
    qr[j] = v;
    sum += v;
  }
  sum = dl_block_sum(sum, red);
  row_max = dl_block_max(row_max, red);
  if (!(row_max < SK_ROW_FLOOR || sum < FLT_MIN)) {
    for (int j = threadIdx.x; j < k; j += blockDim.x) qr[j] = qr[j] / sum / *B;
    return;
  }
  // The sample's exps underflowed, wholly or so far that its entries lost
  // precision (largest below SK_ROW_FLOOR; only in the first step): its row
  // from its own exp(logits / temp) and the column sums, as on the CPU
  // (losses.c sk_underflowed_row): (e_j / cols[j]) / sum_j' (e_j' / cols[j']) / B.
  const float *lr = logits + (size_t)blockIdx.x * k;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < k; j += blockDim.x) mx = fmaxf(mx, lr[j] * inv_t);
  mx = dl_block_max(mx, red);
  double s = 0.0;
  for (int j = threadIdx.x; j < k; j += blockDim.x)
    s += cols[j] > 0.0f ? exp((double)(lr[j] * inv_t) - mx) / cols[j] : 0.0;
  s = dl_block_sum_double(s, redd);
  for (int j = threadIdx.x; j < k; j += blockDim.x) {
    const double w = cols[j] > 0.0f ? exp((double)(lr[j] * inv_t) - mx) / cols[j] : 0.0;
    qr[j] = s > 0.0 ? (float)(w / s / *B) : 1.0f / (float)k / *B;
  }
}

static void reduce(const dl_cuda_reduce *red, float *data, size_t n, int is_max, cudaStream_t s) {
  if (red && red->fn) red->fn(data, n, is_max, red->ctx, s);
}

extern "C" void dl_cuda_sinkhorn_knopp(float *q, const float *logits, int b, int k, float temp, int iters,
                                       const dl_cuda_reduce *red, float *scratch, cudaStream_t s) {
  const size_t n = (size_t)b * k;
  const float inv_t = 1.0f / temp;
  float *cols = scratch, *scalars = scratch + k;
  const unsigned grid = dl_blocks(n, THREADS) < 1024 ? dl_blocks(n, THREADS) : 1024;
  sk_init_kernel<<<1, 1, 0, s>>>(scalars, b);
  sk_max_kernel<<<grid, THREADS, 0, s>>>(scalars, logits, n, inv_t);
  reduce(red, scalars, 1, 1, s);
  sk_exp_kernel<<<grid, THREADS, 0, s>>>(q, scalars + 1, logits, scalars, n, inv_t);
  reduce(red, scalars + 1, 2, 0, s);
  sk_scale_kernel<<<grid, THREADS, 0, s>>>(q, scalars + 1, n, 0);
  for (int it = 0; it < iters; it++) {
    dl_cuda_column_sums(cols, q, b, k, s);  // tiles of rows, added with atomics
    reduce(red, cols, (size_t)k, 0, s);
    sk_rows_kernel<<<b, THREADS, 0, s>>>(q, cols, scalars + 2, k, logits, inv_t);
  }
  sk_scale_kernel<<<grid, THREADS, 0, s>>>(q, scalars + 2, n, 1);
  cudaCheckLaunch();
}

// ---- centering ----
__global__ void center_count_kernel(float *slot, int b) { *slot = (float)b; }
__global__ void center_update_kernel(float *center, const float *sums, int k, float momentum) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j < k) center[j] = center[j] * momentum + sums[j] / sums[k] * (1.0f - momentum);
}

extern "C" void dl_cuda_center_update(float *center, const float *logits, int b, int k, float momentum,
                                      const dl_cuda_reduce *red, float *scratch, cudaStream_t s) {
  dl_cuda_column_sums(scratch, logits, b, k, s);
  center_count_kernel<<<1, 1, 0, s>>>(scratch + k, b);
  reduce(red, scratch, (size_t)k + 1, 0, s);
  center_update_kernel<<<dl_blocks(k, THREADS), THREADS, 0, s>>>(center, scratch, k, momentum);
  cudaCheckLaunch();
}

// ---- DINO: pairs of crops through the row cross-entropy ----
extern "C" void dl_cuda_dino_loss(float *loss_rows, float *d_student, const float *student, const float *teacher,
                                  int ns, int nt, int b, int k, float temp, int skip_same, float scale,
                                  cudaStream_t s) {
  const size_t crop = (size_t)b * k;
  if (d_student) cudaCheck(cudaMemsetAsync(d_student, 0, (size_t)ns * crop * sizeof(float), s));
  // Each pair adds (softmax * sum(t) - t) / temp for its teacher crop, so
  // the sum over pairs is the CPU's (softmax * sum_t sum(t) - sum_t t) / temp.
  int pair = 0;
  for (int si = 0; si < ns; si++)
    for (int ti = 0; ti < nt; ti++) {
      if (skip_same && si == ti) continue;
      cross_entropy_rows_kernel<<<b, THREADS, 0, s>>>(loss_rows + (size_t)pair * b,
                                                      d_student ? d_student + si * crop : NULL,
                                                      student + si * crop, teacher + ti * crop, NULL, k,
                                                      1.0f / temp, scale / (float)b, 1);
      pair++;
    }
  // The loss rows as the CPU totals them: -dot / b, times scale.
  if (pair) {
    const size_t n = (size_t)pair * b;
    sk_scale_rows_kernel<<<dl_blocks(n, THREADS), THREADS, 0, s>>>(loss_rows, n, scale / (float)b);
  }
  cudaCheckLaunch();
}

// ---- KoLeo ----
// scratch: y [n, d] (normalized rows), norms [n], dist [n], idx [n] (ints).
#define KOLEO_EPS 1e-8f

__global__ void koleo_normalize_kernel(float *y, float *norms, const float *x, int d) {
  __shared__ float red[32];
  const float *xr = x + (size_t)blockIdx.x * d;
  float ss = 0.0f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) ss += xr[j] * xr[j];
  const float norm = sqrtf(dl_block_sum(ss, red));
  const float den = norm > KOLEO_EPS ? norm : KOLEO_EPS;
  for (int j = threadIdx.x; j < d; j += blockDim.x) y[(size_t)blockIdx.x * d + j] = xr[j] / den;
  if (threadIdx.x == 0) norms[blockIdx.x] = norm;
}

// Row i's nearest neighbour (largest dot product, diagonal excluded, first
// index on ties) and the distance to it.
__global__ void koleo_neighbour_kernel(float *dist, int *idx, const float *y, int n, int d) {
  __shared__ float red[32];
  const int i = blockIdx.x;
  const float *yi = y + (size_t)i * d;
  int best = -1;
  float best_dot = 0.0f;
  for (int k = 0; k < n; k++) {
    float dot = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) dot += yi[j] * y[(size_t)k * d + j];
    dot = dl_block_sum(dot, red);
    if (k == i) dot = -1.0f;
    if (best < 0 || dot > best_dot) best = k, best_dot = dot;
  }
  float ss = 0.0f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const float diff = yi[j] - y[(size_t)best * d + j] + KOLEO_EPS;
    ss += diff * diff;
  }
  ss = dl_block_sum(ss, red);
  if (threadIdx.x == 0) {
    dist[i] = sqrtf(ss);
    idx[i] = best;
  }
}

__global__ void koleo_loss_kernel(float *loss, const float *dist, int n, float scale) {
  __shared__ float red[32];
  float acc = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) acc -= logf(dist[i] + KOLEO_EPS);
  acc = dl_block_sum(acc, red);
  if (threadIdx.x == 0) *loss = acc / (float)n * scale;
}

// dL/dy: each pair (i, nn(i)) pulls on both rows (atomics: rows are shared).
__global__ void koleo_dy_kernel(float *dy, const float *y, const float *dist, const int *idx, int n, int d,
                                float scale) {
  const int i = blockIdx.x, nn = idx[i];
  if (dist[i] == 0.0f) return;
  const float c = -scale / ((float)n * (dist[i] + KOLEO_EPS) * dist[i]);
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const float diff = y[(size_t)i * d + j] - y[(size_t)nn * d + j] + KOLEO_EPS;
    atomicAdd(dy + (size_t)i * d + j, c * diff);
    atomicAdd(dy + (size_t)nn * d + j, -c * diff);
  }
}

// Through the normalization: dx = (dy - y (y . dy)) / ||x||, in place.
__global__ void koleo_dx_kernel(float *g, const float *y, const float *norms, int d) {
  __shared__ float red[32];
  float *gr = g + (size_t)blockIdx.x * d;
  const float *yr = y + (size_t)blockIdx.x * d;
  const float norm = norms[blockIdx.x];
  if (norm <= KOLEO_EPS) {
    for (int j = threadIdx.x; j < d; j += blockDim.x) gr[j] /= KOLEO_EPS;
    return;
  }
  float dot = 0.0f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) dot += yr[j] * gr[j];
  dot = dl_block_sum(dot, red);
  for (int j = threadIdx.x; j < d; j += blockDim.x) gr[j] = (gr[j] - yr[j] * dot) / norm;
}

extern "C" size_t dl_cuda_koleo_scratch_floats(int n, int d) { return (size_t)n * d + 3 * (size_t)n; }

extern "C" void dl_cuda_koleo(float *loss, float *d_x, const float *x, int n, int d, float scale, float *scratch,
                              cudaStream_t s) {
  float *y = scratch, *norms = y + (size_t)n * d, *dist = norms + n;
  int *idx = (int *)(dist + n);
  koleo_normalize_kernel<<<n, THREADS, 0, s>>>(y, norms, x, d);
  koleo_neighbour_kernel<<<n, THREADS, 0, s>>>(dist, idx, y, n, d);
  koleo_loss_kernel<<<1, 1024, 0, s>>>(loss, dist, n, scale);
  if (d_x) {
    cudaCheck(cudaMemsetAsync(d_x, 0, (size_t)n * d * sizeof(float), s));
    koleo_dy_kernel<<<n, THREADS, 0, s>>>(d_x, y, dist, idx, n, d, scale);
    koleo_dx_kernel<<<n, THREADS, 0, s>>>(d_x, y, norms, d);
  }
  cudaCheckLaunch();
}
