#include "model/cuda/matmul.h"

#include "model/cuda/cuda_check.h"
#include "model/cuda/gemm_plan.h"

// cuBLASLt's recommendation for Hopper: 32 MiB lets it use every algorithm.
#define WORKSPACE_BYTES ((size_t)32 << 20)

void dl_cuda_blas_init(dl_cuda_blas *blas) {
  cublasCheck(cublasLtCreate(&blas->lt));
  blas->workspace_bytes = WORKSPACE_BYTES;
  cudaCheck(cudaMalloc(&blas->workspace, blas->workspace_bytes));
}

void dl_cuda_blas_free(dl_cuda_blas *blas) {
  if (blas->workspace) cudaCheck(cudaFree(blas->workspace));
  if (blas->lt) cublasCheck(cublasLtDestroy(blas->lt));
  *blas = (dl_cuda_blas){0};
}

static cudaDataType_t cuda_type(dl_dtype dt) { return dt == DL_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

typedef struct gemm_call {
  const dl_gemm_plan *plan;
  const void *a, *b;
  void *c;
  cudaDataType_t ab_type, c_type;
  float beta;
  cublasLtEpilogue_t epilogue;
  const void *bias;  // epilogue's bias input or bias-gradient output
  cudaDataType_t bias_type;
} gemm_call;

// One cuBLASLt matmul: descriptors, the heuristic's first algorithm, the call.
// float32 storage computes in plain float32 (no TF32), which the parity
// tests rely on for their 1e-5 bound.
static void gemm(dl_cuda_blas *blas, const gemm_call *g, cudaStream_t s) {
  const dl_gemm_plan *p = g->plan;
  cublasLtMatmulDesc_t desc;
  cublasCheck(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = p->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = p->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &g->epilogue, sizeof g->epilogue));
  if (g->bias) {
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g->bias, sizeof g->bias));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &g->bias_type,
                                               sizeof g->bias_type));
  }
  cublasLtMatrixLayout_t la, lb, lc;
  cublasCheck(cublasLtMatrixLayoutCreate(&la, g->ab_type, (uint64_t)p->a_rows, (uint64_t)p->a_cols, p->lda));
  cublasCheck(cublasLtMatrixLayoutCreate(&lb, g->ab_type, (uint64_t)p->b_rows, (uint64_t)p->b_cols, p->ldb));
  cublasCheck(cublasLtMatrixLayoutCreate(&lc, g->c_type, (uint64_t)p->rows, (uint64_t)p->cols, p->ldc));

  cublasLtMatmulPreference_t pref;
  cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
  cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                   &blas->workspace_bytes, sizeof blas->workspace_bytes));
  cublasLtMatmulHeuristicResult_t heur;
  int found = 0;
  cublasCheck(cublasLtMatmulAlgoGetHeuristic(blas->lt, desc, la, lb, lc, lc, pref, 1, &heur, &found));
  if (found == 0) {
    fprintf(stderr, "cublasLt: no algorithm for %dx%dx%d (epilogue %d)\n", p->rows, p->cols, p->inner,
            (int)g->epilogue);
    exit(EXIT_FAILURE);
  }
  const float alpha = 1.0f;
  cublasCheck(cublasLtMatmul(blas->lt, desc, &alpha, g->a, la, g->b, lb, &g->beta, g->c, lc, g->c, lc, &heur.algo,
                             blas->workspace, blas->workspace_bytes, s));
  cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
  cublasCheck(cublasLtMatrixLayoutDestroy(la));
  cublasCheck(cublasLtMatrixLayoutDestroy(lb));
  cublasCheck(cublasLtMatrixLayoutDestroy(lc));
  cublasCheck(cublasLtMatmulDescDestroy(desc));
}

static const void *operand(dl_gemm_operand o, const void *x, const void *w, const void *dy) {
  return o == DL_OPERAND_X ? x : o == DL_OPERAND_W ? w : dy;
}

void dl_cuda_linear(dl_cuda_blas *blas, dl_dtype dt, void *y, const void *x, const void *w, const void *bias,
                    int m, int k, int n, dl_cuda_epilogue epilogue, cudaStream_t s) {
  const dl_gemm_plan plan = dl_gemm_plan_make(DL_GEMM_FORWARD, m, k, n);
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  if (bias) epi = epilogue == DL_EPILOGUE_BIAS_GELU_TANH ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
  else if (epilogue == DL_EPILOGUE_BIAS_GELU_TANH) epi = CUBLASLT_EPILOGUE_GELU;
  const gemm_call g = {.plan = &plan, .a = operand(plan.a, x, w, NULL), .b = operand(plan.b, x, w, NULL), .c = y,
                       .ab_type = cuda_type(dt), .c_type = cuda_type(dt), .beta = 0.0f, .epilogue = epi,
                       .bias = bias, .bias_type = cuda_type(dt)};
  gemm(blas, &g, s);
}

void dl_cuda_linear_backward(dl_cuda_blas *blas, dl_dtype dt, void *dx, float *dw, float *db, const void *dy,
                             const void *x, const void *w, int m, int k, int n, int accumulate_dx,
                             dl_cuda_bias_grad_mode db_mode, cudaStream_t s) {
  if (dx) {
    const dl_gemm_plan plan = dl_gemm_plan_make(DL_GEMM_BACKWARD_INPUT, m, k, n);
    const gemm_call g = {.plan = &plan, .a = operand(plan.a, x, w, dy), .b = operand(plan.b, x, w, dy), .c = dx,
                         .ab_type = cuda_type(dt), .c_type = cuda_type(dt), .beta = accumulate_dx ? 1.0f : 0.0f,
                         .epilogue = CUBLASLT_EPILOGUE_DEFAULT};
    gemm(blas, &g, s);
  }
  // The weight gradient accumulates in float32 whatever the storage type:
  // bf16 inputs with a float32 C/D is one of cuBLASLt's supported mixes.
  const dl_gemm_plan plan = dl_gemm_plan_make(DL_GEMM_BACKWARD_WEIGHT, m, k, n);
  const int fused = db && db_mode == DL_BIAS_GRAD_FUSED_OVERWRITE;
  const gemm_call g = {.plan = &plan, .a = operand(plan.a, x, w, dy), .b = operand(plan.b, x, w, dy), .c = dw,
                       .ab_type = cuda_type(dt), .c_type = CUDA_R_32F, .beta = 1.0f,
                       .epilogue = fused ? CUBLASLT_EPILOGUE_BGRADB : CUBLASLT_EPILOGUE_DEFAULT,
                       .bias = fused ? db : NULL, .bias_type = CUDA_R_32F};
  gemm(blas, &g, s);
  if (db && !fused) dl_cuda_bias_grad(dt, db, dy, m, n, s);
}
