// The float32 residual stream's kernels and the vectorised and fused
// element-wise kernels against the CPU ops (tests/gpu/residual_parity.c),
// one result line per comparison; run by test_cuda_ops for each dtype.
#ifndef DISTILL_TESTS_GPU_RESIDUAL_PARITY_H
#define DISTILL_TESTS_GPU_RESIDUAL_PARITY_H

#include "model/cuda/cuda_ops.h"

// test_cuda_ops' bounds for the dtype: outputs stored in it, float32 accumulators.
typedef struct dl_parity_tol {
  double out, acc;
} dl_parity_tol;

void dl_test_residual_ops(dl_dtype dt, dl_parity_tol t);

#endif
