// Inside the sgemm: each kernel level's dl_gemm_nt (gemm_avx2.c,
// gemm_avx512.c, one driver each from gemm_driver.inc) and the per-thread
// packed-W buffer they share (gemm.c). gemm.c picks one by the CPU level.
#ifndef DISTILL_MODEL_CPU_GEMM_LEVELS_H
#define DISTILL_MODEL_CPU_GEMM_LEVELS_H

#include <stddef.h>

#include "model/cpu/gemm.h"

// The calling thread's packed-W buffer, at least `floats` long, 64-byte aligned.
float *dl_gemm_w_pack_buffer(size_t floats);

// One product C [m, n] (=, or += with accumulate) epilogue(A W^T), where
// a_km says A is stored [k, m] instead of [m, k] and w_kn that W is stored
// [k, n] instead of [n, k]: NT (the forward), NN (dX = dY W) and TN
// (dW += dY^T X) are one driver with different packers.
typedef struct dl_gemm_args {
  float *c;
  const float *a, *w;
  int m, k, n;
  bool a_km, w_kn, accumulate;
  const dl_gemm_epilogue *ep;  // never NULL here
} dl_gemm_args;

void dl_gemm_avx2(const dl_gemm_args *g);
void dl_gemm_avx512(const dl_gemm_args *g);
size_t dl_gemm_packed_floats_avx2(int n, int k);
size_t dl_gemm_packed_floats_avx512(int n, int k);

#endif
