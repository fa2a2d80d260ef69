#include "model/cuda/gemm_plan.h"

#include <stdint.h>
#include <string.h>

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

int dl_gemm_alignment(const void *p) {
  const uintptr_t a = (uintptr_t)p;
  int align = 1;
  while (align < 256 && (a & (uintptr_t)(2 * align - 1)) == 0) align *= 2;
  return align;
}

dl_gemm_key dl_gemm_key_make(const dl_gemm_plan *p, int ab_type, int c_type, int epilogue, int bias_type,
                             const void *a, const void *b, const void *c, const void *d) {
  dl_gemm_key k;
  memset(&k, 0, sizeof k);
  k.trans_a = p->trans_a;
  k.trans_b = p->trans_b;
  k.rows = p->rows;
  k.cols = p->cols;
  k.inner = p->inner;
  k.lda = p->lda;
  k.ldb = p->ldb;
  k.ldc = p->ldc;
  k.ab_type = ab_type;
  k.c_type = c_type;
  k.epilogue = epilogue;
  k.bias_type = bias_type;
  k.align_a = dl_gemm_alignment(a);
  k.align_b = dl_gemm_alignment(b);
  k.align_c = dl_gemm_alignment(c);
  k.align_d = dl_gemm_alignment(d);
  return k;
}

dl_gemm_cache_slot *dl_gemm_cache_lookup(dl_gemm_cache *c, const dl_gemm_key *key, int *hit) {
  dl_gemm_cache_slot *victim = &c->slots[0];
  c->clock++;
  for (int i = 0; i < DL_GEMM_CACHE_SLOTS; i++) {
    dl_gemm_cache_slot *s = &c->slots[i];
    if (s->last_use && memcmp(&s->key, key, sizeof *key) == 0) {
      s->last_use = c->clock;
      c->hits++;
      *hit = 1;
      return s;
    }
    if (s->last_use < victim->last_use) victim = s;  // an empty slot (0) wins
  }
  c->misses++;
  if (victim->last_use) c->evictions++;
  victim->key = *key;
  victim->last_use = c->clock;
  *hit = 0;
  return victim;
}
