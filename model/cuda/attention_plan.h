// Host logic of the attention dispatch that needs no CUDA (built into
// distill_core, so the CPU tests check it): which path the environment asks
// for, the strides through which cuDNN reads the packed qkv and writes the
// output and statistics in place, and the plan cache keyed by shape.
#ifndef DISTILL_MODEL_CUDA_ATTENTION_PLAN_H
#define DISTILL_MODEL_CUDA_ATTENTION_PLAN_H

#include <stddef.h>
#include <stdint.h>

typedef enum dl_attn_path {
  DL_ATTN_AUTO,   // cuDNN where its support check passes, the own kernels otherwise
  DL_ATTN_OWN,    // the own kernels (attention.cu) always
  DL_ATTN_CUDNN,  // cuDNN or an error: never a silent fallback while benchmarking
} dl_attn_path;

// DISTILL_ATTENTION's value (NULL or "" = auto): 0, or -1 for anything else.
int dl_attn_path_parse(const char *value, dl_attn_path *path);
const char *dl_attn_path_name(dl_attn_path path);

typedef enum dl_attn_dir {
  DL_ATTN_FWD_INFER,  // forward without statistics (teacher)
  DL_ATTN_FWD_TRAIN,  // forward saving the log-sum-exp for the backward
  DL_ATTN_BWD,
} dl_attn_dir;

// dtype: a dl_dtype value (cuda_ops.h), kept as int so this header needs no CUDA.
typedef struct dl_attn_key {
  int device, n, t, heads, head_dim, dtype;
  dl_attn_dir dir;
} dl_attn_key;

int dl_attn_key_equal(const dl_attn_key *a, const dl_attn_key *b);

// A cuDNN tensor in its [batch, heads, seq, dim] order: dims and strides in
// elements, and the element offset of its first entry from the buffer.
typedef struct dl_attn_tensor {
  int64_t dims[4], strides[4];
  int64_t offset;
} dl_attn_tensor;

// The project's layout: qkv [n, t, 3, heads, hd] (q, k, v of one token side
// by side), out [n, t, heads, hd], lse float [n, heads, t]. q, k and v are
// views of qkv (offset 0, D, 2D with D = heads * hd), as are dq, dk, dv of dqkv.
typedef struct dl_attn_layout {
  dl_attn_tensor q, k, v, o, stats;
} dl_attn_layout;

void dl_attn_layout_make(dl_attn_layout *l, int n, int t, int heads, int head_dim);
// x with its last two dimensions swapped (K^T as a view of K): same memory.
dl_attn_tensor dl_attn_transposed(const dl_attn_tensor *x);
// A packed [d0, d1, d2, d3] tensor (the backward's own buffers, the graph's
// internal tensors).
dl_attn_tensor dl_attn_packed(int64_t d0, int64_t d1, int64_t d2, int64_t d3);

// The cheap part of the support check, before cuDNN is asked: bf16 only
// (cuDNN's fused attention takes no fp32) and a head dimension of a multiple
// of 8 (16-byte rows). 0, or -1 with the reason in why.
int dl_attn_cudnn_precheck(const dl_attn_key *key, int dtype_bf16, const char **why);

// Fixed-size cache: a process meets a handful of shapes (global and local
// crops, teacher and student), so a linear scan is enough.
#define DL_ATTN_CACHE_SLOTS 64
typedef struct dl_attn_cache_entry {
  dl_attn_key key;
  int supported;  // 1: plan holds a cuDNN plan; 0: the own kernels run this shape
  void *plan;
} dl_attn_cache_entry;

typedef struct dl_attn_cache {
  dl_attn_cache_entry entries[DL_ATTN_CACHE_SLOTS];
  int count;
} dl_attn_cache;

dl_attn_cache_entry *dl_attn_cache_find(dl_attn_cache *c, const dl_attn_key *key);
// NULL when full (the caller then runs the own kernels without caching).
dl_attn_cache_entry *dl_attn_cache_insert(dl_attn_cache *c, const dl_attn_key *key, int supported, void *plan);

// "t=257 n=2 heads=6 hd=64 bf16 forward(train)" for the one-line log.
void dl_attn_key_describe(const dl_attn_key *key, const char *dtype_name, char *buf, size_t size);

#endif
