// Packing the backbone's linear weights into bf16 (vit_bf16.h); the forward
// pass itself is vit_forward.c's, with these weights.
#include "model/vit_bf16.h"

#include <stdlib.h>

static void pack_param(const dl_vit *vit, dl_vit_bf16 *out, int index) {
  const dl_param_entry *e = &vit->layout.entries[index];
  dl_bf16_matrix_pack(&out->by_param[index], dl_vit_param(vit, index), (int)e->shape[0], (int)e->shape[1]);
}

void dl_vit_bf16_pack(const dl_vit *vit, dl_vit_bf16 *out) {
  const dl_vit_config *c = &vit->cfg;
  out->count = vit->layout.count;
  out->by_param = dl_calloc((size_t)out->count, sizeof *out->by_param);
  static const int kLinear[] = {DL_P_QKV_W, DL_P_PROJ_W, DL_P_FC1_W, DL_P_FC2_W};
  for (int b = 0; b < c->depth; b++)
    for (size_t i = 0; i < sizeof kLinear / sizeof kLinear[0]; i++)
      pack_param(vit, out, dl_vit_block_index(c, b, kLinear[i]));
}

void dl_vit_bf16_free(dl_vit_bf16 *b) {
  for (int i = 0; b->by_param && i < b->count; i++) dl_bf16_matrix_free(&b->by_param[i]);
  free(b->by_param);
  b->by_param = NULL;
  b->count = 0;
}
