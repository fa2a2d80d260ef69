// The feature-mode losses on the GPU (model/losses.c dl_cosine_loss,
// dl_smooth_l1_loss): one block per row, sums in double as the CPU's, each
// row's share of the loss written to loss_rows (their sum is the loss) and
// the gradient written or added to d_s.
#include "model/cuda/cuda_check.h"
#include "model/cuda/kernels_common.cuh"

#define THREADS 256


// 1 - cos(s_r, t_r) with torch's eps: the product of squared norms clamped at eps^2.
__global__ void cosine_rows_kernel(float *loss_rows, float *d_s, const float *s, const float *t, int rows, int d,
                                   float scale, int accumulate) {
  __shared__ double red[32];
  const size_t off = (size_t)blockIdx.x * d;
  const double eps = 1e-8;
  double w12 = 0.0, w1 = 0.0, w2 = 0.0;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const double a = s[off + j], b = t[off + j];
    w12 += a * b;
    w1 += a * a;
    w2 += b * b;
  }
  w12 = dl_block_sum_double(w12, red);
  w1 = dl_block_sum_double(w1, red);
  w2 = dl_block_sum_double(w2, red);
  const double prod = w1 * w2, n12 = sqrt(prod > eps * eps ? prod : eps * eps), cosv = w12 / n12;
  if (threadIdx.x == 0) loss_rows[blockIdx.x] = (float)((1.0 - cosv) * scale / rows);
  if (!d_s) return;
  const double c = scale / (double)rows, ca = prod > eps * eps ? cosv / w1 : 0.0;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const float v = (float)(-c * (t[off + j] / n12 - ca * s[off + j]));
    d_s[off + j] = accumulate ? d_s[off + j] + v : v;
  }
}

extern "C" void dl_cuda_cosine_loss_rows(float *loss_rows, float *d_s, const float *s, const float *t, int rows,
                                         int d, float scale, int accumulate, cudaStream_t st) {
  cosine_rows_kernel<<<rows, THREADS, 0, st>>>(loss_rows, d_s, s, t, rows, d, scale, accumulate);
  cudaCheckLaunch();
}

// Smooth-L1 averaged over all rows * d elements.
__global__ void smooth_l1_rows_kernel(float *loss_rows, float *d_s, const float *s, const float *t, int d,
                                      double inv_n, float beta, float scale, int accumulate) {
  __shared__ double red[32];
  const size_t off = (size_t)blockIdx.x * d;
  const double c = scale * inv_n;
  double acc = 0.0;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const double diff = (double)s[off + j] - t[off + j], ad = fabs(diff);
    acc += ad < beta ? 0.5 * diff * diff / beta : ad - 0.5 * beta;
    if (d_s) {
      const float v = (float)(c * (ad < beta ? diff / beta : (diff > 0 ? 1.0 : -1.0)));
      d_s[off + j] = accumulate ? d_s[off + j] + v : v;
    }
  }
  acc = dl_block_sum_double(acc, red);
  if (threadIdx.x == 0) loss_rows[blockIdx.x] = (float)(acc * inv_n * scale);
}

extern "C" void dl_cuda_smooth_l1_rows(float *loss_rows, float *d_s, const float *s, const float *t, int rows,
                                       int d, float beta, float scale, int accumulate, cudaStream_t st) {
  smooth_l1_rows_kernel<<<rows, THREADS, 0, st>>>(loss_rows, d_s, s, t, d, 1.0 / ((double)rows * d), beta, scale,
                                                  accumulate);
  cudaCheckLaunch();
}
