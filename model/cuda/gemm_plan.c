#include "model/cuda/gemm_plan.h"

// A row-major [r, c] matrix is, read column-major, its transpose [c x r]
// with leading dimension c; every plan below is that fact applied twice.
dl_gemm_plan dl_gemm_plan_make(dl_gemm_kind kind, int m, int k, int n) {
  dl_gemm_plan p = {0};
  switch (kind) {
    case DL_GEMM_FORWARD:
      // y^T [n x m] = (w^T)^T ... : A = w read as [k x n], transposed; B = x read as [k x m].
      p = (dl_gemm_plan){.a = DL_OPERAND_W, .b = DL_OPERAND_X, .trans_a = 1, .trans_b = 0,
                         .rows = n, .cols = m, .inner = k,
                         .a_rows = k, .a_cols = n, .b_rows = k, .b_cols = m};
      break;
    case DL_GEMM_BACKWARD_INPUT:
      // dx^T [k x m] = w^T [k x n] dy^T [n x m]: A = w read as [k x n]; B = dy read as [n x m].
      p = (dl_gemm_plan){.a = DL_OPERAND_W, .b = DL_OPERAND_DY, .trans_a = 0, .trans_b = 0,
                         .rows = k, .cols = m, .inner = n,
                         .a_rows = k, .a_cols = n, .b_rows = n, .b_cols = m};
      break;
    case DL_GEMM_BACKWARD_WEIGHT:
      // dw^T [k x n] = x^T [k x m] dy [m x n]: A = x read as [k x m]; B = dy read as [n x m], transposed.
      p = (dl_gemm_plan){.a = DL_OPERAND_X, .b = DL_OPERAND_DY, .trans_a = 0, .trans_b = 1,
                         .rows = k, .cols = n, .inner = m,
                         .a_rows = k, .a_cols = m, .b_rows = n, .b_cols = m};
      break;
  }
  p.lda = p.a_rows;
  p.ldb = p.b_rows;
  p.ldc = p.rows;
  return p;
}
