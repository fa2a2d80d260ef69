// What the CPU step's matrix multiplies keep between calls, beyond their
// operands: model/cpu/gemm.c packs the operand that supplies C's columns (W
// of a linear layer's forward, W for the backward's dX = dY W, X for its
// dW += dY^T X) into panels, one buffer per calling thread that grows to the
// largest call and stays; a chunk of inner indices at a time, about 32 MiB
// (dl_gemm_packed_floats says how much for a given product). The forward uses it for layers of at least 64 rows
// with n >= 64 and k >= 32 (model/cpu/ops.c, OpenBLAS below), the backward
// always. OpenBLAS serves only the attention's per-head products, called
// single-threaded inside a parallel region: it packs block by block, in
// buffers of its own, and keeps nothing of the step's size.
#include "model/cpu/gemm.h"
#include "student/memory_plan_rows.h"

// One linear layer y [m, out] = x [m, in] W^T: its forward (own kernel from
// the threshold on), its dX (when the input needs a gradient) and its dW.
static size_t linear_pack(size_t m, size_t in, size_t out, bool dx) {
  size_t most = m >= 64 && out >= 64 && in >= 32 ? dl_gemm_packed_floats((int)out, (int)in) : 0;
  if (dx) most = dl_mem_max(most, dl_gemm_packed_floats((int)in, (int)out));
  return dl_mem_max(most, dl_gemm_packed_floats((int)in, (int)m));
}

// The linear layers of a head on m rows: the MLP, then the last layer.
static size_t head_pack(const dl_head_config *c, size_t m) {
  size_t most = 0;
  for (int l = 0; l < c->nlayers; l++)
    most = dl_mem_max(most, linear_pack(m, dl_mem_layer_in(c, l), dl_mem_layer_out(c, l), true));
  return c->prototypes ? dl_mem_max(most, linear_pack(m, (size_t)c->out_dim, (size_t)c->prototypes, true)) : most;
}

// The backbone on n images of size x size: patch embedding (no gradient to
// the images), qkv, proj, fc1, fc2.
static size_t vit_pack(const dl_vit_config *c, size_t n, int size) {
  const size_t np = (size_t)(size / c->patch) * (size / c->patch), rows = n * (1 + c->registers + np);
  const size_t D = (size_t)c->dim, F = (size_t)c->ffn_hidden, fc1 = F * (c->ffn == DL_FFN_SWIGLU ? 2 : 1);
  size_t most = linear_pack(n * np, (size_t)c->patch * c->patch * 3, D, false);
  most = dl_mem_max(most, dl_mem_max(linear_pack(rows, D, 3 * D, true), linear_pack(rows, D, D, true)));
  return dl_mem_max(most, dl_mem_max(linear_pack(rows, D, fc1, true), linear_pack(rows, F, D, true)));
}

size_t dl_mem_sgemm_pack(const dl_mem_shape *s) {
  const size_t GB = (size_t)s->global_crops * s->batch;
  size_t most = dl_mem_max(vit_pack(&s->student, GB, s->global_size),
                           vit_pack(&s->student, (size_t)s->local_crops * s->batch, s->local_size));
  most = dl_mem_max(most, head_pack(&s->head[0], dl_mem_rows_cls(s)));
  most = dl_mem_max(most, head_pack(&s->head[1], dl_mem_rows_ibot(s)));
  // The teacher's frozen last layers: forward only.
  if (dl_mem_proto(s))
    for (int k = 0; k < 2; k++) {
      const size_t m = k ? dl_mem_rows_ibot(s) : GB, K = (size_t)s->head[k].prototypes, in = s->teacher_width[k];
      if (m >= 64 && K >= 64 && in >= 32) most = dl_mem_max(most, dl_gemm_packed_floats((int)K, (int)in));
    }
  return most * DL_MEM_F32;
}
