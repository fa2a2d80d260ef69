// Inside the sgemm: each kernel level's dl_gemm_nt (gemm_avx2.c,
// gemm_avx512.c, one driver each from gemm_driver.inc) and the per-thread
// packed-W buffer they share (gemm.c). gemm.c picks one by the CPU level.
#ifndef DISTILL_MODEL_CPU_GEMM_LEVELS_H
#define DISTILL_MODEL_CPU_GEMM_LEVELS_H

#include <stddef.h>

#include "model/cpu/gemm.h"

// The calling thread's packed-W buffer, at least `floats` long, 64-byte aligned.
float *dl_gemm_w_pack_buffer(size_t floats);

void dl_gemm_nt_avx2(float *c, const float *a, const float *w, int m, int k, int n, const dl_gemm_epilogue *ep);
void dl_gemm_nt_avx512(float *c, const float *a, const float *w, int m, int k, int n, const dl_gemm_epilogue *ep);

#endif
