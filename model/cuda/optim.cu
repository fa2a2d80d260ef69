// AdamW, EMA and gradient-norm clipping over the flat float32 buffers. The
// per-tensor multipliers come as a segment table (offset, numel, scalars);
// each thread finds its segment by binary search, so one launch covers the
// whole model instead of one launch per tensor.
#include "model/cuda/adamw_segments.h"
#include "model/cuda/cuda_check.h"
#include "model/cuda/kernels_common.cuh"

#define THREADS 256

__global__ void adamw_kernel(float *params, float *m, float *v, const float *grads, const dl_adamw_segment *segs,
                             int count, size_t total, float b1, float b2, float eps, float bc2s,
                             __nv_bfloat16 *copy) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const dl_adamw_segment *sg = &segs[dl_adamw_segment_find(segs, count, i)];
    float p = params[i];
    // Padding between tensors and frozen tensors keep their values.
    if (!sg->frozen && i < sg->offset + sg->numel) {
      float mi = m[i], vi = v[i];
      dl_adamw_segment_apply(sg, &p, &mi, &vi, grads[i], b1, b2, eps, bc2s);
      m[i] = mi;
      v[i] = vi;
      params[i] = p;
    }
    if (copy) copy[i] = __float2bfloat16(p);
  }
}

static unsigned capped_blocks(size_t n) {
  const size_t b = (n + THREADS - 1) / THREADS;
  return (unsigned)(b < 65536 ? (b ? b : 1) : 65536);
}

extern "C" void dl_cuda_adamw(float *params, float *m, float *v, const float *grads, const dl_adamw_segment *segs,
                              int count, size_t total, float beta1, float beta2, float eps, float bc2_sqrt,
                              void *bf16_copy, cudaStream_t s) {
  adamw_kernel<<<capped_blocks(total), THREADS, 0, s>>>(params, m, v, grads, segs, count, total, beta1, beta2, eps,
                                                        bc2_sqrt, (__nv_bfloat16 *)bf16_copy);
  cudaCheckLaunch();
}

__global__ void ema_kernel(float *ema, const float *params, size_t n, float mom, float rest) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    ema[i] = ema[i] * mom + params[i] * rest;
}

extern "C" void dl_cuda_ema(float *ema, const float *params, size_t n, float momentum, cudaStream_t s) {
  ema_kernel<<<capped_blocks(n), THREADS, 0, s>>>(ema, params, n, momentum, (float)(1.0 - (double)momentum));
  cudaCheckLaunch();
}

// Sum of squares in double, as the CPU reference: a 300M-parameter gradient
// in float would lose the small tensors' contribution.
__global__ void sum_squares_kernel(double *out, const float *g, size_t n) {
  double acc = 0.0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    acc += (double)g[i] * g[i];
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  __shared__ double part[THREADS / 32];
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (int w = 0; w < THREADS / 32; w++) t += part[w];
    atomicAdd(out, t);
  }
}

__global__ void clip_kernel(float *g, size_t n, const double *ss, float max_norm, float *norm_out) {
  const float norm = (float)sqrt(*ss);
  if (blockIdx.x == 0 && threadIdx.x == 0) *norm_out = norm;
  const float coef = max_norm / (norm + 1e-6f);
  if (max_norm <= 0.0f || coef >= 1.0f) return;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    g[i] *= coef;
}

extern "C" void dl_cuda_clip_grad_norm(float *grads, size_t n, float max_norm, float *norm, double *scratch,
                                       cudaStream_t s) {
  cudaCheck(cudaMemsetAsync(scratch, 0, sizeof(double), s));
  const unsigned grid = capped_blocks(n) < 2048 ? capped_blocks(n) : 2048;
  sum_squares_kernel<<<grid, THREADS, 0, s>>>(scratch, grads, n);
  clip_kernel<<<capped_blocks(n), THREADS, 0, s>>>(grads, n, scratch, max_norm, norm);
  cudaCheckLaunch();
}
