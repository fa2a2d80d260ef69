// The one entry per direction that the teacher (vit_cuda.c) and the
// training step (vit_cuda_train.c) call for attention: cuDNN's fused SDPA
// where its support check passes for the shape, the own kernels
// (attention.cu) otherwise, said once per shape on stderr.
// DISTILL_ATTENTION=own|cudnn|auto (default auto) forces a path; with cudnn a
// shape cuDNN cannot run is an error, not a fallback.
#ifndef DISTILL_MODEL_CUDA_ATTENTION_DISPATCH_H
#define DISTILL_MODEL_CUDA_ATTENTION_DISPATCH_H

#include "model/cuda/attention_plan.h"
#include "model/cuda/cuda_ops.h"

// Arguments and layouts as dl_cuda_attention / dl_cuda_attention_backward
// (cuda_ops.h); scratch is used by the own backward only. lse non-NULL marks
// a training forward: then cuDNN runs only when it can also run the backward
// of the shape, so a step's forward and backward take the same path.
int dl_cuda_attn_forward(dl_dtype dt, void *out, float *lse, const void *qkv, int batch, int t, int heads, int hd,
                         cudaStream_t s);
int dl_cuda_attn_backward(dl_dtype dt, void *dqkv, const void *dout, const void *qkv, const void *out,
                          const float *lse, int batch, int t, int heads, int hd, float *scratch, cudaStream_t s);

// Overrides DISTILL_ATTENTION from here on (tests, benchmarks).
void dl_cuda_attn_set_path(dl_attn_path path);
// DL_ATTN_OWN or DL_ATTN_CUDNN: what the last call ran (tests).
dl_attn_path dl_cuda_attn_last_path(void);

#endif
