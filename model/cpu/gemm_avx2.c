// The sgemm at the AVX2/FMA level (x86-64-v3, every machine this build runs
// on): a 6x16 tile in ymm registers. The micro-kernel keeps the tile in 12
// accumulators and uses 2 more for the W row and 1 for the broadcast A value:
// 15 of the 16 ymm registers. The driver is gemm_driver.inc.
#include <immintrin.h>
#include <omp.h>
#include <stdbool.h>

#include "model/cpu/fast_math.h"
#include "model/cpu/gemm_levels.h"

#define MR 6
#define NR 16
#define KC 256  // W panel 16 KiB: stays in L1
#define MC 120  // A block 120 KiB: stays in L2
#define GEMM_ENTRY dl_gemm_avx2
#define GEMM_PACKED dl_gemm_packed_floats_avx2

// C[0..5][0..15] (row stride ldc) = or += A panel (kc x 6) times W panel
// (kc x 16). C is prefetched first: the kernel's run hides its latency.
static void micro_kernel(int kc, const float *restrict a, const float *restrict b, float *restrict c, size_t ldc,
                         bool accumulate) {
  for (int r = 0; r < MR; r++) _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#pragma GCC unroll 4
  for (int p = 0; p < kc; p++) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 x = _mm256_broadcast_ss(a);
    c00 = _mm256_fmadd_ps(x, b0, c00), c01 = _mm256_fmadd_ps(x, b1, c01);
    x = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(x, b0, c10), c11 = _mm256_fmadd_ps(x, b1, c11);
    x = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(x, b0, c20), c21 = _mm256_fmadd_ps(x, b1, c21);
    x = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(x, b0, c30), c31 = _mm256_fmadd_ps(x, b1, c31);
    x = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(x, b0, c40), c41 = _mm256_fmadd_ps(x, b1, c41);
    x = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(x, b0, c50), c51 = _mm256_fmadd_ps(x, b1, c51);
    a += MR, b += NR;
  }
  const __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int r = 0; r < MR; r++)
    for (int h = 0; h < 2; h++) {
      float *dst = c + r * ldc + 8 * h;
      _mm256_storeu_ps(dst, accumulate ? _mm256_add_ps(acc[r][h], _mm256_loadu_ps(dst)) : acc[r][h]);
    }
}

#include "model/cpu/gemm_driver.inc"
