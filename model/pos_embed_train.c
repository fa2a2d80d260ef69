#include "model/pos_embed_train.h"

#include <string.h>

size_t dl_pos_embed_tmp_floats(int grid, int d, int gh, int gw) {
  (void)gh;
  return (size_t)grid * gw * d;
}

void dl_pos_embed_apply(float *dst, const float *src, const float *wy, const float *wx, int grid,
                        int d, int gh, int gw, float *tmp) {
  // Columns first: tmp[a, j] = sum_b wx[j, b] src[a, b]; then rows:
  // dst[i, j] = sum_a wy[i, a] tmp[a, j]. Most weights are zero.
#pragma omp parallel for collapse(2) schedule(static)
  for (int a = 0; a < grid; a++)
    for (int j = 0; j < gw; j++) {
      float *t = tmp + ((size_t)a * gw + j) * d;
      memset(t, 0, (size_t)d * sizeof *t);
      for (int b = 0; b < grid; b++) {
        const float wt = wx[(size_t)j * grid + b];
        if (wt == 0.0f) continue;
        const float *s = src + ((size_t)a * grid + b) * d;
        for (int c = 0; c < d; c++) t[c] += wt * s[c];
      }
    }
#pragma omp parallel for collapse(2) schedule(static)
  for (int i = 0; i < gh; i++)
    for (int j = 0; j < gw; j++) {
      float *o = dst + ((size_t)i * gw + j) * d;
      memset(o, 0, (size_t)d * sizeof *o);
      for (int a = 0; a < grid; a++) {
        const float wt = wy[(size_t)i * grid + a];
        if (wt == 0.0f) continue;
        const float *t = tmp + ((size_t)a * gw + j) * d;
        for (int c = 0; c < d; c++) o[c] += wt * t[c];
      }
    }
}

void dl_pos_embed_apply_backward(float *dsrc, const float *ddst, const float *wy, const float *wx,
                                 int grid, int d, int gh, int gw, float *tmp) {
  // dtmp[a, j] = sum_i wy[i, a] ddst[i, j]; dsrc[a, b] += sum_j wx[j, b] dtmp[a, j].
#pragma omp parallel for collapse(2) schedule(static)
  for (int a = 0; a < grid; a++)
    for (int j = 0; j < gw; j++) {
      float *t = tmp + ((size_t)a * gw + j) * d;
      memset(t, 0, (size_t)d * sizeof *t);
      for (int i = 0; i < gh; i++) {
        const float wt = wy[(size_t)i * grid + a];
        if (wt == 0.0f) continue;
        const float *g = ddst + ((size_t)i * gw + j) * d;
        for (int c = 0; c < d; c++) t[c] += wt * g[c];
      }
    }
#pragma omp parallel for collapse(2) schedule(static)
  for (int a = 0; a < grid; a++)
    for (int b = 0; b < grid; b++) {
      float *o = dsrc + ((size_t)a * grid + b) * d;
      for (int j = 0; j < gw; j++) {
        const float wt = wx[(size_t)j * grid + b];
        if (wt == 0.0f) continue;
        const float *t = tmp + ((size_t)a * gw + j) * d;
        for (int c = 0; c < d; c++) o[c] += wt * t[c];
      }
    }
}
