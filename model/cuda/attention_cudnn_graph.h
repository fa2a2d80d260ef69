// The operations of the cuDNN attention graphs (backend C API), shared by
// attention_cudnn.c only. Forward: cuDNN 9's single fused SDPA_FWD
// operation (what cudnn-frontend picks from cuDNN 9.13.1 on), or else the
// frontend's composite forward graph. Backward: the graph cudnn-frontend builds for sdpa_backward
// (matmuls, pointwise and one reduction), which cuDNN's fused attention
// engine recognises: cuDNN 9.19's single SDPA_BWD operation does not build
// (its graph finalize answers BAD_PARAM), checked on this machine.
#ifndef DISTILL_MODEL_CUDA_ATTENTION_CUDNN_GRAPH_H
#define DISTILL_MODEL_CUDA_ATTENTION_CUDNN_GRAPH_H

#include <stddef.h>

#include <cudnn_graph.h>

#include "model/cuda/attention_plan.h"

// Tensor ids of the variant pack. SOFTMAX_SUM (float [n, heads, t]) and
// DQ_ACCUM (float [n, heads, t, hd]) are the backward's buffers in device
// memory that cuDNN does not allocate itself.
enum {
  DL_ATTN_UID_Q = 1, DL_ATTN_UID_K, DL_ATTN_UID_V, DL_ATTN_UID_O, DL_ATTN_UID_STATS, DL_ATTN_UID_SCALE,
  DL_ATTN_UID_DO, DL_ATTN_UID_DQ, DL_ATTN_UID_DK, DL_ATTN_UID_DV, DL_ATTN_UID_ONE, DL_ATTN_UID_SOFTMAX_SUM,
  DL_ATTN_UID_DQ_ACCUM,
  DL_ATTN_UID_VIRTUAL = 100,  // the graph's internal tensors from here on
};

#define DL_ATTN_MAX_DESCS 96
#define DL_ATTN_MAX_OPS 24  // the backward has 18

// Every descriptor made for one graph, freed together.
typedef struct dl_attn_descs {
  cudnnBackendDescriptor_t all[DL_ATTN_MAX_DESCS];
  int count;
  int64_t next_uid;
  cudnnBackendDescriptor_t ops[DL_ATTN_MAX_OPS];
  int nops;
} dl_attn_descs;

// The graphs to try for key, in order: the forward has two (the fused
// operation, then the frontend's composite graph), the backward one.
int dl_attn_graph_variants(const dl_attn_key *key);
// The operations of key's graph `variant` into d->ops. CUDNN_STATUS_SUCCESS,
// or the failing status with the call in why.
cudnnStatus_t dl_attn_graph_ops(dl_attn_descs *d, const dl_attn_key *key, int variant, char *why, size_t why_size);
void dl_attn_descs_free(dl_attn_descs *d);

#endif
