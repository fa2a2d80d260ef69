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

// What decides cuBLASLt's choice of algorithm for one call, and so keys the
// plan cache (model/cuda/matmul.c): the plan's shape and transposes, the
// types (cudaDataType_t values), the epilogue (cublasLtEpilogue_t) and the
// alignment of the four pointers, which the heuristic must be told
// (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES): a bf16 weight at a 32-byte
// offset gets no algorithm that assumes 256. All ints, no padding: compared
// with memcmp.
typedef struct dl_gemm_key {
  int trans_a, trans_b;
  int rows, cols, inner, lda, ldb, ldc;
  int ab_type, c_type, epilogue, bias_type;
  int align_a, align_b, align_c, align_d;  // bytes: 1, 2, 4, ... 256
} dl_gemm_key;

// The largest power of two, at most 256, that divides the address: what
// the pointer can promise the heuristic. NULL (no operand) counts as 256.
int dl_gemm_alignment(const void *p);

dl_gemm_key dl_gemm_key_make(const dl_gemm_plan *p, int ab_type, int c_type, int epilogue, int bias_type,
                             const void *a, const void *b, const void *c, const void *d);

// A fixed number of plans, least recently used evicted: a training step of
// one student meets a few dozen shapes (4 linears x 3 products x 2 crop
// sizes, the heads), so 256 slots never evict in steady state; the bound
// keeps a long-running teacher that sees many batch sizes from growing.
#define DL_GEMM_CACHE_SLOTS 256
typedef struct dl_gemm_cache_slot {
  dl_gemm_key key;
  unsigned long long last_use;  // 0: empty
  void *value;                  // the caller's plan (descriptors, algorithms)
} dl_gemm_cache_slot;
typedef struct dl_gemm_cache {
  dl_gemm_cache_slot slots[DL_GEMM_CACHE_SLOTS];
  unsigned long long clock;
  long hits, misses, evictions;
} dl_gemm_cache;

// The slot for key, marked used. *hit = 1: the slot holds key's value.
// *hit = 0: the slot is empty or holds the least recently used entry, whose
// key is already replaced by `key`; the caller destroys the old value (if
// not NULL) and stores the new one.
dl_gemm_cache_slot *dl_gemm_cache_lookup(dl_gemm_cache *c, const dl_gemm_key *key, int *hit);

#endif
