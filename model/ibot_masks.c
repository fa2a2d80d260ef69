#include "model/ibot_masks.h"

#include <math.h>
#include <string.h>

#include "common/err.h"
#include "model/losses.h"

// Element idx of torch.linspace(lo, hi, steps) in float32, as ATen computes
// it: from the start for the first half, from the end for the second. The
// volatile product keeps the compiler from fusing it into the sum (torch
// rounds the product first).
static float linspace_f32(float lo, float hi, int steps, int idx) {
  const float step = (hi - lo) / (float)(steps - 1);
  volatile float prod;
  if (idx < steps / 2) {
    prod = step * (float)idx;
    return lo + prod;
  }
  prod = step * (float)(steps - idx - 1);
  return hi - prod;
}

// int(N * prob_max) with N a Python int and prob_max a float32 tensor: a
// float32 product, truncated.
static int patches_at(int patches, float ratio) {
  volatile float x = (float)patches * ratio;
  return (int)x;
}

int dl_mask_counts(int crops, int patches, float probability, float ratio_lo, float ratio_hi, int *counts) {
  const int n = (int)(crops * probability);
  for (int i = 0; i < n && counts; i++) counts[i] = patches_at(patches, linspace_f32(ratio_lo, ratio_hi, n + 1, i + 1));
  return n > 0 ? n : 0;
}

int dl_ibot_selected_upper_bound(int crops, int patches, float probability, float ratio_lo, float ratio_hi) {
  const int n = (int)(crops * probability);
  int total = 0;
  for (int i = 0; i < n; i++) total += patches_at(patches, linspace_f32(ratio_lo, ratio_hi, n + 1, i + 1));
  return total;
}

int dl_mask_max_block(int grid) { return grid / 2 * grid; }

// One attempt series of MaskingGenerator._mask: up to 10 blocks drawn (area
// uniform in [4, max_patches], log-aspect uniform in [log 0.3, log 1/0.3],
// sides rounded half to even as Python's round), the first that adds between
// 1 and max_patches new patches is set. Returns the patches added.
static int add_block(bool *mask, int h, int w, int max_patches, dl_rng *r) {
  const double log_lo = log(0.3), log_hi = log(1.0 / 0.3);
  for (int attempt = 0; attempt < 10; attempt++) {
    const double area = dl_rng_uniform(r, 4.0, (double)max_patches);
    const double aspect = exp(dl_rng_uniform(r, log_lo, log_hi));
    const int bh = (int)nearbyint(sqrt(area * aspect)), bw = (int)nearbyint(sqrt(area / aspect));
    if (bw >= w || bh >= h) continue;
    const int top = (int)dl_rng_below(r, h - bh + 1), left = (int)dl_rng_below(r, w - bw + 1);
    int already = 0;
    for (int i = top; i < top + bh; i++)
      for (int j = left; j < left + bw; j++) already += mask[i * w + j];
    const int fresh = bh * bw - already;
    if (fresh <= 0 || fresh > max_patches) continue;
    for (int i = top; i < top + bh; i++)
      for (int j = left; j < left + bw; j++) mask[i * w + j] = true;
    return fresh;
  }
  return 0;
}

void dl_block_mask(bool *mask, int h, int w, int count, int max_block, dl_rng *r) {
  const int n = h * w;
  DL_ASSERT(count >= 0 && count <= n);
  memset(mask, 0, (size_t)n * sizeof(bool));
  int have = 0;
  while (have < count) {
    const int room = count - have < max_block ? count - have : max_block;
    const int added = add_block(mask, h, w, room, r);
    if (added == 0) break;
    have += added;
  }
  // complete_mask_randomly: the rest uniformly among the free patches (a
  // partial Fisher-Yates over their indices).
  int free_idx[n > 0 ? n : 1], nfree = 0;
  for (int i = 0; i < n; i++)
    if (!mask[i]) free_idx[nfree++] = i;
  for (int i = 0; i < count - have; i++) {
    const int j = i + (int)dl_rng_below(r, nfree - i), tmp = free_idx[i];
    free_idx[i] = free_idx[j], free_idx[j] = tmp;
    mask[free_idx[i]] = true;
  }
}

// `count` distinct random patches of one crop (a partial Fisher-Yates).
static void random_patches(bool *row, int patches, int count, dl_rng *r) {
  int perm[patches];
  for (int i = 0; i < patches; i++) perm[i] = i;
  for (int i = 0; i < count; i++) {
    const int j = i + (int)dl_rng_below(r, patches - i), tmp = perm[i];
    perm[i] = perm[j], perm[j] = tmp;
    row[perm[i]] = true;
  }
}

int dl_draw_crop_masks(bool *masks, int crops, int grid_h, int grid_w, const dl_mask_draw *d, dl_rng *r) {
  const int P = grid_h * grid_w;
  memset(masks, 0, (size_t)crops * P * sizeof(bool));
  const int nmasked = (int)(crops * d->probability);
  // Which crop takes which stratum: the collate's shuffle of its mask list.
  int order[crops > 0 ? crops : 1];
  for (int i = 0; i < crops; i++) order[i] = i;
  for (int i = crops - 1; i > 0; i--) {
    const int j = (int)dl_rng_below(r, i + 1), tmp = order[i];
    order[i] = order[j], order[j] = tmp;
  }
  const double stratum = (d->ratio_hi - d->ratio_lo) / (nmasked > 0 ? nmasked : 1);
  int total = 0;
  for (int m = 0; m < nmasked; m++) {
    bool *row = masks + (size_t)order[m] * P;
    int count;
    if (d->shape == DL_MASK_BLOCKS) {
      count = patches_at(P, linspace_f32(d->ratio_lo, d->ratio_hi, nmasked + 1, m + 1));
      dl_block_mask(row, grid_h, grid_w, count, d->max_block, r);
    } else {
      const double ratio = dl_rng_uniform(r, d->ratio_lo + m * stratum, d->ratio_lo + (m + 1) * stratum);
      count = (int)(P * ratio);
      if (count < 1) count = 1;
      random_patches(row, P, count, r);
    }
    total += count;
  }
  return total;
}

int dl_mask_rows(const bool *masks, size_t n, int *rows) {
  int m = 0;
  for (size_t i = 0; i < n; i++)
    if (masks[i]) rows[m++] = (int)i;
  return m;
}

void dl_gather_rows(float *dst, const float *src, const int *rows, int m, int d) {
  for (int i = 0; i < m; i++) memcpy(dst + (size_t)i * d, src + (size_t)rows[i] * d, (size_t)d * sizeof(float));
}

void dl_scatter_rows(float *dst, const float *src, const int *rows, int m, int d) {
  for (int i = 0; i < m; i++) memcpy(dst + (size_t)rows[i] * d, src + (size_t)i * d, (size_t)d * sizeof(float));
}

int dl_ibot_select_step(const dl_ibot_select *s, long step, int crops, int grid, bool *masks, int *rows,
                        float *weights) {
  const uint64_t key = dl_key_derive(dl_key_derive(dl_mix64(s->seed + 0x69626f74ull), (uint64_t)step),
                                     (uint64_t)s->rank);
  dl_rng r = dl_rng_make(key);
  const dl_mask_draw d = {DL_MASK_BLOCKS, s->probability, s->ratio_lo, s->ratio_hi, dl_mask_max_block(grid)};
  dl_draw_crop_masks(masks, crops, grid, grid, &d, &r);
  const int P = grid * grid, m = dl_mask_rows(masks, (size_t)crops * P, rows);
  dl_ibot_weights(weights, masks, crops, P);  // 1 / (selected patches of the row's crop), in row order
  return m;
}
