// Linear layers on the GPU through cuBLASLt: inputs in the storage type
// (bf16 or float32), float32 accumulation, and the fused epilogues that save
// a pass over the output: bias, bias + GELU, and the bias gradient.
#ifndef DISTILL_MODEL_CUDA_MATMUL_H
#define DISTILL_MODEL_CUDA_MATMUL_H

#include <stddef.h>

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "model/cuda/cuda_ops.h"

struct dl_gemm_cache;

typedef struct dl_cuda_blas {
  cublasLtHandle_t lt;
  void *workspace;  // device memory for cuBLASLt's split-K and other algorithms
  size_t workspace_bytes;
  // Descriptors and the heuristic's algorithms per shape, types, epilogue
  // and pointer alignment (model/cuda/gemm_plan.h), built on first use.
  struct dl_gemm_cache *cache;
} dl_cuda_blas;

// Failures (here and in the matmuls below) are recorded for
// dl_cuda_take_error (model/cuda/cuda_check.h), never fatal.
void dl_cuda_blas_init(dl_cuda_blas *blas);
void dl_cuda_blas_free(dl_cuda_blas *blas);

typedef enum dl_cuda_epilogue {
  DL_EPILOGUE_NONE,
  DL_EPILOGUE_BIAS,
  // cuBLASLt's GELU is the tanh approximation, not DINOv2's exact erf GELU:
  // within 3e-4 absolute, below bf16's resolution, but not the same function,
  // so the model uses it only when asked (dl_cuda_vit.fuse_gelu).
  DL_EPILOGUE_BIAS_GELU_TANH,
} dl_cuda_epilogue;

// y [m, n] = x [m, k] w[n, k]^T (+ bias [n]) with the epilogue; all in `dt`.
void dl_cuda_linear(dl_cuda_blas *blas, dl_dtype dt, void *y, const void *x, const void *w, const void *bias,
                    int m, int k, int n, dl_cuda_epilogue epilogue, cudaStream_t s);

// How the bias gradient is formed: added to db by a column-sum kernel (the
// CPU op's semantics), or written (overwriting db) by cuBLASLt's BGRADB
// epilogue fused into the weight-gradient GEMM; where cuBLASLt has no
// algorithm with that epilogue, db is zeroed and the column-sum kernel used.
typedef enum dl_cuda_bias_grad_mode { DL_BIAS_GRAD_ACCUMULATE, DL_BIAS_GRAD_FUSED_OVERWRITE } dl_cuda_bias_grad_mode;

// dx [m, k] = dy w (overwritten, or added when accumulate_dx; dx may be NULL),
// dw [n, k] += dy^T x in float32, db [n] (float32, may be NULL) per mode.
void dl_cuda_linear_backward(dl_cuda_blas *blas, dl_dtype dt, void *dx, float *dw, float *db, const void *dy,
                             const void *x, const void *w, int m, int k, int n, int accumulate_dx,
                             dl_cuda_bias_grad_mode db_mode, cudaStream_t s);

#endif
