// Rows picked by index: the iBOT selection's gather of patch tokens and
// teacher bottlenecks (either storage type: whole rows copied as 16-bit
// words), and the scatter of the head's float32 input gradient back to the
// patch rows.
#include "model/cuda/cuda_check.h"
#include "model/cuda/kernels_common.cuh"

#define THREADS 256

// One block per selected row.
__global__ void gather_rows_kernel(unsigned short *dst, const unsigned short *src, const int *rows, size_t words) {
  const unsigned short *from = src + (size_t)rows[blockIdx.x] * words;
  unsigned short *to = dst + (size_t)blockIdx.x * words;
  for (size_t j = threadIdx.x; j < words; j += blockDim.x) to[j] = from[j];
}

__global__ void scatter_rows_kernel(float *dst, const float *src, const int *rows, int d) {
  const float *from = src + (size_t)blockIdx.x * d;
  float *to = dst + (size_t)rows[blockIdx.x] * d;
  for (int j = threadIdx.x; j < d; j += blockDim.x) to[j] = from[j];
}

extern "C" void dl_cuda_gather_rows(void *dst, const void *src, const int *rows, int m, size_t row_bytes,
                                    cudaStream_t s) {
  if (m == 0) return;
  gather_rows_kernel<<<m, THREADS, 0, s>>>((unsigned short *)dst, (const unsigned short *)src, rows, row_bytes / 2);
  cudaCheckLaunch();
}

extern "C" void dl_cuda_scatter_rows(float *dst, const float *src, const int *rows, int m, int d, cudaStream_t s) {
  if (m == 0) return;
  scatter_rows_kernel<<<m, THREADS, 0, s>>>(dst, src, rows, d);
  cudaCheckLaunch();
}
