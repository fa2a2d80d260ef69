// The device activation buffers of the CUDA forward, carved out of one
// allocation. Kept apart from the CUDA calls so the CPU tests check it.
#include "model/cuda/vit_cuda_layout.h"

size_t dl_cuda_vit_carve(dl_cuda_vit_buffers *b, unsigned char *base, const dl_vit_config *c, size_t elem, int n,
                         int h, int w) {
  const int np = (h / c->patch) * (w / c->patch), t = 1 + c->registers + np;
  const size_t D = (size_t)c->dim, rows = (size_t)n * t, pp = (size_t)c->patch * c->patch * 3;
  const size_t fc1_out = (size_t)c->ffn_hidden * (c->ffn == DL_FFN_SWIGLU ? 2 : 1);
  const size_t elems[] = {rows * D, rows * D, rows * 3 * D, rows * D, rows * fc1_out,
                          c->ffn == DL_FFN_SWIGLU ? rows * c->ffn_hidden : 0, rows * D, (size_t)n * np * pp,
                          (size_t)np * D};
  void **slots[] = {&b->x, &b->ln, &b->qkv, &b->attn, &b->hidden, &b->gated, &b->tmp, &b->unfold, &b->pos};
  size_t off = 0;
  for (size_t i = 0; i < sizeof elems / sizeof elems[0]; i++) {
    *slots[i] = base ? base + off : NULL;
    const size_t bytes = elems[i] * (i == 0 ? sizeof(float) : elem);  // x: the float32 residual stream
    off += (bytes + 255) & ~(size_t)255;  // 256-byte aligned: cuBLASLt's preferred alignment
  }
  return off;
}

double dl_vit_forward_flops(const dl_vit_config *c, int h, int w) {
  const double np = (double)(h / c->patch) * (w / c->patch), t = 1 + c->registers + np, D = c->dim;
  const double F = c->ffn_hidden, fc1_out = c->ffn == DL_FFN_SWIGLU ? 2 * F : F;
  const double per_block = 2 * t * (D * 3 * D + D * D + D * fc1_out + F * D) + 2 * 2 * t * t * D;
  return 2 * np * (3.0 * c->patch * c->patch) * D + c->depth * per_block;
}
