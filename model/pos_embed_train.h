// Position-embedding resizing with precomputed axis weights, and its
// backward pass: dst = Wy src Wx^T per channel, so dsrc += Wy^T ddst Wx.
// No allocation: the caller passes the axis weights and a temporary.
#ifndef DISTILL_MODEL_POS_EMBED_TRAIN_H
#define DISTILL_MODEL_POS_EMBED_TRAIN_H

#include <stddef.h>

// wy [gh, grid], wx [gw, grid] from dl_pos_embed_axis_weights; src
// [grid*grid, d]; dst [gh*gw, d]; tmp: dl_pos_embed_tmp_floats floats.
void dl_pos_embed_apply(float *dst, const float *src, const float *wy, const float *wx, int grid,
                        int d, int gh, int gw, float *tmp);
// dsrc [grid*grid, d] += the transpose map applied to ddst [gh*gw, d].
void dl_pos_embed_apply_backward(float *dsrc, const float *ddst, const float *wy, const float *wx,
                                 int grid, int d, int gh, int gw, float *tmp);
size_t dl_pos_embed_tmp_floats(int grid, int d, int gh, int gw);

#endif
