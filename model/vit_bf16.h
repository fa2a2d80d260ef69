// The backbone's linear layers in bfloat16, for the opt-in bf16 teacher on
// the CPU (`distill teacher --precision bf16`, model/cpu/gemm_bf16.h): the
// weights of every block's qkv, proj and MLP layers (fc1/fc2 or SwiGLU's
// w12/w3) converted once and packed; dl_vit_forward_bf16 runs them with the
// bf16 GEMM. The patch embedding (under 1% of the work), attention,
// LayerNorm, softmax and the residual stream stay float32.
#ifndef DISTILL_MODEL_VIT_BF16_H
#define DISTILL_MODEL_VIT_BF16_H

#include "model/cpu/gemm_bf16.h"
#include "model/vit.h"

typedef struct dl_vit_bf16 {
  dl_bf16_matrix *by_param;  // [vit->layout.count]; packed only for the layers above
  int count;
} dl_vit_bf16;

// Packs the linear weights of vit (any CPU may pack; only running needs
// dl_gemm_bf16_available()).
void dl_vit_bf16_pack(const dl_vit *vit, dl_vit_bf16 *out);
void dl_vit_bf16_free(dl_vit_bf16 *b);

// dl_vit_forward (vit.h) with those layers in bf16. Requires
// dl_gemm_bf16_available().
int dl_vit_forward_bf16(const dl_vit *vit, const dl_vit_bf16 *bf16, const float *images, int n, int h, int w,
                        const bool *masks, dl_vit_workspace *ws, dl_vit_outputs *out, dl_err *err);

#endif
