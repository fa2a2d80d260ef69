// cuDNN's fused scaled-dot-product attention through the backend (graph) C
// API: the graphs of attention_cudnn_graph.h, tensors given with the strides
// of attention_plan.h so nothing is copied. Internal to the dispatch
// (attention_dispatch.c), which owns the cache and the fallback rule.
#ifndef DISTILL_MODEL_CUDA_ATTENTION_CUDNN_H
#define DISTILL_MODEL_CUDA_ATTENTION_CUDNN_H

#include <stddef.h>

#include <cuda_runtime.h>

#include "model/cuda/attention_plan.h"

typedef struct dl_attn_cudnn_plan dl_attn_cudnn_plan;

// Builds the graph for key and its execution plan, and allocates the plan's
// workspace once. NULL when cuDNN cannot do it, with the reason in why.
dl_attn_cudnn_plan *dl_attn_cudnn_build(const dl_attn_key *key, char *why, size_t why_size);
void dl_attn_cudnn_free(dl_attn_cudnn_plan *p);

// Forward: out, and lse when the plan was built for DL_ATTN_FWD_TRAIN.
// 0, or -1 with the cuDNN status printed.
int dl_attn_cudnn_forward(dl_attn_cudnn_plan *p, void *out, float *lse, const void *qkv, cudaStream_t s);
// Backward: dqkv (all of it written) from dout, qkv, the forward's out and lse.
int dl_attn_cudnn_backward(dl_attn_cudnn_plan *p, void *dqkv, const void *dout, const void *qkv, const void *out,
                           const float *lse, cudaStream_t s);

#endif
