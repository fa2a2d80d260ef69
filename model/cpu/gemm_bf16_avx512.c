// The bf16 GEMM's kernel and driver (gemm_bf16.h). CMake compiles this file
// alone with AVX-512 F/BW/VL and BF16; gemm_bf16.c calls it only when
// dl_gemm_bf16_available() holds.
//
// The tile: 12 rows x 32 columns in 24 zmm float32 accumulators, 2 zmm for a
// pair-row of the W panel (32 columns x 2 inner indices in bf16) and 1 for
// the broadcast A pair: the shape of the float32 AVX-512 kernel
// (gemm_avx512.c), with each VDPBF16PS doing two inner indices where an FMA
// does one. A is converted to bf16 (VCVTNE2PS2BF16, round to nearest even)
// into a row-major block of MC rows x KC inner indices, from which the kernel
// broadcasts 32-bit pairs; the W panel's block of KC inner indices is 32 KiB
// (the f32 kernel's, for twice the inner indices).
#include <immintrin.h>
#include <omp.h>
#include <stdbool.h>
#include <string.h>

#include "model/cpu/fast_math.h"
#include "model/cpu/gemm_bf16.h"

#define MR 12
#define NR DL_BF16_NR
#define KC 512          // inner indices per block, even
#define KP (KC / 2)     // pairs per block: the row stride of the packed A block
#define MC (10 * MR)

void dl_gemm_bf16_nt_avx512bf16(float *c, const float *a, const dl_bf16_matrix *w, int m, const dl_gemm_epilogue *ep);

// Rows [0, rows) of a (ld k), inner indices [p0, p0 + kc), to bf16 in dst
// (row stride KP pairs); an odd kc gets a zero partner, and rows up to the
// next multiple of MR are zeroed so the kernel reads no stale values.
static void pack_a_block(uint32_t *dst, const float *a, int k, int rows, int p0, int kc) {
  const int padded = (rows + MR - 1) / MR * MR;
  for (int r = 0; r < rows; r++) {
    const float *src = a + (size_t)r * k + p0;
    uint16_t *d = (uint16_t *)(dst + (size_t)r * KP);
    int p = 0;
    for (; p + 32 <= kc; p += 32) {
      const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + p + 16), _mm512_loadu_ps(src + p));
      _mm512_storeu_si512(d + p, (__m512i)v);
    }
    if (p < kc) {  // 1 to 31 left: two masked halves
      const int left = kc - p;
      const __mmask16 lo = (__mmask16)((1u << (left < 16 ? left : 16)) - 1);
      const __mmask16 hi = (__mmask16)(left > 16 ? (1u << (left - 16)) - 1 : 0);
      const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, src + p + 16), _mm512_maskz_loadu_ps(lo, src + p));
      const __mmask32 keep = left == 32 ? 0xffffffffu : (__mmask32)((1u << left) - 1);
      _mm512_mask_storeu_epi16(d + p, keep, (__m512i)v);
    }
    if (kc & 1) d[kc] = 0;
  }
  for (int r = rows; r < padded; r++) memset(dst + (size_t)r * KP, 0, (size_t)(kc + 1) / 2 * sizeof(uint32_t));
}

// C[0..MR)[0..NR) (row stride ldc) = or += A pairs (MR rows, stride KP) times
// the W panel block (kp pair-rows of NR columns).
static void micro_kernel(int kp, const uint32_t *restrict a, const uint32_t *restrict b, float *restrict c,
                         size_t ldc, bool accumulate) {
  __m512 c0[MR], c1[MR];
  for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
  for (int q = 0; q < kp; q++) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b + (size_t)q * NR);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(b + (size_t)q * NR + 16);
    for (int i = 0; i < MR; i++) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[(size_t)i * KP + q]);
      c0[i] = _mm512_dpbf16_ps(c0[i], ai, b0);
      c1[i] = _mm512_dpbf16_ps(c1[i], ai, b1);
    }
  }
  for (int i = 0; i < MR; i++) {
    float *ci = c + (size_t)i * ldc;
    if (accumulate) {
      c0[i] = _mm512_add_ps(c0[i], _mm512_loadu_ps(ci));
      c1[i] = _mm512_add_ps(c1[i], _mm512_loadu_ps(ci + 16));
    }
    _mm512_storeu_ps(ci, c0[i]);
    _mm512_storeu_ps(ci + 16, c1[i]);
  }
}

// The epilogue on a finished block of C: rows i0.. (mr), columns j0.. (nr).
static void epilogue_block(float *c, int n, int i0, int mr, int j0, int nr, const dl_gemm_epilogue *ep) {
  if (!ep->bias && !ep->gelu && !ep->residual) return;
  for (int r = 0; r < mr; r++) {
    float *v = c + (size_t)(i0 + r) * n + j0;
    if (ep->bias)
      for (int j = 0; j < nr; j++) v[j] += ep->bias[j0 + j];
    if (ep->gelu) {
#pragma omp simd
      for (int j = 0; j < nr; j++) v[j] = dl_gelu_exact(v[j]);
    }
    if (ep->residual) {
      float *x = ep->residual + (size_t)(i0 + r) * n + j0;
      for (int j = 0; j < nr; j++) x[j] += (ep->gamma ? ep->gamma[j0 + j] : 1.0f) * v[j];
    }
  }
}

// One tile: straight into C when whole, else through a buffer of which only
// the valid part is written or added.
static void run_tile(int kp, const uint32_t *ap, const uint32_t *bp, float *c, int n, int i0, int mr, int j0, int nr,
                     bool accumulate) {
  float *dst = c + (size_t)i0 * n + j0;
  if (mr == MR && nr == NR) {
    micro_kernel(kp, ap, bp, dst, (size_t)n, accumulate);
    return;
  }
  _Alignas(64) float tile[MR * NR];
  micro_kernel(kp, ap, bp, tile, NR, false);
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++) dst[(size_t)r * n + j] = (accumulate ? dst[(size_t)r * n + j] : 0.0f) + tile[r * NR + j];
}

// One thread's rows [r0, r1) of C.
static void gemm_rows(float *c, const float *a, const dl_bf16_matrix *w, int r0, int r1, const dl_gemm_epilogue *ep,
                      uint32_t *apack) {
  const int k = w->k, n = w->n, n_panels = (n + NR - 1) / NR, pairs = (k + 1) / 2;
  for (int ic = r0; ic < r1; ic += MC) {
    const int mc = r1 - ic < MC ? r1 - ic : MC, m_panels = (mc + MR - 1) / MR;
    for (int pc = 0; pc < k; pc += KC) {
      const int kc = k - pc < KC ? k - pc : KC, kp = (kc + 1) / 2;
      pack_a_block(apack, a + (size_t)ic * k, k, mc, pc, kc);
      for (int jp = 0; jp < n_panels; jp++) {
        const uint32_t *wpanel = w->panels + ((size_t)jp * pairs + pc / 2) * NR;
        const int j0 = jp * NR, nr = n - j0 < NR ? n - j0 : NR;
        for (int ip = 0; ip < m_panels; ip++) {
          const int i0 = ic + ip * MR, mr = mc - ip * MR < MR ? mc - ip * MR : MR;
          run_tile(kp, apack + (size_t)ip * MR * KP, wpanel, c, n, i0, mr, j0, nr, pc > 0);
          if (pc + kc == k) epilogue_block(c, n, i0, mr, j0, nr, ep);
        }
      }
    }
  }
}

void dl_gemm_bf16_nt_avx512bf16(float *c, const float *a, const dl_bf16_matrix *w, int m, const dl_gemm_epilogue *ep) {
  const int m_panels = (m + MR - 1) / MR;
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int r0 = (int)((long)m_panels * t / nt) * MR;
    int r1 = (int)((long)m_panels * (t + 1) / nt) * MR;
    if (r1 > m) r1 = m;
    _Alignas(64) uint32_t apack[MC * KP];
    if (r0 < r1) gemm_rows(c, a, w, r0, r1, ep, apack);
  }
}
