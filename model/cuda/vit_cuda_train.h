// The ViT's training passes on the GPU: the forward pass keeping what the
// backward pass needs, and the backward pass into a float32 gradient buffer
// on the device with the model's flat layout. Mirrors model/vit_train.c
// step for step; attention keeps its log-sum-exp instead of probabilities.
// The residual stream (the tokens between blocks, x_mid inside a block) and
// its gradient in float32; other activations and their gradients in the
// model's dtype; parameter gradients and LayerNorm statistics in float32.
// Image gradients are not computed.
#ifndef DISTILL_MODEL_CUDA_VIT_CUDA_TRAIN_H
#define DISTILL_MODEL_CUDA_VIT_CUDA_TRAIN_H

#include <stdbool.h>

#include "model/cuda/vit_cuda.h"

typedef struct dl_cuda_block_acts {
  float *x_mid;  // float32: the residual stream after the attention branch
  void *ln1, *ln2, *qkv, *attn, *proj, *h_pre, *h_act, *fc2;
  float *mean1, *rstd1, *mean2, *rstd2, *lse;
} dl_cuda_block_acts;

typedef struct dl_cuda_vit_train_ws {
  int n, h, w, gh, gw, np, t;
  void *mem;  // one device allocation for everything below
  size_t mem_bytes;
  dl_cuda_block_acts *blocks;
  int blocks_cap;
  float **xs;  // depth + 1 residual streams, float32
  void *unfold, *tok, *pos, *lnf;
  float *meanf, *rstdf, *wy, *wx;
  unsigned char *masks;  // device copy, NULL when unmasked
  // Backward scratch.
  float *dx;  // the residual stream's gradient, float32
  void *dy, *dln, *dqkv, *dattn, *dh, *dhact, *dtok;
  float *dpos, *attn_scratch;
} dl_cuda_vit_train_ws;

void dl_cuda_vit_train_ws_free(dl_cuda_vit_train_ws *ws);

// As dl_vit_forward_train: host images and masks in, host float32 outputs
// (cls, regs, patches; each may be NULL) out.
int dl_cuda_vit_forward_train(dl_cuda_vit *g, const float *images, int n, int h, int w, const bool *masks,
                              dl_cuda_vit_train_ws *ws, dl_vit_outputs *out, dl_err *err);

// The same pass leaving the outputs on the device for the training step:
// ws->lnf [n, 1 + registers + patches, D] in the model's dtype (split it with
// dl_cuda_split_tokens); nothing is copied back.
int dl_cuda_vit_forward_train_device(dl_cuda_vit *g, const float *images, int n, int h, int w, const bool *masks,
                                     dl_cuda_vit_train_ws *ws, dl_err *err);

// As dl_vit_backward for the last forward on ws: d_cls, d_regs, d_patches
// are DEVICE float buffers (each may be NULL); parameter gradients are ADDED
// to grads (device, float32, layout.total).
void dl_cuda_vit_backward(dl_cuda_vit *g, dl_cuda_vit_train_ws *ws, const float *d_cls, const float *d_regs,
                          const float *d_patches, float *grads);

// The same, calling hook->stage_done(hook->ctx, stage) on the host each time
// the pass has queued a stage of its parameters' gradients on g->stream (the
// final norm, each block, the embedding; numbered as model/cuda/grad_buckets.h),
// so the caller can start reducing what is final while the rest is computed.
typedef struct dl_cuda_backward_hook {
  void (*stage_done)(void *ctx, int stage);
  void *ctx;
} dl_cuda_backward_hook;
void dl_cuda_vit_backward_hooked(dl_cuda_vit *g, dl_cuda_vit_train_ws *ws, const float *d_cls, const float *d_regs,
                                 const float *d_patches, float *grads, const dl_cuda_backward_hook *hook);

#endif
