// A packed, cache-blocked sgemm for C = A W^T on AVX2/FMA (see gemm.h).
//
// Layout of the work, from the outside in:
//   - W is packed once per call, by all threads, into panels of NR = 16
//     output columns: for each block of KC inner indices, each panel holds
//     kc rows of 16 consecutive floats (one 64-byte line per inner index);
//   - the rows of A are split over the threads in whole MR = 6 row panels, so
//     every thread owns its output rows and never waits for another;
//   - a thread takes MC rows at a time, packs them per KC block (six floats per
//     inner index, about 180 KiB: stays in the 512 KiB L2) and runs the 6x16
//     micro-kernel over every W panel (16 KiB: stays in L1) and row panel.
// The micro-kernel keeps its 6x16 tile in 12 ymm registers and uses 2 more for
// the W row and 1 for the broadcast A value: 15 of the 16.
#include "model/cpu/gemm.h"

#include <immintrin.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "model/cpu/fast_math.h"

#define MR 6
#define NR 16
#ifndef DL_GEMM_KC
#define DL_GEMM_KC 256
#endif
#ifndef DL_GEMM_MC
#define DL_GEMM_MC 120
#endif
#define KC DL_GEMM_KC
#define MC DL_GEMM_MC
// The A packer's 8-wide stores run 2 floats past a panel's end.
#define A_PACK_SLACK 8

bool dl_gemm_available(void) {
  static int cached = -1;
  if (cached < 0) {
    __builtin_cpu_init();
    cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  return cached;
}

// r[0..7] (8 floats each) transposed in place: r[q][i] = old r[i][q].
static inline void transpose8(__m256 r[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int h = 0; h < 2; h++) {  // rows 0-3, then rows 4-7
    __m256 lo = t[4 * h], hi = t[4 * h + 1], lo2 = t[4 * h + 2], hi2 = t[4 * h + 3];
    s[4 * h + 0] = _mm256_shuffle_ps(lo, lo2, _MM_SHUFFLE(1, 0, 1, 0));
    s[4 * h + 1] = _mm256_shuffle_ps(lo, lo2, _MM_SHUFFLE(3, 2, 3, 2));
    s[4 * h + 2] = _mm256_shuffle_ps(hi, hi2, _MM_SHUFFLE(1, 0, 1, 0));
    s[4 * h + 3] = _mm256_shuffle_ps(hi, hi2, _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int q = 0; q < 4; q++) {
    r[q] = _mm256_permute2f128_ps(s[q], s[4 + q], 0x20);
    r[q + 4] = _mm256_permute2f128_ps(s[q], s[4 + q], 0x31);
  }
}

// One W panel: dst[p * 16 + j] = w[(j0 + j) * k + p0 + p] for p < kc, zero for
// columns j0 + j >= n.
static void pack_w_panel(float *dst, const float *w, int k, int n, int j0, int p0, int kc) {
  const int nr = n - j0 < NR ? n - j0 : NR;
  int p = 0;
  if (nr == NR) {
    for (; p + 8 <= kc; p += 8)
      for (int h = 0; h < 2; h++) {
        __m256 r[8];
        for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(w + (size_t)(j0 + 8 * h + i) * k + p0 + p);
        transpose8(r);
        for (int q = 0; q < 8; q++) _mm256_store_ps(dst + (size_t)(p + q) * NR + 8 * h, r[q]);
      }
  }
  for (; p < kc; p++)
    for (int j = 0; j < NR; j++)
      dst[(size_t)p * NR + j] = j < nr ? w[(size_t)(j0 + j) * k + p0 + p] : 0.0f;
}

// One A panel of up to 6 rows: dst[p * 6 + r] = a[(i0 + r) * k + p0 + p],
// zero for rows past m. Writes up to 2 floats past dst + 6 * kc.
static void pack_a_panel(float *dst, const float *a, int k, int mr, int p0, int kc) {
  int p = 0;
  for (; p + 8 <= kc; p += 8) {
    __m256 r[8];
    for (int i = 0; i < 8; i++)
      r[i] = i < mr ? _mm256_loadu_ps(a + (size_t)i * k + p0 + p) : _mm256_setzero_ps();
    transpose8(r);
    for (int q = 0; q < 8; q++) _mm256_storeu_ps(dst + (size_t)(p + q) * MR, r[q]);
  }
  for (; p < kc; p++)
    for (int i = 0; i < MR; i++) dst[(size_t)p * MR + i] = i < mr ? a[(size_t)i * k + p0 + p] : 0.0f;
}

// C[0..5][0..15] (row stride ldc) = or += A panel (kc x 6) times W panel
// (kc x 16). C is prefetched first: the kernel's run hides its latency.
static void kernel_6x16(int kc, const float *restrict a, const float *restrict b, float *restrict c, size_t ldc,
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

// The epilogue on a finished block of C: rows i0.. (mr), columns j0.. (nr).
static void epilogue_block(float *c, int n, int i0, int mr, int j0, int nr, const dl_gemm_epilogue *ep) {
  if (!ep->bias && !ep->gelu && !ep->residual) return;
  for (int r = 0; r < mr; r++) {
    float *v = c + (size_t)(i0 + r) * n + j0;
    if (ep->bias) {
#pragma omp simd
      for (int j = 0; j < nr; j++) v[j] += ep->bias[j0 + j];
    }
    if (ep->gelu) {
#pragma omp simd
      for (int j = 0; j < nr; j++) v[j] = 0.5f * v[j] * (1.0f + dl_fast_erff(v[j] * 0.70710678118654752f));
    }
    if (ep->residual) {
      float *x = ep->residual + (size_t)(i0 + r) * n + j0;
      if (ep->gamma) {
#pragma omp simd
        for (int j = 0; j < nr; j++) x[j] += ep->gamma[j0 + j] * v[j];
      } else {
#pragma omp simd
        for (int j = 0; j < nr; j++) x[j] += v[j];
      }
    }
  }
}

// One tile: the kernel straight into C when the tile is whole, else through a
// 6x16 buffer of which only the valid part is written or added.
static void run_tile(int kc, const float *ap, const float *bp, float *c, int n, int i0, int mr, int j0, int nr,
                     bool accumulate) {
  float *dst = c + (size_t)i0 * n + j0;
  if (mr == MR && nr == NR) {
    kernel_6x16(kc, ap, bp, dst, (size_t)n, accumulate);
    return;
  }
  _Alignas(64) float tile[MR * NR];
  kernel_6x16(kc, ap, bp, tile, NR, false);
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++) dst[(size_t)r * n + j] = (accumulate ? dst[(size_t)r * n + j] : 0.0f) + tile[r * NR + j];
}

// One thread's rows [r0, r1) of C, with W already packed.
static void gemm_rows(float *c, const float *a, const float *wp, int r0, int r1, int k, int n,
                      const dl_gemm_epilogue *ep, float *apack) {
  const int n_panels = (n + NR - 1) / NR;
  for (int ic = r0; ic < r1; ic += MC) {
    const int mc = r1 - ic < MC ? r1 - ic : MC, m_panels = (mc + MR - 1) / MR;
    for (int pc = 0; pc < k; pc += KC) {
      const int kc = k - pc < KC ? k - pc : KC;
      for (int ip = 0; ip < m_panels; ip++) {
        const int mr = mc - ip * MR < MR ? mc - ip * MR : MR;
        pack_a_panel(apack + (size_t)ip * MR * kc, a + (size_t)(ic + ip * MR) * k, k, mr, pc, kc);
      }
      const float *wblock = wp + (size_t)pc * n_panels * NR;
      for (int jp = 0; jp < n_panels; jp++) {
        const float *wpanel = wblock + (size_t)jp * NR * kc;
        const int j0 = jp * NR, nr = n - j0 < NR ? n - j0 : NR;
        for (int ip = 0; ip < m_panels; ip++) {
          const int i0 = ic + ip * MR, mr = mc - ip * MR < MR ? mc - ip * MR : MR;
          run_tile(kc, apack + (size_t)ip * MR * kc, wpanel, c, n, i0, mr, j0, nr, pc > 0);
          if (pc + kc == k) epilogue_block(c, n, i0, mr, j0, nr, ep);
        }
      }
    }
  }
}

// The packed copy of W lives on between calls (grown when a larger one is
// needed), one per calling thread, so that no call allocates in steady state;
// a thread's copy is freed when the thread ends.
typedef struct w_pack_buf {
  float *data;
  size_t cap;  // floats
} w_pack_buf;

static pthread_key_t w_pack_key;
static pthread_once_t w_pack_once = PTHREAD_ONCE_INIT;

static void w_pack_free(void *p) {
  w_pack_buf *b = p;
  free(b->data);
  free(b);
}
static void w_pack_key_init(void) { pthread_key_create(&w_pack_key, w_pack_free); }

static float *w_pack_buffer(size_t floats) {
  pthread_once(&w_pack_once, w_pack_key_init);
  w_pack_buf *b = pthread_getspecific(w_pack_key);
  if (!b) {
    b = dl_calloc(1, sizeof *b);
    pthread_setspecific(w_pack_key, b);
  }
  if (b->cap < floats) {
    free(b->data);
    b->data = dl_aligned_alloc(floats * sizeof(float));
    b->cap = floats;
  }
  return b->data;
}

void dl_gemm_nt(float *c, const float *a, const float *w, int m, int k, int n, const dl_gemm_epilogue *ep) {
  static const dl_gemm_epilogue none = {0};
  if (!ep) ep = &none;
  const int n_panels = (n + NR - 1) / NR, k_blocks = (k + KC - 1) / KC;
  const int m_panels = (m + MR - 1) / MR;
  float *wp = w_pack_buffer((size_t)n_panels * NR * k);
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
#pragma omp parallel num_threads(threads)
  {
#pragma omp for collapse(2) schedule(static)
    for (int kb = 0; kb < k_blocks; kb++)
      for (int jp = 0; jp < n_panels; jp++) {
        const int pc = kb * KC, kc = k - pc < KC ? k - pc : KC;
        pack_w_panel(wp + (size_t)pc * n_panels * NR + (size_t)jp * NR * kc, w, k, n, jp * NR, pc, kc);
      }
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int r0 = (int)((long)m_panels * t / nt) * MR;
    int r1 = (int)((long)m_panels * (t + 1) / nt) * MR;
    if (r1 > m) r1 = m;
    _Alignas(64) float apack[MC * KC + A_PACK_SLACK];
    if (r0 < r1) gemm_rows(c, a, wp, r0, r1, k, n, ep, apack);
  }
}
