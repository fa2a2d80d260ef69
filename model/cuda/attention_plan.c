// See attention_plan.h.
#include "model/cuda/attention_plan.h"

#include <stdio.h>
#include <string.h>

int dl_attn_path_parse(const char *value, dl_attn_path *path) {
  if (!value || !*value || !strcmp(value, "auto")) {
    *path = DL_ATTN_AUTO;
  } else if (!strcmp(value, "own")) {
    *path = DL_ATTN_OWN;
  } else if (!strcmp(value, "cudnn")) {
    *path = DL_ATTN_CUDNN;
  } else {
    return -1;
  }
  return 0;
}

const char *dl_attn_path_name(dl_attn_path path) {
  switch (path) {
    case DL_ATTN_OWN: return "own";
    case DL_ATTN_CUDNN: return "cudnn";
    default: return "auto";
  }
}

int dl_attn_key_equal(const dl_attn_key *a, const dl_attn_key *b) {
  return a->device == b->device && a->n == b->n && a->t == b->t && a->heads == b->heads &&
         a->head_dim == b->head_dim && a->dtype == b->dtype && a->dir == b->dir;
}

static void tensor(dl_attn_tensor *x, int n, int heads, int t, int last, int64_t sb, int64_t sh, int64_t ss,
                   int64_t offset) {
  const int64_t dims[4] = {n, heads, t, last}, strides[4] = {sb, sh, ss, 1};
  memcpy(x->dims, dims, sizeof dims);
  memcpy(x->strides, strides, sizeof strides);
  x->offset = offset;
}

void dl_attn_layout_make(dl_attn_layout *l, int n, int t, int heads, int head_dim) {
  const int64_t D = (int64_t)heads * head_dim, row = 3 * D;
  // One token's q, k and v lie side by side: a head is head_dim further on,
  // the next token 3D further, the next image t rows further.
  tensor(&l->q, n, heads, t, head_dim, t * row, head_dim, row, 0);
  tensor(&l->k, n, heads, t, head_dim, t * row, head_dim, row, D);
  tensor(&l->v, n, heads, t, head_dim, t * row, head_dim, row, 2 * D);
  tensor(&l->o, n, heads, t, head_dim, t * D, head_dim, D, 0);
  tensor(&l->stats, n, heads, t, 1, (int64_t)heads * t, t, 1, 0);
}

dl_attn_tensor dl_attn_transposed(const dl_attn_tensor *x) {
  dl_attn_tensor y = *x;
  y.dims[2] = x->dims[3], y.dims[3] = x->dims[2];
  y.strides[2] = x->strides[3], y.strides[3] = x->strides[2];
  return y;
}

dl_attn_tensor dl_attn_packed(int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  const dl_attn_tensor x = {{d0, d1, d2, d3}, {d1 * d2 * d3, d2 * d3, d3, 1}, 0};
  return x;
}

int dl_attn_cudnn_precheck(const dl_attn_key *key, int dtype_bf16, const char **why) {
  if (key->dtype != dtype_bf16) {
    *why = "cuDNN's fused attention takes bf16, not fp32";
    return -1;
  }
  if (key->head_dim % 8 != 0) {
    *why = "cuDNN needs a head dimension that is a multiple of 8";
    return -1;
  }
  if (key->n <= 0 || key->t <= 0 || key->heads <= 0) {
    *why = "empty shape";
    return -1;
  }
  return 0;
}

dl_attn_cache_entry *dl_attn_cache_find(dl_attn_cache *c, const dl_attn_key *key) {
  for (int i = 0; i < c->count; i++)
    if (dl_attn_key_equal(&c->entries[i].key, key)) return &c->entries[i];
  return NULL;
}

dl_attn_cache_entry *dl_attn_cache_insert(dl_attn_cache *c, const dl_attn_key *key, int supported, void *plan) {
  if (c->count == DL_ATTN_CACHE_SLOTS) return NULL;
  dl_attn_cache_entry *e = &c->entries[c->count++];
  e->key = *key;
  e->supported = supported;
  e->plan = plan;
  return e;
}

void dl_attn_key_describe(const dl_attn_key *key, const char *dtype_name, char *buf, size_t size) {
  static const char *dirs[] = {"forward", "forward(train)", "backward"};
  snprintf(buf, size, "t=%d n=%d heads=%d hd=%d %s %s (gpu %d)", key->t, key->n, key->heads, key->head_dim,
           dtype_name, dirs[key->dir], key->device);
}
