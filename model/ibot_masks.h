// Which patches of the global crops the iBOT loss scores.
//
// Distillation (DINOv3 dinov3/data/collate.py collate_data_and_cast with
// dinov3/data/masking.py MaskingGenerator, as dinov3/train/train.py builds
// them): of a rank's G * B global crops, int(G * B * probability) get a mask;
// the i-th of those (i = 0..n-1) covers exactly int(P * r_{i+1}) patches,
// r = linspace(ratio_lo, ratio_hi, n + 1) in float32, placed as blocks (at
// least 4 patches, aspect 0.3 to 3.3, none larger than the official
// max_num_patches) and completed with random patches; which crop gets which
// stratum is a random permutation (the collate's shuffle). The student is
// not masked: the selection only says which rows the iBOT head, the
// teacher's last layer, Sinkhorn-Knopp and the loss see.
//
// Self-distillation pretraining (teacher/pretrain.c) draws with the same
// crop shuffle and strata, DINOv2's ratio law (uniform within the stratum)
// and random patches instead of blocks.
//
// Every draw comes from a dl_rng stream (data/rng.h), so a selection is a
// pure function of its key.
#ifndef DISTILL_MODEL_IBOT_MASKS_H
#define DISTILL_MODEL_IBOT_MASKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/rng.h"

// How one batch's crops are masked.
typedef enum dl_mask_shape {
  DL_MASK_BLOCKS,          // DINOv3: exactly int(P * stratum top) patches, block-wise then completed
  DL_MASK_RANDOM_PATCHES,  // pretraining: int(P * U(stratum)) (at least 1) patches anywhere
} dl_mask_shape;

typedef struct dl_mask_draw {
  dl_mask_shape shape;
  float probability;        // share of the crops with a mask: int(crops * probability) of them
  float ratio_lo, ratio_hi; // the masked crops' ratios are stratified over [lo, hi]
  int max_block;            // DL_MASK_BLOCKS: the largest block (dl_mask_max_block)
} dl_mask_draw;

// Masks [crops, grid_h * grid_w] (row-major patches) for one batch; returns
// the number of masked patches.
int dl_draw_crop_masks(bool *masks, int crops, int grid_h, int grid_w, const dl_mask_draw *d, dl_rng *r);

// MaskingGenerator(input_size, max_num_patches)(count) on one crop's grid:
// blocks until `count` patches are masked or no block fits, then random
// patches up to exactly `count` (count <= h * w). mask is cleared first.
void dl_block_mask(bool *mask, int h, int w, int count, int max_block, dl_rng *r);

// The official max_num_patches (dinov3/train/train.py), `0.5 * img_size //
// patch_size * img_size // patch_size` evaluated left to right as Python
// does: (grid // 2) * grid for an image of grid x grid patches, 98 at 224/16,
// 128 at 224/14, 666 at 518/14 (not half of 37 * 37).
int dl_mask_max_block(int grid);

// DL_MASK_BLOCKS: how many patches each masked crop gets, in stratum order
// (counts: at least int(crops * probability) ints, may be NULL); returns the
// number of masked crops.
int dl_mask_counts(int crops, int patches, float probability, float ratio_lo, float ratio_hi, int *counts);

// The number of patches a DL_MASK_BLOCKS draw selects: the collate's
// `upperbound`, which the draw always reaches exactly. What a rank's iBOT
// buffers hold per step: crops = global crops * images per rank.
int dl_ibot_selected_upper_bound(int crops, int patches, float probability, float ratio_lo, float ratio_hi);

// The indices of the true entries of masks[0..n), in order; returns how many.
int dl_mask_rows(const bool *masks, size_t n, int *rows);

// dst[i] = src[rows[i]] for i < m (rows of d floats), and its adjoint:
// dst[rows[i]] = src[i] (rows not listed are left as they are).
void dl_gather_rows(float *dst, const float *src, const int *rows, int m, int d);
void dl_scatter_rows(float *dst, const float *src, const int *rows, int m, int d);

// The distillation step's iBOT selection (a zeroed one: every patch).
typedef struct dl_ibot_select {
  bool selected;              // true: DINOv3's selection; false: every patch of the global crops
  float probability;          // 0.5
  float ratio_lo, ratio_hi;   // 0.1, 0.5
  uint64_t seed;              // the recipe's data.seed
  int rank;                   // the data-parallel rank: each rank draws for its own crops
} dl_ibot_select;

// One step's selection: masks [crops, grid * grid], rows (the selected rows
// of the crop-major patch rows, in order) and weights (1 / selected patches
// of the row's crop, DINOv3's masks_weight); returns the number selected,
// always dl_ibot_selected_upper_bound(crops, grid * grid, ...). A function
// of (seed, step, rank) alone.
int dl_ibot_select_step(const dl_ibot_select *s, long step, int crops, int grid, bool *masks, int *rows,
                        float *weights);

#endif
