// Gaussian blur as torchvision's GaussianBlur computes it on a PIL image:
// the image goes to a float tensor, a normalised float32 kernel sampled at
// integer offsets is applied with reflect padding, and the result is rounded
// half to even. The 2-D kernel is separable, so two 1-D passes give the same
// sums up to float rounding.
#include <math.h>
#include <stdlib.h>

#include "common/err.h"
#include "data/augment_ops.h"

// Reflect without repeating the edge pixel (torch's "reflect" padding).
static inline int reflect_index(int i, int n) {
  if (n == 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
  return i;
}

void dl_gaussian_blur_rgb8(uint8_t *rgb, int width, int height, int kernel_size, float sigma) {
  DL_ASSERT(kernel_size % 2 == 1 && kernel_size <= 63);
  int half = kernel_size / 2;
  float kernel[63];
  float sum = 0;
  for (int k = 0; k < kernel_size; k++) {
    float x = (float)(k - half) / sigma;
    kernel[k] = expf(-0.5f * x * x);
    sum += kernel[k];
  }
  for (int k = 0; k < kernel_size; k++) kernel[k] /= sum;

  size_t n = (size_t)width * height * 3;
  float *tmp = dl_malloc(sizeof(float) * n);
  // Horizontal pass through a reflect-padded copy of each row, so the inner
  // loop has no index arithmetic and vectorizes across pixels and channels.
  float *padded = dl_malloc(sizeof(float) * (size_t)(width + 2 * half) * 3);
  for (int y = 0; y < height; y++) {
    const uint8_t *row = rgb + (size_t)y * width * 3;
    for (int x = -half; x < width + half; x++) {
      const uint8_t *p = row + 3 * reflect_index(x, width);
      float *q = padded + 3 * (x + half);
      q[0] = p[0], q[1] = p[1], q[2] = p[2];
    }
    float *out = tmp + (size_t)y * width * 3;
    for (int i = 0; i < width * 3; i++) out[i] = 0;
    for (int k = 0; k < kernel_size; k++) {
      const float *src = padded + 3 * k;
      float kk = kernel[k];
      for (int i = 0; i < width * 3; i++) out[i] += kk * src[i];
    }
  }
  free(padded);
  float *acc = dl_malloc(sizeof(float) * (size_t)width * 3);
  for (int y = 0; y < height; y++) {   // vertical pass, rounded to 8 bits
    for (int i = 0; i < width * 3; i++) acc[i] = 0;
    for (int k = 0; k < kernel_size; k++) {
      const float *src = tmp + (size_t)reflect_index(y + k - half, height) * width * 3;
      for (int i = 0; i < width * 3; i++) acc[i] += kernel[k] * src[i];
    }
    uint8_t *out = rgb + (size_t)y * width * 3;
    for (int i = 0; i < width * 3; i++) {
      float v = rintf(acc[i]);
      out[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
  }
  free(acc);
  free(tmp);
}
