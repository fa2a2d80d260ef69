// Projection heads trained with the student.
// - The DINO head (DINOv2 layers/dino_head.py): an MLP Linear-GELU-...-Linear
//   to a bottleneck, L2 normalization (eps 1e-12), and a weight-normed last
//   layer without bias: row i of its weight is g_i * v_i / ||v_i||.
// - Feature-mode adaptors: a plain MLP (Linear-GELU-Linear) from the
//   student's width to the teacher's, one for CLS and one for patch tokens.
// Both are one module, dl_head; prototypes == 0 makes it a plain MLP.
// Parameter names follow the official code: mlp.{0,2,4}.{weight,bias},
// last_layer.weight_g [K, 1], last_layer.weight_v [K, bottleneck].
#ifndef DISTILL_MODEL_HEADS_H
#define DISTILL_MODEL_HEADS_H

#include "model/vit_config.h"

#define DL_HEAD_MAX_LAYERS 8

typedef struct dl_head_config {
  int in_dim, hidden_dim;
  int out_dim;     // the MLP's output: the bottleneck (DINO head) or the teacher's width (adaptor)
  int nlayers;     // linear layers in the MLP (DINOv2: 3; adaptor: 2)
  int prototypes;  // K of the weight-normed last layer; 0: no normalization, no last layer
} dl_head_config;

typedef struct dl_head {
  dl_head_config cfg;
  dl_vit_layout layout;  // names table (layer_id DL_LAYER_ID_HEAD)
  float *params;
  int last_g, last_v;    // entry indices of the last layer (-1 without)
} dl_head;

// Which part of the head a call runs.
typedef enum dl_head_mode {
  DL_HEAD_FULL,        // input -> logits (or, without prototypes, the MLP output)
  DL_HEAD_BOTTLENECK,  // input -> L2-normalized bottleneck (what a teacher sends)
  DL_HEAD_LAST_LAYER,  // normalized bottleneck -> logits (the teacher's frozen last layer)
} dl_head_mode;

// Activations of the last forward pass, reused across calls (grows only).
typedef struct dl_head_ws {
  float *buf;
  size_t cap;
  int m;
  dl_head_mode mode;
  const float *x;  // the caller's input, which must outlive the backward pass
  float *pre[DL_HEAD_MAX_LAYERS], *act[DL_HEAD_MAX_LAYERS];
  float *z, *zn, *znorm, *w_eff, *vnorm, *dw, *dz, *dact, *dpre, *ones;
} dl_head_ws;

void dl_head_init(dl_head *h, const dl_head_config *cfg);  // parameters zeroed
// DINOv2's initialization: trunc_normal_(std=0.02) with the absolute bounds
// +-2 (in effect a normal, as the official code) for MLP weights, zero
// biases, weight_g = 1, weight_v like a Linear layer's default.
void dl_head_init_random(dl_head *h, unsigned long long seed);
void dl_head_free(dl_head *h);
void dl_head_ws_free(dl_head_ws *ws);
float *dl_head_param(const dl_head *h, int index);
// Width of the output of a mode.
int dl_head_out_dim(const dl_head *h, dl_head_mode mode);

// x [m, in] (or [m, bottleneck] for LAST_LAYER) -> out [m, dl_head_out_dim].
void dl_head_forward(const dl_head *h, dl_head_mode mode, const float *x, int m, float *out, dl_head_ws *ws);
// Backward of the last forward on ws: dout [m, out]. Parameter gradients are
// ADDED to grads (h->layout.total floats); dx [m, in] written when not NULL.
void dl_head_backward(const dl_head *h, dl_head_ws *ws, const float *dout, float *grads, float *dx);

#endif
