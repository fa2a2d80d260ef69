// The DINOv2 evaluation transform (Resize(256) + CenterCrop(224) + ToTensor +
// Normalize on a PIL image), as used for k-NN and linear evaluation.
#include <math.h>
#include <stdlib.h>

#include "data/image.h"
#include "data/resample.h"

static const float kMean[3] = {0.485f, 0.456f, 0.406f};
static const float kStd[3] = {0.229f, 0.224f, 0.225f};

void dl_normalize_imagenet(const uint8_t *rgb, int width, int height, float *out_chw) {
  size_t n = (size_t)width * height;
  for (int c = 0; c < 3; c++) {
    float *plane = out_chw + c * n;
    // ToTensor divides by 255 first, then Normalize subtracts and divides.
    for (size_t i = 0; i < n; i++) plane[i] = ((float)rgb[3 * i + c] / 255.0f - kMean[c]) / kStd[c];
  }
}

int dl_eval_crop_rgb8(const dl_image *img, int resize_short, int crop, uint8_t *out_rgb, dl_err *err) {
  if (resize_short <= 0 || crop <= 0 || crop > resize_short)
    return dl_fail(err, "eval transform: need 0 < crop (%d) <= resize (%d)", crop, resize_short);
  int w = img->width, h = img->height;
  // torchvision: the shorter side becomes resize_short, the longer one
  // int(resize_short * long / short), truncated.
  int rw, rh;
  if (w <= h) {
    rw = resize_short;
    rh = (int)((double)resize_short * h / w);
  } else {
    rh = resize_short;
    rw = (int)((double)resize_short * w / h);
  }
  uint8_t *resized = dl_malloc((size_t)rw * rh * 3);
  dl_resample_bicubic(img->rgb, w * 3, 0, 0, w, h, resized, rw, rh);
  // CenterCrop uses Python's round(), which rounds halves to even, as rint does.
  int top = (int)rint((rh - crop) / 2.0), left = (int)rint((rw - crop) / 2.0);
  for (int y = 0; y < crop; y++)
    for (int x = 0; x < crop * 3; x++)
      out_rgb[(size_t)y * crop * 3 + x] = resized[((size_t)(top + y) * rw + left) * 3 + x];
  free(resized);
  return 0;
}

int dl_eval_transform(const dl_image *img, int resize_short, int crop, float *out_chw, dl_err *err) {
  if (crop <= 0 || crop > resize_short)
    return dl_eval_crop_rgb8(img, resize_short, crop, NULL, err);   // reports the bad sizes
  uint8_t *cropped = dl_malloc((size_t)crop * crop * 3);
  int rc = dl_eval_crop_rgb8(img, resize_short, crop, cropped, err);
  if (rc == 0) dl_normalize_imagenet(cropped, crop, crop, out_chw);
  free(cropped);
  return rc;
}
