// A head's MLP layers in bfloat16 for the opt-in bf16 teacher on the CPU
// (model/cpu/gemm_bf16.h): the weights converted once and packed;
// dl_head_bottleneck_bf16 is dl_head_forward(DL_HEAD_BOTTLENECK) with them.
// GELU, the biases and the L2 normalization stay float32.
#ifndef DISTILL_MODEL_HEADS_BF16_H
#define DISTILL_MODEL_HEADS_BF16_H

#include "model/cpu/gemm_bf16.h"
#include "model/heads.h"

typedef struct dl_head_bf16 {
  dl_bf16_matrix layers[DL_HEAD_MAX_LAYERS];  // the MLP's linear layers, in order
} dl_head_bf16;

void dl_head_bf16_pack(const dl_head *h, dl_head_bf16 *out);
void dl_head_bf16_free(dl_head_bf16 *b);

// x [m, in] -> out [m, bottleneck], L2-normalized. Requires
// dl_gemm_bf16_available() and a head with prototypes.
void dl_head_bottleneck_bf16(const dl_head *h, const dl_head_bf16 *bf16, const float *x, int m, float *out,
                             dl_head_ws *ws);

#endif
