// Colour operations with PIL's 8-bit arithmetic (see augment_ops.h).
#include <math.h>
#include <stddef.h>

#include "data/augment_ops.h"

// PIL's Image.blend(a, b, alpha): a + alpha * (b - a) in float, truncated
// toward zero, clamped only when alpha is outside [0, 1].
static inline uint8_t pil_blend(int degenerate, int pixel, float alpha) {
  float v = (float)degenerate + alpha * (float)(pixel - degenerate);
  if (alpha >= 0.0f && alpha <= 1.0f) return (uint8_t)(int)v;
  if (v <= 0.0f) return 0;
  if (v >= 255.0f) return 255;
  return (uint8_t)(int)v;
}

void dl_hflip_rgb8(uint8_t *rgb, int width, int height) {
  for (int y = 0; y < height; y++) {
    uint8_t *row = rgb + (size_t)y * width * 3;
    for (int a = 0, b = width - 1; a < b; a++, b--)
      for (int c = 0; c < 3; c++) {
        uint8_t t = row[3 * a + c];
        row[3 * a + c] = row[3 * b + c];
        row[3 * b + c] = t;
      }
  }
}

void dl_adjust_brightness(uint8_t *rgb, int width, int height, float factor) {
  size_t n = (size_t)width * height * 3;
  for (size_t i = 0; i < n; i++) rgb[i] = pil_blend(0, rgb[i], factor);
}

void dl_adjust_contrast(uint8_t *rgb, int width, int height, float factor) {
  size_t n = (size_t)width * height;
  // The degenerate image is flat gray at the mean luma, rounded to an integer.
  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += dl_luma_u8(rgb + 3 * i);
  int mean = (int)(sum / (double)n + 0.5);
  for (size_t i = 0; i < 3 * n; i++) rgb[i] = pil_blend(mean, rgb[i], factor);
}

void dl_adjust_saturation(uint8_t *rgb, int width, int height, float factor) {
  size_t n = (size_t)width * height;
  for (size_t i = 0; i < n; i++) {
    uint8_t *p = rgb + 3 * i;
    int l = dl_luma_u8(p);
    for (int c = 0; c < 3; c++) p[c] = pil_blend(l, p[c], factor);
  }
}

static inline uint8_t clip_u8(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

// PIL's RGB -> HSV, each channel quantised to 8 bits.
static void rgb_to_hsv_u8(const uint8_t *p, uint8_t *hsv) {
  int r = p[0], g = p[1], b = p[2];
  int maxc = r > g ? (r > b ? r : b) : (g > b ? g : b);
  int minc = r < g ? (r < b ? r : b) : (g < b ? g : b);
  hsv[2] = (uint8_t)maxc;
  if (maxc == minc) {
    hsv[0] = hsv[1] = 0;
    return;
  }
  float cr = (float)(maxc - minc);
  float s = cr / (float)maxc;
  float rc = (float)(maxc - r) / cr, gc = (float)(maxc - g) / cr, bc = (float)(maxc - b) / cr;
  float h;
  if (r == maxc) h = bc - gc;
  else if (g == maxc) h = 2.0f + rc - bc;
  else h = 4.0f + gc - rc;
  // fmod(h / 6 + 1, 1) without the call: the argument lies in [0, 2).
  double wrapped = h / 6.0 + 1.0;
  h = (float)(wrapped >= 1.0 ? wrapped - 1.0 : wrapped);
  hsv[0] = clip_u8((int)(h * 255.0));
  hsv[1] = clip_u8((int)(s * 255.0));
}

// PIL's HSV -> RGB.
static void hsv_to_rgb_u8(const uint8_t *hsv, uint8_t *p) {
  int h = hsv[0], s = hsv[1], v = hsv[2];
  if (s == 0) {
    p[0] = p[1] = p[2] = (uint8_t)v;
    return;
  }
  int i = (int)floor((float)h * 6.0 / 255.0);
  float f = (float)((float)h * 6.0 / 255.0 - (float)i);
  float fs = (float)((float)s / 255.0);
  uint8_t up = clip_u8((int)round((float)v * (1.0 - fs)));
  uint8_t uq = clip_u8((int)round((float)v * (1.0 - fs * f)));
  uint8_t ut = clip_u8((int)round((float)v * (1.0 - fs * (1.0 - f))));
  uint8_t uv = (uint8_t)v;
  switch (i % 6) {
    case 0: p[0] = uv, p[1] = ut, p[2] = up; break;
    case 1: p[0] = uq, p[1] = uv, p[2] = up; break;
    case 2: p[0] = up, p[1] = uv, p[2] = ut; break;
    case 3: p[0] = up, p[1] = uq, p[2] = uv; break;
    case 4: p[0] = ut, p[1] = up, p[2] = uv; break;
    default: p[0] = uv, p[1] = up, p[2] = uq; break;
  }
}

void dl_adjust_hue(uint8_t *rgb, int width, int height, float hue_factor) {
  // torchvision adds np.uint8(hue_factor * 255) to the 8-bit hue with wrap
  // around; the cast truncates toward zero and wraps negatives modulo 256.
  uint8_t shift = (uint8_t)(int)(hue_factor * 255.0f);
  size_t n = (size_t)width * height;
  for (size_t i = 0; i < n; i++) {
    uint8_t hsv[3];
    rgb_to_hsv_u8(rgb + 3 * i, hsv);
    hsv[0] = (uint8_t)(hsv[0] + shift);
    hsv_to_rgb_u8(hsv, rgb + 3 * i);
  }
}

void dl_grayscale_rgb8(uint8_t *rgb, int width, int height) {
  size_t n = (size_t)width * height;
  for (size_t i = 0; i < n; i++) {
    uint8_t *p = rgb + 3 * i;
    p[0] = p[1] = p[2] = dl_luma_u8(p);
  }
}

void dl_solarize_rgb8(uint8_t *rgb, int width, int height, int threshold) {
  size_t n = (size_t)width * height * 3;
  for (size_t i = 0; i < n; i++)
    if (rgb[i] >= threshold) rgb[i] = (uint8_t)(255 - rgb[i]);
}
