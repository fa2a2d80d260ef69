// Antialiased bicubic resampling of RGB8 images, following the algorithm of
// PIL's Image.resize(BICUBIC): separable, horizontal pass first into an 8-bit
// intermediate, cubic kernel a = -0.5 whose support widens by the downscale
// factor, weights normalised per output pixel and applied in 22-bit fixed
// point. Matching PIL's arithmetic keeps our crops within a level of the
// reference pipeline (torchvision on PIL images), which DINOv2 trained with.
#ifndef DISTILL_DATA_RESAMPLE_H
#define DISTILL_DATA_RESAMPLE_H

#include <stdint.h>

// Resamples the rectangle (x0, y0, w, h) of `src` (row stride src_stride
// bytes) to out_w x out_h into `dst` (tightly packed RGB8). Pixels outside
// the rectangle are never read, as when PIL crops before it resizes.
void dl_resample_bicubic(const uint8_t *src, int src_stride, int x0, int y0, int w, int h,
                         uint8_t *dst, int out_w, int out_h);

#endif
