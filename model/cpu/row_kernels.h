// The element-wise kernels of the CPU ops (LayerNorm, GELU, SwiGLU, the
// LayerScale residual, softmax and their backward passes) on one row or one
// contiguous run, single-threaded: ops.c and ops_backward.c split the rows
// over the OpenMP threads and call these. One table per kernel level, each
// compiled from row_kernels.inc with that level's instruction set
// (row_kernels_avx2.c, row_kernels_avx512.c); dl_row_kernels() gives the one
// of the level chosen at start.
#ifndef DISTILL_MODEL_CPU_ROW_KERNELS_H
#define DISTILL_MODEL_CPU_ROW_KERNELS_H

#include <stddef.h>

#include "model/cpu/cpu_features.h"

// Element-wise ops over a flat array (GELU and its backward) go to the
// threads in runs of this many floats (64 KiB: enough to hide the call, small
// enough to balance the threads).
#define DL_ELEMENTWISE_CHUNK ((size_t)16384)

typedef struct dl_row_kernel_table {
  // y = (x - mean) / sqrt(var + eps) * g + b over d features.
  void (*layernorm)(float *y, const float *x, const float *g, const float *b, int d, float eps);
  void (*layernorm_stats)(float *mean, float *rstd, const float *x, int d, float eps);
  // dx = rs (dy g - mean(dy g) - xh mean(dy g xh)); pg += dy xh, pb += dy.
  void (*layernorm_backward)(float *dx, float *pg, float *pb, const float *dy, const float *x, const float *g,
                             float mean, float rstd, int d);
  void (*gelu)(float *x, size_t n);  // in place, exact (erf) form
  void (*gelu_backward)(float *dx, const float *dy, const float *pre, size_t n);
  void (*swiglu)(float *out, const float *a, const float *b, int h);  // out = silu(a) b
  void (*swiglu_backward)(float *da, float *db, const float *dout, const float *a, const float *b, int h);
  void (*residual_scaled)(float *x, const float *y, const float *gamma, int d);  // x += gamma y
  // dy = gamma dx, pg += dx y.
  void (*residual_scaled_backward)(float *dy, float *pg, const float *dx, const float *y, const float *gamma, int d);
  void (*softmax_rows)(float *s, int rows, int cols);  // in place
  // ds = scale p (ds - sum_j p ds) per row of t, in place.
  void (*softmax_backward_rows)(float *ds, const float *p, int rows, int cols, float scale);
} dl_row_kernel_table;

extern const dl_row_kernel_table dl_row_kernels_avx2, dl_row_kernels_avx512;

static inline const dl_row_kernel_table *dl_row_kernels(void) {
  return dl_cpu_kernel_level() == DL_CPU_AVX512 ? &dl_row_kernels_avx512 : &dl_row_kernels_avx2;
}

#endif
