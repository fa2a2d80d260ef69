// A DINOv2 Vision Transformer backbone: configuration, the flat parameter
// buffer, and the forward pass on the CPU (float32).
#ifndef DISTILL_MODEL_VIT_H
#define DISTILL_MODEL_VIT_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "model/vit_config.h"

typedef struct dl_vit {
  dl_vit_config cfg;
  dl_vit_layout layout;
  float *params;  // layout.total floats, 64-byte aligned
} dl_vit;

// Flags that override what the loader infers from the weights.
typedef struct dl_vit_overrides {
  int heads;   // 0: dim / 64
  int interp;  // -1: by the released models' rule (registers: antialias)
} dl_vit_overrides;

// Which name layout a weights file uses.
typedef enum dl_weights_layout { DL_LAYOUT_OFFICIAL, DL_LAYOUT_TIMM, DL_LAYOUT_HF } dl_weights_layout;
const char *dl_weights_layout_name(dl_weights_layout l);

// Loads a safetensors file in any accepted layout; on failure err names the
// file and the first problem (unknown tensor, missing tensor, bad shape).
int dl_vit_load(const char *path, const dl_vit_overrides *ov, dl_vit *vit,
                dl_weights_layout *layout_out, dl_err *err);
// An uninitialized model of the given shape (parameters zeroed).
void dl_vit_init_empty(dl_vit *vit, const dl_vit_config *cfg);
void dl_vit_free(dl_vit *vit);
float *dl_vit_param(const dl_vit *vit, int index);
size_t dl_vit_param_count(const dl_vit *vit);  // real parameters, no padding

// Tokens per image for an input of h x w pixels.
int dl_vit_num_patches(const dl_vit_config *cfg, int h, int w);

// The forward pass's outputs for a batch of n images (row-major, float32).
typedef struct dl_vit_outputs {
  float *cls;       // [n, D]
  float *regs;      // [n, R, D]        (may be NULL when R == 0)
  float *patches;   // [n, P, D]
  float *prenorm;   // [n, 1 + R + P, D] (may be NULL if not wanted)
} dl_vit_outputs;

// Scratch memory for a forward pass, reused across calls of the same or a
// smaller shape so that no pass allocates.
typedef struct dl_vit_workspace {
  float *buf;
  size_t cap;  // floats
} dl_vit_workspace;
void dl_vit_workspace_free(dl_vit_workspace *ws);

// images: [n, 3, h, w], already normalized; h and w multiples of the patch
// size. masks: NULL or [n, P] booleans (masked patches take mask_token).
int dl_vit_forward(const dl_vit *vit, const float *images, int n, int h, int w,
                   const bool *masks, dl_vit_workspace *ws, dl_vit_outputs *out, dl_err *err);

#endif
