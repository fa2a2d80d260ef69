#include "data/crop_params.h"

#include <math.h>

dl_box dl_rrc_params(int width, int height, double scale_lo, double scale_hi, double ratio_lo,
                     double ratio_hi, const dl_draw_source *draws) {
  double area = (double)width * height;
  // torchvision keeps log(ratio) and exp() of the draw in float32.
  float log_lo = logf((float)ratio_lo), log_hi = logf((float)ratio_hi);
  for (int attempt = 0; attempt < 10; attempt++) {
    double target_area = area * draws->uniform(draws->ctx, scale_lo, scale_hi);
    float log_ratio = (float)draws->uniform(draws->ctx, log_lo, log_hi);
    double aspect = (double)expf(log_ratio);
    // Python's round() rounds halves to even, as rint does by default.
    int w = (int)rint(sqrt(target_area * aspect));
    int h = (int)rint(sqrt(target_area / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      int top = (int)draws->randint(draws->ctx, 0, height - h + 1);
      int left = (int)draws->randint(draws->ctx, 0, width - w + 1);
      return (dl_box){top, left, h, w};
    }
  }
  double in_ratio = (double)width / height;
  int w, h;
  if (in_ratio < ratio_lo) {
    w = width;
    h = (int)rint(w / ratio_lo);
  } else if (in_ratio > ratio_hi) {
    h = height;
    w = (int)rint(h * ratio_hi);
  } else {
    w = width;
    h = height;
  }
  return (dl_box){(height - h) / 2, (width - w) / 2, h, w};
}
