#include "model/cuda/matmul.h"

#include <stdlib.h>

#include "model/cuda/cuda_check.h"
#include "model/cuda/gemm_plan.h"

// cuBLASLt's recommendation for Hopper: 32 MiB lets it use every algorithm.
#define WORKSPACE_BYTES ((size_t)32 << 20)
// Heuristic results kept per plan and tried in order until one runs: the
// first can be refused at run time (NOT_SUPPORTED) for reasons the
// heuristic does not see.
#define MAX_ALGOS 8

// One cached plan: descriptors built once, the heuristic's algorithms in
// its order; `first` is the one that ran last time. algos == 0: cuBLASLt
// has none for this key (cached too, so the heuristic is not rerun).
typedef struct gemm_cached {
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulHeuristicResult_t heur[MAX_ALGOS];
  int algos, first;
} gemm_cached;

static void cached_free(gemm_cached *g) {
  if (!g) return;
  // Destroy calls only fail on a NULL descriptor, which a built plan lacks.
  if (g->la) cublasLtMatrixLayoutDestroy(g->la);
  if (g->lb) cublasLtMatrixLayoutDestroy(g->lb);
  if (g->lc) cublasLtMatrixLayoutDestroy(g->lc);
  if (g->desc) cublasLtMatmulDescDestroy(g->desc);
  free(g);
}

void dl_cuda_blas_init(dl_cuda_blas *blas) {
  *blas = (dl_cuda_blas){0};
  blas->cache = dl_calloc(1, sizeof *blas->cache);
  cublasCheck(cublasLtCreate(&blas->lt));
  blas->workspace_bytes = WORKSPACE_BYTES;
  cudaCheck(cudaMalloc(&blas->workspace, blas->workspace_bytes));
}

void dl_cuda_blas_free(dl_cuda_blas *blas) {
  if (blas->cache) {
    for (int i = 0; i < DL_GEMM_CACHE_SLOTS; i++) cached_free(blas->cache->slots[i].value);
    free(blas->cache);
  }
  void *ws = blas->workspace;
  cublasLtHandle_t lt = blas->lt;
  *blas = (dl_cuda_blas){0};
  if (ws) cudaCheck(cudaFree(ws));
  if (lt) cublasCheck(cublasLtDestroy(lt));
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

// "cublasLt: WHAT for C [rows x cols] inner K (transposes, types, epilogue,
// alignments)": enough to reproduce the call.
static int gemm_fail(const gemm_call *g, const dl_gemm_key *k, const char *what, const char *call, int line) {
  char detail[320];
  snprintf(detail, sizeof detail,
           "%s for C[%d x %d] inner %d, op %c%c, types ab %d c %d, epilogue %d, alignment a %d b %d c %d",
           what, g->plan->rows, g->plan->cols, g->plan->inner, k->trans_a ? 'T' : 'N', k->trans_b ? 'T' : 'N',
           (int)g->ab_type, (int)g->c_type, (int)g->epilogue, k->align_a, k->align_b, k->align_c);
  return dl_cuda_record_failure("cublasLt", detail, call, __FILE__, line);
}
#define gemmCheck(call)                                               \
  do {                                                                \
    const cublasStatus_t st_ = (call);                                \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                 \
      return gemm_fail(g, key, dl_cublas_status_name(st_), #call, __LINE__); \
  } while (0)

// Fills c's descriptors and asks the heuristic, told the pointers' real
// alignment, for up to MAX_ALGOS algorithms. float32 storage computes in
// plain float32 (no TF32), which the parity tests rely on for their 1e-5
// bound. -1 (failure recorded) only when cuBLASLt itself fails; no
// algorithm is c->algos == 0.
static int describe(dl_cuda_blas *blas, const gemm_call *g, const dl_gemm_key *key, gemm_cached *c,
                    cublasLtMatmulPreference_t pref) {
  const dl_gemm_plan *p = g->plan;
  gemmCheck(cublasLtMatmulDescCreate(&c->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = p->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = p->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  gemmCheck(cublasLtMatmulDescSetAttribute(c->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  gemmCheck(cublasLtMatmulDescSetAttribute(c->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  gemmCheck(cublasLtMatmulDescSetAttribute(c->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &g->epilogue, sizeof g->epilogue));
  if (g->bias) {
    // The pointer itself is set on every call (the cache is keyed by shape, not by buffer).
    gemmCheck(cublasLtMatmulDescSetAttribute(c->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g->bias, sizeof g->bias));
    gemmCheck(cublasLtMatmulDescSetAttribute(c->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &g->bias_type,
                                             sizeof g->bias_type));
  }
  gemmCheck(cublasLtMatrixLayoutCreate(&c->la, g->ab_type, (uint64_t)p->a_rows, (uint64_t)p->a_cols, p->lda));
  gemmCheck(cublasLtMatrixLayoutCreate(&c->lb, g->ab_type, (uint64_t)p->b_rows, (uint64_t)p->b_cols, p->ldb));
  gemmCheck(cublasLtMatrixLayoutCreate(&c->lc, g->c_type, (uint64_t)p->rows, (uint64_t)p->cols, p->ldc));
  gemmCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                 &blas->workspace_bytes, sizeof blas->workspace_bytes));
  const uint32_t align[4] = {(uint32_t)key->align_a, (uint32_t)key->align_b, (uint32_t)key->align_c,
                             (uint32_t)key->align_d};
  const cublasLtMatmulPreferenceAttributes_t attr[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4; i++)
    gemmCheck(cublasLtMatmulPreferenceSetAttribute(pref, attr[i], &align[i], sizeof align[i]));
  // NOT_SUPPORTED from the heuristic means no algorithm, not a failure.
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(blas->lt, c->desc, c->la, c->lb, c->lc, c->lc, pref,
                                                           MAX_ALGOS, c->heur, &c->algos);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED) c->algos = 0;
  else gemmCheck(st);
  return 0;
}

// The cached plan for this call, built on a miss; NULL with the failure recorded.
static gemm_cached *plan_for(dl_cuda_blas *blas, const gemm_call *g, const dl_gemm_key *key) {
  int hit = 0;
  dl_gemm_cache_slot *slot = dl_gemm_cache_lookup(blas->cache, key, &hit);
  if (hit) return slot->value;
  cached_free(slot->value);
  slot->value = NULL;
  gemm_cached *c = dl_calloc(1, sizeof *c);
  cublasLtMatmulPreference_t pref = NULL;
  int rc = dl_cublas_failed_call(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate", __FILE__,
                                 __LINE__);
  if (rc == 0) rc = describe(blas, g, key, c, pref);
  if (pref) cublasLtMatmulPreferenceDestroy(pref);
  if (rc) {
    cached_free(c);
    slot->last_use = 0;  // leave the slot empty, not keyed to a plan it lacks
    return NULL;
  }
  slot->value = c;
  return c;
}

// Runs the call with the plan's algorithms, the one that ran last time
// first. 0: done; 1: cuBLASLt has no algorithm that runs it (nothing
// recorded: the caller may have a fallback); -1: failure recorded.
static int gemm_try(dl_cuda_blas *blas, const gemm_call *g, cudaStream_t s) {
  const dl_gemm_key k = dl_gemm_key_make(g->plan, (int)g->ab_type, (int)g->c_type, (int)g->epilogue,
                                         g->bias ? (int)g->bias_type : -1, g->a, g->b, g->c, g->c);
  const dl_gemm_key *key = &k;
  gemm_cached *c = plan_for(blas, g, key);
  if (!c) return -1;
  if (c->algos == 0) return 1;
  if (g->bias)
    gemmCheck(cublasLtMatmulDescSetAttribute(c->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g->bias, sizeof g->bias));
  const float alpha = 1.0f;
  cublasStatus_t st = CUBLAS_STATUS_NOT_SUPPORTED;
  for (int t = 0; t < c->algos; t++) {
    const int i = (c->first + t) % c->algos;
    if (c->heur[i].state != CUBLAS_STATUS_SUCCESS) continue;
    st = cublasLtMatmul(blas->lt, c->desc, &alpha, g->a, c->la, g->b, c->lb, &g->beta, g->c, c->lc, g->c, c->lc,
                        &c->heur[i].algo, blas->workspace, blas->workspace_bytes, s);
    if (st == CUBLAS_STATUS_SUCCESS) {
      c->first = i;
      return 0;
    }
    if (st != CUBLAS_STATUS_NOT_SUPPORTED) break;  // a real failure, not a refused algorithm
  }
  if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
    c->algos = 0;  // none runs: the fallback from now on, without retrying
    return 1;
  }
  return gemm_fail(g, key, dl_cublas_status_name(st), "cublasLtMatmul", __LINE__);
}

// A matmul that has no fallback: no algorithm is a failure too.
static void gemm(dl_cuda_blas *blas, const gemm_call *g, cudaStream_t s) {
  if (gemm_try(blas, g, s) == 1) {
    const dl_gemm_key k = dl_gemm_key_make(g->plan, (int)g->ab_type, (int)g->c_type, (int)g->epilogue,
                                           g->bias ? (int)g->bias_type : -1, g->a, g->b, g->c, g->c);
    gemm_fail(g, &k, "no algorithm", "cublasLtMatmulAlgoGetHeuristic", __LINE__);
  }
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
    dl_cuda_return_if_failed();
  }
  // The weight gradient accumulates in float32 whatever the storage type:
  // bf16 inputs with a float32 C/D is one of cuBLASLt's supported mixes.
  const dl_gemm_plan plan = dl_gemm_plan_make(DL_GEMM_BACKWARD_WEIGHT, m, k, n);
  const int fused = db && db_mode == DL_BIAS_GRAD_FUSED_OVERWRITE;
  gemm_call g = {.plan = &plan, .a = operand(plan.a, x, w, dy), .b = operand(plan.b, x, w, dy), .c = dw,
                 .ab_type = cuda_type(dt), .c_type = CUDA_R_32F, .beta = 1.0f,
                 .epilogue = fused ? CUBLASLT_EPILOGUE_BGRADB : CUBLASLT_EPILOGUE_DEFAULT,
                 .bias = fused ? db : NULL, .bias_type = CUDA_R_32F};
  const int rc = gemm_try(blas, &g, s);
  if (rc < 0) return;
  if (rc == 0 && fused) return;
  if (rc == 1 && !fused) {
    gemm(blas, &g, s);  // records "no algorithm" with the shape
    return;
  }
  if (rc == 1) {
    // No algorithm with the fused bias gradient: the plain GEMM, then the
    // column sum over a zeroed db (the fused epilogue overwrites).
    g.epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    g.bias = NULL;
    gemm(blas, &g, s);
    dl_cuda_return_if_failed();
    cudaCheck(cudaMemsetAsync(db, 0, (size_t)n * sizeof(float), s));
  }
  if (db) dl_cuda_bias_grad(dt, db, dy, m, n, s);
}
