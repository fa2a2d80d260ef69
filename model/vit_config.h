// The DINOv2 ViT architecture as numbers, and the layout of its parameters in
// one flat float buffer. Gradients, Adam moments and the EMA reuse the same
// layout, so everything that walks parameters is a loop over one range plus
// this names table.
#ifndef DISTILL_MODEL_VIT_CONFIG_H
#define DISTILL_MODEL_VIT_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef enum dl_ffn_kind { DL_FFN_MLP, DL_FFN_SWIGLU } dl_ffn_kind;

// How the position embeddings are resized to another patch grid; the
// official code has two modes and the released models differ in which they use.
typedef enum dl_interp_mode {
  DL_INTERP_LEGACY,     // scale_factor (g + 0.1) / M, bicubic a = -0.75, no antialias
  DL_INTERP_ANTIALIAS,  // size = g, antialiased bicubic a = -0.5 (register models)
} dl_interp_mode;

typedef struct dl_vit_config {
  int patch;       // patch size in pixels (14)
  int dim;         // embedding dimension
  int depth;       // number of blocks
  int heads;       // attention heads (dim / 64 for DINOv2)
  int ffn_hidden;  // MLP hidden width (SwiGLU: width of each half of w12)
  int registers;   // register tokens (0 or 4)
  int pos_grid;    // side of the stored position-embedding grid (M)
  dl_ffn_kind ffn;
  dl_interp_mode interp;
} dl_vit_config;

// Which parameters of a block, in flat-buffer order.
enum dl_block_param {
  DL_P_NORM1_W, DL_P_NORM1_B, DL_P_QKV_W, DL_P_QKV_B, DL_P_PROJ_W, DL_P_PROJ_B, DL_P_LS1,
  DL_P_NORM2_W, DL_P_NORM2_B, DL_P_FC1_W, DL_P_FC1_B, DL_P_FC2_W, DL_P_FC2_B, DL_P_LS2,
  DL_P_BLOCK_COUNT
};
// Parameters outside the blocks, in flat-buffer order.
enum dl_global_param {
  DL_P_CLS, DL_P_REG, DL_P_MASK, DL_P_POS, DL_P_PATCH_W, DL_P_PATCH_B,
  DL_P_GLOBAL_COUNT
};

#define DL_NAME_MAX 64

typedef struct dl_param_entry {
  char name[DL_NAME_MAX];  // official DINOv2 name, e.g. "blocks.3.attn.qkv.weight"
  int ndim;
  int64_t shape[4];
  size_t offset, numel;  // in floats, into the flat buffer
  int no_weight_decay;   // biases, norms and LayerScale (DINOv2's rule)
  int layer_id;          // 0 embeddings, i+1 for block i, depth+1 for the final norm
} dl_param_entry;

typedef struct dl_vit_layout {
  dl_param_entry *entries;
  int count;
  size_t total;  // floats in the flat buffer
} dl_vit_layout;

// Fills the layout for cfg (entries malloc'd; free with dl_vit_layout_free).
void dl_vit_layout_build(const dl_vit_config *cfg, dl_vit_layout *layout);
void dl_vit_layout_free(dl_vit_layout *layout);
const dl_param_entry *dl_vit_layout_find(const dl_vit_layout *layout, const char *name);
// Index of a global parameter / a parameter of block b in entries[].
int dl_vit_global_index(enum dl_global_param p);
int dl_vit_block_index(const dl_vit_config *cfg, int block, enum dl_block_param p);

#endif
