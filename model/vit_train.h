// The ViT's training passes on the CPU: a forward pass that keeps what the
// backward pass needs, and the backward pass into a gradient buffer with the
// model's flat layout. Same design as dl_vit_forward: one sgemm per linear
// layer over all tokens of the batch, OpenMP elsewhere, and one workspace
// allocation reused across steps of the same or a smaller shape.
#ifndef DISTILL_MODEL_VIT_TRAIN_H
#define DISTILL_MODEL_VIT_TRAIN_H

#include <stdbool.h>

#include "model/vit.h"

// What one block keeps for its backward pass (all [rows, ...] row-major).
typedef struct dl_vit_block_acts {
  float *x_mid;            // residual stream after the attention branch
  float *ln1, *ln2;        // LayerNorm outputs (the linear layers' inputs)
  float *mean1, *rstd1, *mean2, *rstd2;
  float *qkv, *probs, *attn, *proj;  // probs [n, heads, t, t]
  float *h_pre, *h_act, *fc2;        // MLP/SwiGLU input of the activation, its output, fc2 output
} dl_vit_block_acts;

typedef struct dl_vit_train_ws {
  float *buf;
  size_t cap;                 // floats
  dl_vit_block_acts *blocks;  // depth entries
  int blocks_cap;
  // The shape of the last forward pass.
  int n, h, w, gh, gw, np, t;
  const bool *masks;  // the caller's masks, which must outlive the backward pass
  // Activations outside the blocks.
  float **xs;  // depth + 1 residual streams: xs[b] is block b's input
  float *meanf, *rstdf, *unfold, *tok, *pos, *wy, *wx, *pos_tmp, *ones;
  // Backward scratch.
  float *dx, *dy, *dln, *dqkv, *dattn, *dh, *dhact, *dpos, *dpos_tmp, *dunfold, *scratch;
} dl_vit_train_ws;

void dl_vit_train_ws_free(dl_vit_train_ws *ws);

// The forward pass of dl_vit_forward (same arguments and outputs; out->prenorm
// and out->regs may be NULL), keeping activations in ws for the backward pass.
int dl_vit_forward_train(const dl_vit *vit, const float *images, int n, int h, int w,
                         const bool *masks, dl_vit_train_ws *ws, dl_vit_outputs *out, dl_err *err);

// The backward pass of the last dl_vit_forward_train on ws: d_cls [n, D],
// d_regs [n, R, D], d_patches [n, P, D] are the loss's gradients with respect
// to the outputs (each may be NULL: zero). Parameter gradients are ADDED to
// grads (vit->layout.total floats, same layout as vit->params); d_images
// [n, 3, h, w] is written when not NULL.
void dl_vit_backward(const dl_vit *vit, dl_vit_train_ws *ws, const float *d_cls, const float *d_regs,
                     const float *d_patches, float *grads, float *d_images);

#endif
