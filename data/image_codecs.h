// Internal to data/: one decoder per format, called by dl_image_decode after
// the format is sniffed and the encoded size checked.
#ifndef DISTILL_DATA_IMAGE_CODECS_H
#define DISTILL_DATA_IMAGE_CODECS_H

#include "data/image.h"

int dl_decode_jpeg(const uint8_t *bytes, size_t n, dl_image *out, dl_err *err);
int dl_decode_png(const uint8_t *bytes, size_t n, dl_image *out, dl_err *err);

// 0 when width x height is positive and within DL_IMAGE_MAX_PIXELS.
int dl_image_check_dims(long width, long height, dl_err *err);

#endif
