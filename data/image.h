// Decoded images (8-bit interleaved RGB) and the DINOv2 evaluation transform.
// Every decoder bounds what it accepts (encoded size, pixel count), so a
// hostile or corrupt file costs an error message, never a crash or a huge
// allocation.
#ifndef DISTILL_DATA_IMAGE_H
#define DISTILL_DATA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

// Limits against decompression bombs: a file larger than this is refused
// before decoding, and so is a header that declares more pixels.
#define DL_IMAGE_MAX_ENCODED_BYTES ((size_t)64 << 20)
#define DL_IMAGE_MAX_PIXELS ((size_t)64 << 20)   // 64 Mpx, e.g. 8192 x 8192

typedef struct dl_image {
  int width, height;
  uint8_t *rgb;   // width*height*3 bytes, interleaved RGB8, row-major
} dl_image;

// Allocates an uninitialised width x height image (dies on out-of-memory).
void dl_image_alloc(dl_image *img, int width, int height);

// JPEG (libjpeg-turbo) or PNG (libpng: gray, gray+alpha, palette, 16-bit,
// RGBA; alpha is dropped as PIL's convert("RGB") does). Returns 0, or -1 with
// err set and *out left empty.
int dl_image_decode(const uint8_t *bytes, size_t n, dl_image *out, dl_err *err);
int dl_image_read_file(const char *path, dl_image *out, dl_err *err);
void dl_image_free(dl_image *img);

// DINOv2 evaluation transform: shorter side to `resize_short` (PIL bicubic
// with antialias, as torchvision's Resize on a PIL image), center crop
// `crop` x `crop` (torchvision's rounding), ToTensor and ImageNet
// normalization. out_chw holds 3*crop*crop floats, channel-major.
int dl_eval_transform(const dl_image *img, int resize_short, int crop, float *out_chw, dl_err *err);

// The same up to the crop, as 8-bit RGB (crop*crop*3 bytes): for previews
// and for tests that compare pixels before normalization.
int dl_eval_crop_rgb8(const dl_image *img, int resize_short, int crop, uint8_t *out_rgb, dl_err *err);

// ImageNet normalization of an RGB8 crop into channel-major floats.
void dl_normalize_imagenet(const uint8_t *rgb, int width, int height, float *out_chw);

#endif
