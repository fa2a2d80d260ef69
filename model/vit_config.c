#include "model/vit_config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

static const char *const kBlockNamesMlp[DL_P_BLOCK_COUNT] = {
    "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
    "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight",
    "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias", "ls2.gamma"};
static const char *const kBlockNamesSwiglu[DL_P_BLOCK_COUNT] = {
    "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
    "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.w12.weight",
    "mlp.w12.bias", "mlp.w3.weight", "mlp.w3.bias", "ls2.gamma"};

static void add(dl_vit_layout *l, int no_wd, int layer_id, int ndim, const int64_t *shape,
                const char *fmt, ...) {
  dl_param_entry *e = &l->entries[l->count++];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->name, sizeof e->name, fmt, ap);
  va_end(ap);
  e->ndim = ndim;
  e->numel = 1;
  for (int i = 0; i < ndim; i++) {
    e->shape[i] = shape[i];
    e->numel *= (size_t)shape[i];
  }
  // 16-float alignment keeps every tensor on a 64-byte boundary for SIMD.
  e->offset = l->total;
  l->total += (e->numel + 15) & ~(size_t)15;
  e->no_weight_decay = no_wd;
  e->layer_id = layer_id;
}

#define SHAPE(...) (int64_t[]){__VA_ARGS__}, sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)

static void add_s(dl_vit_layout *l, int no_wd, int layer_id, const int64_t *shape, size_t ndim,
                  const char *name) {
  add(l, no_wd, layer_id, (int)ndim, shape, "%s", name);
}

void dl_vit_layout_build(const dl_vit_config *c, dl_vit_layout *l) {
  const int64_t D = c->dim, F = c->ffn_hidden, R = c->registers, M = c->pos_grid, p = c->patch;
  l->entries = dl_calloc((size_t)(DL_P_GLOBAL_COUNT + c->depth * DL_P_BLOCK_COUNT + 2), sizeof *l->entries);
  l->count = 0;
  l->total = 0;
  // DINOv2 decays every tensor but biases, norms and LayerScale gammas:
  // the tokens and the position embeddings are decayed too.
  add_s(l, 0, 0, SHAPE(1, 1, D), "cls_token");
  add_s(l, 0, 0, SHAPE(1, R, D), "register_tokens");
  add_s(l, 0, 0, SHAPE(1, D), "mask_token");
  add_s(l, 0, 0, SHAPE(1, 1 + M * M, D), "pos_embed");
  add_s(l, 0, 0, SHAPE(D, 3, p, p), "patch_embed.proj.weight");
  add_s(l, 1, 0, SHAPE(D), "patch_embed.proj.bias");
  const char *const *names = c->ffn == DL_FFN_SWIGLU ? kBlockNamesSwiglu : kBlockNamesMlp;
  const int64_t fc1_out = c->ffn == DL_FFN_SWIGLU ? 2 * F : F;
  for (int b = 0; b < c->depth; b++) {
    const int64_t *shapes[DL_P_BLOCK_COUNT] = {
        (int64_t[]){D}, (int64_t[]){D}, (int64_t[]){3 * D, D}, (int64_t[]){3 * D},
        (int64_t[]){D, D}, (int64_t[]){D}, (int64_t[]){D}, (int64_t[]){D}, (int64_t[]){D},
        (int64_t[]){fc1_out, D}, (int64_t[]){fc1_out}, (int64_t[]){D, F}, (int64_t[]){D},
        (int64_t[]){D}};
    for (int k = 0; k < DL_P_BLOCK_COUNT; k++) {
      int is_matrix = k == DL_P_QKV_W || k == DL_P_PROJ_W || k == DL_P_FC1_W || k == DL_P_FC2_W;
      add(l, !is_matrix, b + 1, is_matrix ? 2 : 1, shapes[k], "blocks.%d.%s", b, names[k]);
    }
  }
  add_s(l, 1, c->depth + 1, SHAPE(D), "norm.weight");
  add_s(l, 1, c->depth + 1, SHAPE(D), "norm.bias");
}

void dl_vit_layout_free(dl_vit_layout *l) {
  free(l->entries);
  memset(l, 0, sizeof *l);
}

const dl_param_entry *dl_vit_layout_find(const dl_vit_layout *l, const char *name) {
  for (int i = 0; i < l->count; i++)
    if (strcmp(l->entries[i].name, name) == 0) return &l->entries[i];
  return NULL;
}

int dl_vit_global_index(enum dl_global_param p) { return (int)p; }

int dl_vit_block_index(const dl_vit_config *cfg, int block, enum dl_block_param p) {
  DL_ASSERT(block >= 0 && block < cfg->depth);
  return DL_P_GLOBAL_COUNT + block * DL_P_BLOCK_COUNT + (int)p;
}
