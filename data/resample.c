#include "data/resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

enum { kPrecisionBits = 32 - 8 - 2 };

// One axis' filter taps: output i reads inputs first[i] .. first[i]+count[i]-1
// with weights coef[i*taps ..].
typedef struct axis_taps {
  int taps;
  int *first, *count;
  int32_t *coef;
} axis_taps;

static double cubic_kernel(double x) {
  const double a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

static void axis_taps_init(axis_taps *t, int in_size, int out_size) {
  double scale = (double)in_size / out_size;
  double filterscale = scale < 1 ? 1 : scale;   // widen only when shrinking: antialias
  double support = 2.0 * filterscale;
  t->taps = (int)ceil(support) * 2 + 1;
  t->first = dl_malloc(sizeof(int) * out_size);
  t->count = dl_malloc(sizeof(int) * out_size);
  t->coef = dl_calloc((size_t)out_size * t->taps, sizeof(int32_t));
  double *w = dl_malloc(sizeof(double) * t->taps);
  for (int i = 0; i < out_size; i++) {
    double center = (i + 0.5) * scale;
    int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
    if (lo < 0) lo = 0;
    if (hi > in_size) hi = in_size;
    int n = hi - lo;
    double sum = 0;
    for (int k = 0; k < n; k++) {
      w[k] = cubic_kernel((k + lo - center + 0.5) / filterscale);
      sum += w[k];
    }
    for (int k = 0; k < n; k++) {
      double v = (sum != 0 ? w[k] / sum : w[k]) * (1 << kPrecisionBits);
      t->coef[(size_t)i * t->taps + k] = (int32_t)(v < 0 ? v - 0.5 : v + 0.5);
    }
    t->first[i] = lo;
    t->count[i] = n;
  }
  free(w);
}

static void axis_taps_free(axis_taps *t) {
  free(t->first);
  free(t->count);
  free(t->coef);
}

static inline uint8_t fixed_to_u8(int32_t v) {
  if (v <= 0) return 0;
  if (v >= (255 << kPrecisionBits)) return 255;
  return (uint8_t)(v >> kPrecisionBits);
}

// Rows row_lo..row_hi-1 of the source rectangle, resampled horizontally.
static void pass_horizontal(const uint8_t *src, int src_stride, int x0, int y0, int row_lo,
                            int row_hi, const axis_taps *t, int out_w, uint8_t *dst) {
  for (int y = row_lo; y < row_hi; y++) {
    const uint8_t *in = src + (size_t)(y0 + y) * src_stride + (size_t)x0 * 3;
    uint8_t *out = dst + (size_t)(y - row_lo) * out_w * 3;
    for (int x = 0; x < out_w; x++) {
      const int32_t *k = t->coef + (size_t)x * t->taps;
      const uint8_t *p = in + (size_t)t->first[x] * 3;
      int32_t r = 1 << (kPrecisionBits - 1), g = r, b = r;
      for (int j = 0; j < t->count[x]; j++) {
        r += p[3 * j] * k[j];
        g += p[3 * j + 1] * k[j];
        b += p[3 * j + 2] * k[j];
      }
      out[3 * x] = fixed_to_u8(r);
      out[3 * x + 1] = fixed_to_u8(g);
      out[3 * x + 2] = fixed_to_u8(b);
    }
  }
}

// Every row of dst from rows of `src` (stride in bytes), vertically.
static void pass_vertical(const uint8_t *src, int src_stride, int row_offset, const axis_taps *t,
                          int out_w, int out_h, uint8_t *dst) {
  int32_t *acc = dl_malloc(sizeof(int32_t) * (size_t)out_w * 3);
  for (int y = 0; y < out_h; y++) {
    const int32_t *k = t->coef + (size_t)y * t->taps;
    for (int i = 0; i < out_w * 3; i++) acc[i] = 1 << (kPrecisionBits - 1);
    for (int j = 0; j < t->count[y]; j++) {
      const uint8_t *row = src + (size_t)(t->first[y] - row_offset + j) * src_stride;
      int32_t kj = k[j];
      for (int i = 0; i < out_w * 3; i++) acc[i] += row[i] * kj;
    }
    uint8_t *out = dst + (size_t)y * out_w * 3;
    for (int i = 0; i < out_w * 3; i++) out[i] = fixed_to_u8(acc[i]);
  }
  free(acc);
}

void dl_resample_bicubic(const uint8_t *src, int src_stride, int x0, int y0, int w, int h,
                         uint8_t *dst, int out_w, int out_h) {
  DL_ASSERT(w > 0 && h > 0 && out_w > 0 && out_h > 0);
  int need_h = out_w != w, need_v = out_h != h;
  if (!need_h && !need_v) {
    for (int y = 0; y < h; y++)
      memcpy(dst + (size_t)y * w * 3, src + (size_t)(y0 + y) * src_stride + (size_t)x0 * 3, (size_t)w * 3);
    return;
  }
  axis_taps tv = {0};
  if (need_v) axis_taps_init(&tv, h, out_h);
  if (!need_h) {
    pass_vertical(src + (size_t)y0 * src_stride + (size_t)x0 * 3, src_stride, 0, &tv, out_w, out_h, dst);
    axis_taps_free(&tv);
    return;
  }
  axis_taps th;
  axis_taps_init(&th, w, out_w);
  if (!need_v) {
    pass_horizontal(src, src_stride, x0, y0, 0, h, &th, out_w, dst);
    axis_taps_free(&th);
    return;
  }
  // Only the source rows the vertical pass reads go through the horizontal one.
  int row_lo = tv.first[0], row_hi = tv.first[out_h - 1] + tv.count[out_h - 1];
  uint8_t *mid = dl_malloc((size_t)(row_hi - row_lo) * out_w * 3);
  pass_horizontal(src, src_stride, x0, y0, row_lo, row_hi, &th, out_w, mid);
  pass_vertical(mid, out_w * 3, row_lo, &tv, out_w, out_h, dst);
  free(mid);
  axis_taps_free(&th);
  axis_taps_free(&tv);
}
