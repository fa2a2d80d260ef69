// Packing a head's MLP weights into bf16 (heads_bf16.h); the bottleneck pass
// itself is heads.c's, with these weights.
#include "model/heads_bf16.h"

#include <string.h>

void dl_head_bf16_pack(const dl_head *h, dl_head_bf16 *out) {
  memset(out, 0, sizeof *out);
  for (int l = 0; l < h->cfg.nlayers; l++) {  // parameter 2l: layer l's weight [out, in]
    const dl_param_entry *e = &h->layout.entries[2 * l];
    dl_bf16_matrix_pack(&out->layers[l], dl_head_param(h, 2 * l), (int)e->shape[0], (int)e->shape[1]);
  }
}

void dl_head_bf16_free(dl_head_bf16 *b) {
  for (int l = 0; l < DL_HEAD_MAX_LAYERS; l++) dl_bf16_matrix_free(&b->layers[l]);
}
