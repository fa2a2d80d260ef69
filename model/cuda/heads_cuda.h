// The projection heads on the GPU: the structure of model/heads.c (the DINO
// head's MLP, L2 normalization and weight-normed last layer; the feature
// adaptors' plain MLP) with cuBLASLt GEMMs and the row-normalization
// kernels. Activations in the model's dtype; parameter gradients and the
// weight norm's g and v in float32 (the master copy), as the official code.
#ifndef DISTILL_MODEL_CUDA_HEADS_CUDA_H
#define DISTILL_MODEL_CUDA_HEADS_CUDA_H

#include "model/cuda/matmul.h"
#include "model/heads.h"

typedef struct dl_cuda_head {
  dl_head_config cfg;
  const dl_vit_layout *layout;  // the host head's (not owned)
  int last_g, last_v;
  dl_dtype dtype;
  void *params;    // device, layout.total elements of dtype: what the GEMMs read
  float *master;   // device float32 parameters; == params in float32 mode
  dl_cuda_blas *blas;  // borrowed: the model's handle and stream
  cudaStream_t stream;
} dl_cuda_head;

// Activations of the last forward pass (one device allocation, grows only).
typedef struct dl_cuda_head_ws {
  void *mem;
  size_t bytes;
  int m;
  dl_head_mode mode;
  const void *x;   // the caller's input (dtype), which must outlive the backward pass
  const void *zn;  // the last layer's input: ws's own zn, or x in LAST_LAYER mode
  void *pre[DL_HEAD_MAX_LAYERS], *act[DL_HEAD_MAX_LAYERS];
  void *zn_own, *w_eff, *dz, *dzn, *dact, *dpre;  // dtype
  float *znorm, *vnorm, *dw;
} dl_cuda_head_ws;

// Copies the host head's parameters to the device (dtype, and float32).
void dl_cuda_head_init(dl_cuda_head *h, const dl_head *host, dl_dtype dtype, dl_cuda_blas *blas, cudaStream_t s);
void dl_cuda_head_free(dl_cuda_head *h);
void dl_cuda_head_ws_free(dl_cuda_head_ws *ws);

// As dl_head_forward: x [m, in] (dtype; [m, bottleneck] for LAST_LAYER) ->
// out [m, dl_head_out_dim] (dtype). The weight norm reads h->master.
void dl_cuda_head_forward(dl_cuda_head *h, dl_head_mode mode, const void *x, int m, void *out, dl_cuda_head_ws *ws);
// As dl_head_backward: dout [m, out] (dtype); parameter gradients ADDED to
// grads (device float32, layout.total); dx [m, in] (dtype) written when not NULL.
void dl_cuda_head_backward(dl_cuda_head *h, dl_cuda_head_ws *ws, const void *dout, float *grads, void *dx);

// The same in chunks of rows (model/cuda/train_step_cuda.c), so the
// [m, prototypes] logits never exist whole. forward_begin (FULL or
// LAST_LAYER) runs everything before the last layer's GEMM over all m rows
// (the MLP, the normalized bottleneck, the effective weight) and zeroes the
// weight gradient; last_rows writes the logits of rows [row0, row0 + n) into
// out [n, prototypes] (dtype). last_rows_backward takes their gradient dout
// [n, prototypes] (dtype): dW added up in the workspace, the bottleneck's
// gradient for those rows written into dzn (dtype, [m, out_dim]; NULL: the
// workspace's). backward_finish, after every chunk, runs the rest as
// dl_cuda_head_backward. dl_cuda_head_forward and _backward are one chunk.
void dl_cuda_head_forward_begin(dl_cuda_head *h, dl_head_mode mode, const void *x, int m, dl_cuda_head_ws *ws);
void dl_cuda_head_last_rows(dl_cuda_head *h, dl_cuda_head_ws *ws, int row0, int n, void *out);
void dl_cuda_head_last_rows_backward(dl_cuda_head *h, dl_cuda_head_ws *ws, int row0, int n, const void *dout,
                                     void *dzn);
void dl_cuda_head_backward_finish(dl_cuda_head *h, dl_cuda_head_ws *ws, float *grads, void *dx);

#endif
