// RandomResizedCrop's box choice, as torchvision's get_params: up to ten tries
// of (area fraction uniform in scale, aspect ratio log-uniform in ratio),
// accepting the first box that fits, else a center crop clamped to the ratio
// range. The draws come through callbacks so that the parity test can replay
// torchvision's own draws and land on the same boxes.
#ifndef DISTILL_DATA_CROP_PARAMS_H
#define DISTILL_DATA_CROP_PARAMS_H

#include <stdint.h>

typedef struct dl_box {
  int top, left, height, width;
} dl_box;

typedef struct dl_draw_source {
  double (*uniform)(void *ctx, double lo, double hi);       // [lo, hi)
  int64_t (*randint)(void *ctx, int64_t lo, int64_t hi);    // [lo, hi)
  void *ctx;
} dl_draw_source;

dl_box dl_rrc_params(int width, int height, double scale_lo, double scale_hi, double ratio_lo,
                     double ratio_hi, const dl_draw_source *draws);

#endif
