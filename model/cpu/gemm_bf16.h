// A bfloat16 matrix multiply for linear layers on CPUs with AVX-512 BF16
// (the opt-in bf16 teacher, `distill teacher --precision bf16`):
// C = epilogue(A W^T) with A [m, k] float32 activations and W [n, k] held in
// bfloat16, converted once (round to nearest even) and packed for the kernel.
// A is rounded to bfloat16 while it is packed; VDPBF16PS multiplies pairs of
// bf16 values exactly and accumulates in float32; the epilogue (bias, exact
// GELU, LayerScale residual: gemm.h) runs in float32.
//
// Accuracy: each operand carries a relative rounding error of at most
// u = 2^-8 (bf16 keeps 8 significant bits), so every product a'b' is within
// (2u + u^2) |ab| of ab and C is within (2u + u^2 + k 2^-24) sum_p |A_ip W_jp|
// of the exact result (the last term: the float32 accumulation).
#ifndef DISTILL_MODEL_CPU_GEMM_BF16_H
#define DISTILL_MODEL_CPU_GEMM_BF16_H

#include <stdbool.h>
#include <stdint.h>

#include "model/cpu/gemm.h"

// W [n, k] in bf16, packed: panels of DL_BF16_NR output columns; inside a
// panel, for each pair of inner indices (2q, 2q + 1), the NR columns' pairs
// as 32-bit words (low half: index 2q). Odd k and the last panel's missing
// columns are padded with zeros.
#define DL_BF16_NR 32
typedef struct dl_bf16_matrix {
  uint32_t *panels;  // NULL: not packed
  int n, k;
} dl_bf16_matrix;

// True when this CPU has AVX-512 BF16 (with the OS's zmm state) and the
// kernel level chosen at start is avx512 (DISTILL_CPU_KERNELS=avx2 turns the
// bf16 kernel off with the rest of AVX-512).
bool dl_gemm_bf16_available(void);

// Round to nearest even (NaN stays a quiet NaN), and back (exact).
uint16_t dl_f32_to_bf16(float x);
float dl_bf16_to_f32(uint16_t h);

// Packs w [n, k] (float32) into m; any CPU may pack. dl_bf16_matrix_free
// releases it (a zeroed matrix is fine to free).
void dl_bf16_matrix_pack(dl_bf16_matrix *m, const float *w, int n, int k);
void dl_bf16_matrix_free(dl_bf16_matrix *m);

// C [m, w->n] (row-major, ld w->n) = epilogue(A [m, w->k] W^T). Requires
// dl_gemm_bf16_available(). Outside an OpenMP parallel region it splits the
// rows of A over all OpenMP threads, inside one it runs on the calling thread.
void dl_gemm_bf16_nt(float *c, const float *a, const dl_bf16_matrix *w, int m, const dl_gemm_epilogue *ep);

#endif
