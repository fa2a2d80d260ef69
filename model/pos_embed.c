#include "model/pos_embed.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

bool dl_pos_embed_is_identity(int grid, int gh, int gw) { return gh == grid && gw == grid; }

// Keys' cubic convolution kernel with parameter a, for |x| < 1 and 1 <= |x| < 2.
static float cubic_near(float x, float a) { return ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f; }
static float cubic_far(float x, float a) { return ((a * x - 5.0f * a) * x + 8.0f * a) * x - 4.0f * a; }

// The legacy mode: upsample_bicubic2d with a scale factor of (out + 0.1) / in,
// align_corners=False, a = -0.75, neighbours clamped at the border. PyTorch
// maps output i to source (i + 0.5) / factor - 0.5, in float.
static void legacy_weights(float *w, int in, int out) {
  const double factor = ((double)out + 0.1) / (double)in;
  const float scale = (float)(1.0 / factor);
  const float a = -0.75f;
  for (int i = 0; i < out; i++) {
    float src = scale * ((float)i + 0.5f) - 0.5f;
    float f = floorf(src), t = src - f;
    float k[4] = {cubic_far(t + 1.0f, a), cubic_near(t, a), cubic_near(1.0f - t, a), cubic_far(2.0f - t, a)};
    for (int j = 0; j < 4; j++) {
      int idx = (int)f - 1 + j;
      idx = idx < 0 ? 0 : idx >= in ? in - 1 : idx;
      w[(size_t)i * in + idx] += k[j];
    }
  }
}

static float aa_filter(float x) {
  const float a = -0.5f;
  x = fabsf(x);
  return x < 1.0f ? cubic_near(x, a) : x < 2.0f ? cubic_far(x, a) : 0.0f;
}

// The register models' mode: _upsample_bicubic2d_aa to size `out`. The filter
// support widens by the downscale factor, the window is cut at the border and
// the weights renormalized (PIL's scheme), computed in float as PyTorch does.
static void antialias_weights(float *w, int in, int out) {
  const float scale = (float)in / (float)out;
  const float support = scale >= 1.0f ? 2.0f * scale : 2.0f;
  const float invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
  for (int i = 0; i < out; i++) {
    float center = scale * ((float)i + 0.5f);
    int64_t xmin = (int64_t)(center - support + 0.5f);
    if (xmin < 0) xmin = 0;
    int64_t xmax = (int64_t)(center + support + 0.5f);
    if (xmax > in) xmax = in;
    float total = 0.0f;
    for (int64_t j = xmin; j < xmax; j++) total += aa_filter(((float)j - center + 0.5f) * invscale);
    for (int64_t j = xmin; j < xmax; j++) {
      float v = aa_filter(((float)j - center + 0.5f) * invscale);
      w[(size_t)i * in + j] = total != 0.0f ? v / total : v;
    }
  }
}

void dl_pos_embed_axis_weights(float *w, int in, int out, dl_interp_mode mode) {
  memset(w, 0, (size_t)in * out * sizeof *w);
  if (mode == DL_INTERP_LEGACY) legacy_weights(w, in, out);
  else antialias_weights(w, in, out);
}

void dl_pos_embed_resize(float *dst, const float *src, int grid, int d, int gh, int gw, dl_interp_mode mode) {
  float *wy = dl_malloc((size_t)gh * grid * sizeof *wy), *wx = dl_malloc((size_t)gw * grid * sizeof *wx);
  double *tmp = dl_calloc((size_t)grid * gw * d, sizeof *tmp);
  dl_pos_embed_axis_weights(wy, grid, gh, mode);
  dl_pos_embed_axis_weights(wx, grid, gw, mode);
  // Columns first: tmp[a, j] = sum_b wx[j, b] src[a, b].
  for (int a = 0; a < grid; a++)
    for (int j = 0; j < gw; j++)
      for (int b = 0; b < grid; b++) {
        float wt = wx[(size_t)j * grid + b];
        if (wt == 0.0f) continue;
        const float *s = src + ((size_t)a * grid + b) * d;
        double *t = tmp + ((size_t)a * gw + j) * d;
        for (int c = 0; c < d; c++) t[c] += (double)wt * s[c];
      }
  // Then rows: dst[i, j] = sum_a wy[i, a] tmp[a, j]. Only a few weights per
  // row are non-zero, so skipping zeros makes both passes cheap.
  double *acc = dl_malloc((size_t)gw * d * sizeof *acc);
  for (int i = 0; i < gh; i++) {
    memset(acc, 0, (size_t)gw * d * sizeof *acc);
    for (int a = 0; a < grid; a++) {
      float wt = wy[(size_t)i * grid + a];
      if (wt == 0.0f) continue;
      const double *t = tmp + (size_t)a * gw * d;
      for (size_t c = 0; c < (size_t)gw * d; c++) acc[c] += (double)wt * t[c];
    }
    for (size_t c = 0; c < (size_t)gw * d; c++) dst[(size_t)i * gw * d + c] = (float)acc[c];
  }
  free(acc);
  free(wy);
  free(wx);
  free(tmp);
}
