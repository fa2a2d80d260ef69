// The pixel operations of the DINOv2 augmentations, on 8-bit RGB images in
// place. Each follows the arithmetic of the path DINOv2's released code takes
// (torchvision 0.14 on PIL images: PIL's ImageEnhance for the colour factors,
// PIL's HSV conversion for hue, torchvision's tensor kernel for blur), so the
// results stay within a level of that reference; tests/ref/data holds it.
#ifndef DISTILL_DATA_AUGMENT_OPS_H
#define DISTILL_DATA_AUGMENT_OPS_H

#include <stdint.h>

void dl_hflip_rgb8(uint8_t *rgb, int width, int height);

// PIL's RGB -> L: (19595 R + 38470 G + 7471 B + 2^15) >> 16.
static inline uint8_t dl_luma_u8(const uint8_t *p) {
  return (uint8_t)((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
}

// ColorJitter's four factors (ImageEnhance: blend with a degenerate image).
void dl_adjust_brightness(uint8_t *rgb, int width, int height, float factor);
void dl_adjust_contrast(uint8_t *rgb, int width, int height, float factor);
void dl_adjust_saturation(uint8_t *rgb, int width, int height, float factor);
// Hue shift in [-0.5, 0.5] turns, through PIL's 8-bit HSV.
void dl_adjust_hue(uint8_t *rgb, int width, int height, float hue_factor);

void dl_grayscale_rgb8(uint8_t *rgb, int width, int height);
void dl_solarize_rgb8(uint8_t *rgb, int width, int height, int threshold);

// Gaussian blur with a kernel_size x kernel_size kernel (odd), reflect
// padding, rounding half to even as torchvision's tensor path does.
void dl_gaussian_blur_rgb8(uint8_t *rgb, int width, int height, int kernel_size, float sigma);

#endif
