// cuBLASLt plans on the GPU (model/cuda/matmul.c): operands at the
// alignments real buffers have (bf16 at 2 and 32 bytes, float32 at 4, an
// odd inner dimension so every row starts at a 2-byte offset) against the
// CPU linear layer, which the heuristic must be told (issue 15, point 4);
// the second call of a shape hits the plan cache and gives the same bits;
// and a failing CUDA call comes back as a recorded error with its call,
// not as an exit. Exit 77 without a GPU.
#include <stdlib.h>
#include <string.h>

#include "model/cpu/ops.h"
#include "model/cuda/cuda_check_fatal.h"
#include "model/cuda/gemm_plan.h"
#include "model/cuda/matmul.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/harness.h"

static uint64_t seed = 11;

// y = x w^T + b with x starting `offset` bytes into its buffer.
static void check_offset(dl_cuda_blas *blas, dl_dtype dt, int m, int k, int n, size_t offset) {
  const size_t e = dl_dtype_size(dt);
  float *x = dl_test_random((size_t)m * k, &seed, 1.0f), *w = dl_test_random((size_t)n * k, &seed, 1.0f);
  float *b = dl_test_random(n, &seed, 1.0f);
  if (dt == DL_DTYPE_BF16) {
    dl_bf16_round_all(x, (size_t)m * k);
    dl_bf16_round_all(w, (size_t)n * k);
    dl_bf16_round_all(b, n);
  }
  float *want = malloc((size_t)m * n * sizeof(float)), *got = malloc((size_t)m * n * sizeof(float));
  float *again = malloc((size_t)m * n * sizeof(float));
  dl_linear(want, x, w, b, m, k, n);
  // x copied in at the offset: dl_gpu_upload gives a 256-byte aligned buffer.
  void *staged = dl_gpu_upload(x, (size_t)m * k, dt);
  unsigned char *base = dl_gpu_alloc((size_t)m * k + offset / e + 1, dt);
  cudaCheckFatal(cudaMemcpy(base + offset, staged, (size_t)m * k * e, cudaMemcpyDeviceToDevice));
  void *gw = dl_gpu_upload(w, (size_t)n * k, dt), *gb = dl_gpu_upload(b, n, dt), *gy = dl_gpu_alloc((size_t)m * n, dt);
  const long hits = blas->cache->hits;
  dl_cuda_linear(blas, dt, gy, base + offset, gw, gb, m, k, n, DL_EPILOGUE_BIAS, 0);
  dl_cuda_exit_on_failure(0);
  dl_gpu_download(got, gy, (size_t)m * n, dt);
  char name[96];
  snprintf(name, sizeof name, "linear_at_offset_%zu_k%d", offset, k);
  dl_gpu_compare(name, dt, got, want, (size_t)m * n, dt == DL_DTYPE_F32 ? 1e-5 : 1e-2);
  dl_cuda_linear(blas, dt, gy, base + offset, gw, gb, m, k, n, DL_EPILOGUE_BIAS, 0);
  dl_cuda_exit_on_failure(0);
  dl_gpu_download(again, gy, (size_t)m * n, dt);
  CHECK(blas->cache->hits == hits + 1 && memcmp(got, again, (size_t)m * n * sizeof(float)) == 0,
        "%s %s: the second call hits the plan cache (%ld -> %ld hits) and gives the same bits", name,
        dl_dtype_name(dt), hits, blas->cache->hits);
  dl_gpu_free(staged), dl_gpu_free(base), dl_gpu_free(gw), dl_gpu_free(gb), dl_gpu_free(gy);
  free(x), free(w), free(b), free(want), free(got), free(again);
}

// A failing call is recorded with its text and taken once; nothing exits.
static void check_error_record(void) {
  void *p = NULL;
  const int failed = dl_cuda_failed_call(cudaMalloc(&p, (size_t)1 << 62), "cudaMalloc(2^62 bytes)", __FILE__, __LINE__);
  dl_err err;
  const int taken = dl_cuda_take_error(&err);
  CHECK(failed && taken == -1 && strstr(err.msg, "cudaMalloc(2^62 bytes)") && strstr(err.msg, "cuda error"),
        "a failed cudaMalloc is recorded, not fatal: %s", taken ? err.msg : "(nothing recorded)");
  CHECK(dl_cuda_take_error(&err) == 0 && !dl_cuda_failed(), "the record is taken once");
  cudaGetLastError();  // clear the runtime's own last error for the checks after
}

int main(void) {
  if (dl_gpu_test_device()) return DL_TEST_SKIP;
  dl_cuda_blas blas;
  dl_cuda_blas_init(&blas);
  dl_cuda_exit_on_failure(0);
  check_offset(&blas, DL_DTYPE_BF16, 257, 384, 1152, 32);
  check_offset(&blas, DL_DTYPE_BF16, 257, 384, 1152, 2);
  check_offset(&blas, DL_DTYPE_BF16, 100, 385, 96, 0);  // odd k: rows start at 2-byte offsets
  check_offset(&blas, DL_DTYPE_F32, 257, 384, 1152, 4);
  check_error_record();
  dl_cuda_blas_free(&blas);
  dl_cuda_exit_on_failure(0);
  return dl_test_summary("test_cuda_matmul");
}
