// The sgemm at the AVX-512 level (F/BW/DQ/VL; CMake compiles this file alone
// with those flags, and gemm.c calls it only when the CPU level is avx512).
//
// The tile: 12 rows x 32 columns in 24 zmm accumulators, plus 2 for the W
// row (two zmm of 16 columns) and 1 for the broadcast A value: 27 of the 32
// zmm registers. Per inner index that is 24 FMAs for 2 vector loads and 12
// broadcasts, twice the FMAs per load of the 6x16 ymm tile, and 24
// independent accumulators cover the FMA latency (4 cycles) times 2 FMA pipes
// three times over. Measured with bench_gemm on the ViT-B/14 shapes (AMD EPYC
// Zen 4, 1 thread, 2026-12-06): 12x32 with KC = 256 and 8x32 gave 100-112
// GFLOP/s, as the AVX2 6x16 tile did: the core's FMA peak, since Zen 4 runs a
// zmm FMA as two ymm halves; KC = 128 (a 16 KiB W panel) about 3% less, from
// twice the passes over C; 14x32 (28 accumulators) 25-30% less, from
// spilled registers. The W panel (256 x 32 floats, 32 KiB) streams from L2 at
// 24 FMAs per 128-byte row; the A block (120 x 256, 120 KiB) stays in L2.
// The gain is on cores with two full-width 512-bit FMA pipes (Xeon).
#include <immintrin.h>
#include <omp.h>
#include <stdbool.h>

#include "model/cpu/fast_math.h"
#include "model/cpu/gemm_levels.h"

#ifndef DL_GEMM512_MR
#define DL_GEMM512_MR 12
#endif
#define MR DL_GEMM512_MR
#define NR 32
#ifndef DL_GEMM512_KC
#define DL_GEMM512_KC 256
#endif
#define KC DL_GEMM512_KC
#define MC (10 * MR)
#define GEMM_ENTRY dl_gemm_avx512
#define GEMM_PACKED dl_gemm_packed_floats_avx512

static void micro_kernel(int kc, const float *restrict a, const float *restrict b, float *restrict c, size_t ldc,
                         bool accumulate) {
  for (int r = 0; r < MR; r++) {
    _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch((const char *)(c + r * ldc + 16), _MM_HINT_T0);
  }
  __m512 acc[MR][2];
#pragma GCC unroll 12
  for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int p = 0; p < kc; p++) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
      const __m512 x = _mm512_set1_ps(a[r]);
      acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
    }
    a += MR, b += NR;
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; r++)
    for (int h = 0; h < 2; h++) {
      float *dst = c + r * ldc + 16 * h;
      _mm512_storeu_ps(dst, accumulate ? _mm512_add_ps(acc[r][h], _mm512_loadu_ps(dst)) : acc[r][h]);
    }
}

#include "model/cpu/gemm_driver.inc"
