// What the CPU step's matrix multiplies keep between calls, beyond their
// operands: both grow to the largest call and stay.
//  - model/cpu/gemm.c packs W [n, k] of a linear layer into 16-column panels,
//    one copy per calling thread, for layers of at least 64 rows with
//    n >= 64 and k >= 32 (model/cpu/ops.c), on machines with AVX2 and FMA.
//  - OpenBLAS, threaded, packs the whole row range of C = A^T B's A operand
//    for one block of the inner dimension: rows x q floats, q the inner size
//    (at most its GEMM_Q; between GEMM_Q and twice that, half of it). The
//    step's largest such call is a head's last-layer weight gradient
//    (dW [K, B] = dlogits^T zn, inner = the head's rows): at K = 131072 and
//    GEMM_Q = 320, 160 MiB. Measured on the test machine's OpenBLAS 0.3.21
//    (Zen kernels): the resident set grew by K x min-rule(m) x 4 bytes with
//    two threads and not at all with one; other kernels block the inner
//    dimension with another GEMM_Q of the same order.
#include "model/cpu/gemm.h"
#include "student/memory_plan_rows.h"

#define OPENBLAS_SGEMM_Q 320
#define OPENBLAS_SGEMM_UNROLL_M 16

static size_t pack_floats(size_t m, size_t n, size_t k) {
  return m >= 64 && n >= 64 && k >= 32 ? ((n + 15) & ~(size_t)15) * k : 0;
}

// The linear layers of a head on m rows: the MLP, then the last layer.
static size_t head_pack(const dl_head_config *c, size_t m) {
  size_t most = 0;
  for (int l = 0; l < c->nlayers; l++)
    most = dl_mem_max(most, pack_floats(m, dl_mem_layer_out(c, l), dl_mem_layer_in(c, l)));
  return c->prototypes ? dl_mem_max(most, pack_floats(m, (size_t)c->prototypes, (size_t)c->out_dim)) : most;
}

// The backbone on n images of size x size: patch embedding, qkv, proj, fc1, fc2.
static size_t vit_pack(const dl_vit_config *c, size_t n, int size) {
  const size_t np = (size_t)(size / c->patch) * (size / c->patch), rows = n * (1 + c->registers + np);
  const size_t D = (size_t)c->dim, F = (size_t)c->ffn_hidden, fc1 = F * (c->ffn == DL_FFN_SWIGLU ? 2 : 1);
  size_t most = pack_floats(n * np, D, (size_t)c->patch * c->patch * 3);
  most = dl_mem_max(most, dl_mem_max(pack_floats(rows, 3 * D, D), pack_floats(rows, D, D)));
  return dl_mem_max(most, dl_mem_max(pack_floats(rows, fc1, D), pack_floats(rows, D, F)));
}

size_t dl_mem_sgemm_pack(const dl_mem_shape *s) {
  if (!dl_gemm_available()) return 0;
  const size_t GB = (size_t)s->global_crops * s->batch;
  size_t most = dl_mem_max(vit_pack(&s->student, GB, s->global_size),
                           vit_pack(&s->student, (size_t)s->local_crops * s->batch, s->local_size));
  most = dl_mem_max(most, head_pack(&s->head[0], dl_mem_rows_cls(s)));
  most = dl_mem_max(most, head_pack(&s->head[1], dl_mem_rows_ibot(s)));
  if (dl_mem_proto(s))
    for (int k = 0; k < 2; k++)
      most = dl_mem_max(most, pack_floats(k ? dl_mem_rows_ibot(s) : GB, (size_t)s->head[k].prototypes,
                                          (size_t)s->teacher_width[k]));
  return most * DL_MEM_F32;
}

// OpenBLAS's block of the inner dimension (its level-3 driver's rule).
static size_t inner_block(size_t inner) {
  if (inner >= 2 * OPENBLAS_SGEMM_Q) return OPENBLAS_SGEMM_Q;
  if (inner > OPENBLAS_SGEMM_Q)
    return (inner / 2 + OPENBLAS_SGEMM_UNROLL_M - 1) / OPENBLAS_SGEMM_UNROLL_M * OPENBLAS_SGEMM_UNROLL_M;
  return inner;
}

// A weight gradient dW [rows, cols] = dY^T X over `inner` rows of the batch.
static size_t weight_grad(size_t rows, size_t inner) { return rows * inner_block(inner); }

static size_t head_grads(const dl_head_config *c, size_t m) {
  size_t most = 0;
  for (int l = 0; l < c->nlayers; l++) most = dl_mem_max(most, weight_grad(dl_mem_layer_out(c, l), m));
  return c->prototypes ? dl_mem_max(most, weight_grad((size_t)c->prototypes, m)) : most;
}

static size_t vit_grads(const dl_vit_config *c, size_t n, int size) {
  const size_t np = (size_t)(size / c->patch) * (size / c->patch), rows = n * (1 + c->registers + np);
  const size_t D = (size_t)c->dim, fc1 = (size_t)c->ffn_hidden * (c->ffn == DL_FFN_SWIGLU ? 2 : 1);
  return dl_mem_max(dl_mem_max(weight_grad(3 * D, rows), weight_grad(fc1, rows)), weight_grad(D, n * np));
}

size_t dl_mem_openblas_pack(const dl_mem_shape *s) {
  if (s->threads < 2) return 0;  // one thread packs block by block
  size_t most = dl_mem_max(vit_grads(&s->student, (size_t)s->global_crops * s->batch, s->global_size),
                           vit_grads(&s->student, (size_t)s->local_crops * s->batch, s->local_size));
  most = dl_mem_max(most, head_grads(&s->head[0], dl_mem_rows_cls(s)));
  most = dl_mem_max(most, head_grads(&s->head[1], dl_mem_rows_ibot(s)));
  return most * DL_MEM_F32;
}
