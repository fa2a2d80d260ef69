// Buckets of the backbone's flat gradient buffer for data parallel: each
// bucket's all-reduce starts as soon as the backward pass has finished its
// last parameter, so the reductions overlap the rest of the backward pass
// (as DDP's gradient buckets). Plain C, so the plan is tested on machines
// without a GPU (tests/gpu/test_cuda_host.c).
//
// The backward pass finishes the parameters layer by layer in the reverse of
// the flat layout's order (model/vit_config.h): the final norm (layer_id
// depth + 1, the buffer's end), the blocks from the last to the first, the
// embedding and tokens (layer_id 0, the buffer's start). Stage s of the
// backward pass is layer depth + 1 - s: stage 0 the final norm, stage
// depth - b block b, stage depth + 1 the embedding. So a run of consecutive
// stages is one contiguous range of the buffer, and the buckets, taken in
// the order they become final, walk the buffer from its end to its start.
#ifndef DISTILL_MODEL_CUDA_GRAD_BUCKETS_H
#define DISTILL_MODEL_CUDA_GRAD_BUCKETS_H

#include <stddef.h>

#include "common/err.h"
#include "model/vit_config.h"

// DDP's default bucket size (bucket_cap_mb = 25).
#define DL_GRAD_BUCKET_DEFAULT_MB 25
// Above this a "bucket" is the whole buffer anyway; a larger value is a typo.
#define DL_GRAD_BUCKET_MAX_MB 65536

typedef struct dl_grad_bucket {
  size_t offset, count;  // floats of the flat gradient buffer
  int stage;             // the backward stage after which every gradient in it is final
} dl_grad_bucket;

// The backward stage that finishes block b of a depth-block ViT.
static inline int dl_grad_stage_of_block(int depth, int b) { return depth - b; }
// Stages of one backward pass (final norm, depth blocks, embedding): also
// the most buckets a plan has.
static inline int dl_grad_stage_count(int depth) { return depth + 2; }

// DISTILL_NCCL_BUCKET_MB's value `text` (whole MiB in [0, DL_GRAD_BUCKET_MAX_MB])
// as bytes; NULL or empty: DL_GRAD_BUCKET_DEFAULT_MB. 0 turns the buckets
// off: one all-reduce after the backward pass (for debugging). -1 with one
// line when text is not such a number.
int dl_grad_bucket_bytes_parse(const char *text, size_t *bytes, dl_err *err);

// Splits the buffer of layout l (a ViT's: layer_id 0 .. depth + 1, offsets
// growing with layer_id) into buckets of whole stages, in the order they
// become final: a bucket closes once it holds at least target_bytes, so every
// bucket but the last is at least target_bytes and less than target_bytes
// plus one stage. Together they cover [0, l->total) exactly once. out holds
// dl_grad_stage_count(depth) buckets; returns how many were made.
int dl_grad_buckets_plan(const dl_vit_layout *l, size_t target_bytes, dl_grad_bucket *out);

#endif
