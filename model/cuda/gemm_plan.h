// How a row-major linear layer (y = x w^T + b, w [n, k] as PyTorch stores it)
// and its two backward products map onto a column-major GEMM, the only
// layout cuBLAS(Lt) knows. Pure host logic with no CUDA dependency, so the
// CPU tests execute each plan with a reference column-major GEMM and compare
// it with the CPU linear layer (tests/model/test_gemm_plan.c).
#ifndef DISTILL_MODEL_CUDA_GEMM_PLAN_H
#define DISTILL_MODEL_CUDA_GEMM_PLAN_H

typedef enum dl_gemm_kind {
  DL_GEMM_FORWARD,          // y [m, n] = x [m, k] w^T
  DL_GEMM_BACKWARD_INPUT,   // dx [m, k] = dy [m, n] w
  DL_GEMM_BACKWARD_WEIGHT,  // dw [n, k] (+)= dy^T x
} dl_gemm_kind;

// The row-major tensors a plan's A and B operands refer to.
typedef enum dl_gemm_operand { DL_OPERAND_X, DL_OPERAND_W, DL_OPERAND_DY } dl_gemm_operand;

// Column-major C [rows x cols] = op(A) [rows x inner] * op(B) [inner x cols],
// with A stored as [a_rows x a_cols] (lda = a_rows) before op, likewise B.
typedef struct dl_gemm_plan {
  dl_gemm_operand a, b;
  int trans_a, trans_b;
  int rows, cols, inner;
  int a_rows, a_cols, b_rows, b_cols;
  int lda, ldb, ldc;
} dl_gemm_plan;

// m, k, n as in dl_linear (x [m, k], w [n, k], y [m, n]).
dl_gemm_plan dl_gemm_plan_make(dl_gemm_kind kind, int m, int k, int n);

#endif
