// The bf16 GEMM's parts that any x86-64-v3 CPU may run (gemm_bf16.h): the
// availability check, the float32 <-> bf16 conversions and the packing of W.
// The kernel itself is in gemm_bf16_avx512.c, the one file compiled with
// AVX-512 BF16, reached only through dl_gemm_bf16_nt after the check.
#include "model/cpu/gemm_bf16.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "model/cpu/cpu_features.h"

void dl_gemm_bf16_nt_avx512bf16(float *c, const float *a, const dl_bf16_matrix *w, int m, const dl_gemm_epilogue *ep);

bool dl_gemm_bf16_available(void) {
  const dl_cpu_features *f = dl_cpu_features_get();
  // cpu_features.c reads CPUID and XCR0 itself; the compiler's own check must
  // agree, as the kernel file is compiled for what it tests.
  return dl_cpu_kernel_level() == DL_CPU_AVX512 && f->avx512_bf16 && f->avx512bw && f->avx512vl &&
         __builtin_cpu_supports("avx512bf16");
}

uint16_t dl_f32_to_bf16(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // NaN: keep it one, quiet
  u += 0x7fffu + ((u >> 16) & 1u);  // ties go to the even upper half
  return (uint16_t)(u >> 16);
}

float dl_bf16_to_f32(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

void dl_bf16_matrix_pack(dl_bf16_matrix *m, const float *w, int n, int k) {
  DL_ASSERT(n > 0 && k > 0);
  const int panels = (n + DL_BF16_NR - 1) / DL_BF16_NR, pairs = (k + 1) / 2;
  m->n = n;
  m->k = k;
  m->panels = dl_aligned_alloc((size_t)panels * pairs * DL_BF16_NR * sizeof(uint32_t));
  for (int jp = 0; jp < panels; jp++)
    for (int q = 0; q < pairs; q++)
      for (int j = 0; j < DL_BF16_NR; j++) {
        const int col = jp * DL_BF16_NR + j;
        const float *row = w + (size_t)col * k;
        const uint32_t lo = col < n ? dl_f32_to_bf16(row[2 * q]) : 0;
        const uint32_t hi = col < n && 2 * q + 1 < k ? dl_f32_to_bf16(row[2 * q + 1]) : 0;
        m->panels[((size_t)jp * pairs + q) * DL_BF16_NR + j] = lo | hi << 16;
      }
}

void dl_bf16_matrix_free(dl_bf16_matrix *m) {
  free(m->panels);
  memset(m, 0, sizeof *m);
}

void dl_gemm_bf16_nt(float *c, const float *a, const dl_bf16_matrix *w, int m, const dl_gemm_epilogue *ep) {
  static const dl_gemm_epilogue none = {0};
  DL_ASSERT(w->panels && m > 0);
  DL_ASSERT(dl_gemm_bf16_available());
  dl_gemm_bf16_nt_avx512bf16(c, a, w, m, ep ? ep : &none);
}
