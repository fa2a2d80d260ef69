// Resizing the position-embedding grid to the patch grid of an input, exactly
// as the official DINOv2 code does with torch.nn.functional.interpolate in
// its two modes. Both are linear maps: dst = Wy * src * Wx^T per channel, so
// the same weight matrices serve the backward pass.
#ifndef DISTILL_MODEL_POS_EMBED_H
#define DISTILL_MODEL_POS_EMBED_H

#include <stdbool.h>

#include "model/vit_config.h"

// True when the official code would use the stored table as it is.
bool dl_pos_embed_is_identity(int grid, int gh, int gw);

// Fills w[out * in] (row-major) with the 1-D resampling weights from `in` to
// `out` positions for the given mode.
void dl_pos_embed_axis_weights(float *w, int in, int out, dl_interp_mode mode);

// src: [grid * grid, d] patch positions (no class position), row-major over
// the grid; dst: [gh * gw, d].
void dl_pos_embed_resize(float *dst, const float *src, int grid, int d, int gh, int gw, dl_interp_mode mode);

#endif
