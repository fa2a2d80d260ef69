// The DINOv2 multi-crop augmentation (DataAugmentationDINO in the released
// code) as a pure function of (image, augmentation seed, crop index, crop
// spec): each crop draws from its own counter-based stream, so a crop can be
// rebuilt alone, in any order, on any thread or process.
//
// Per crop: RandomResizedCrop (bicubic, antialias) + horizontal flip p 0.5;
// ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8 in a random order; grayscale p 0.2;
// Gaussian blur (kernel 9, sigma in [0.1, 2]) with p 0 on global crop 1, 0.9
// on global crop 2, 0.5 on local crops; solarize(128) p 0.2 on global crop 2.
#ifndef DISTILL_DATA_AUGMENT_H
#define DISTILL_DATA_AUGMENT_H

#include <stdint.h>

#include "data/crop_params.h"
#include "data/image.h"

// Counts, sizes and area-scale ranges of the crops (recipe section `crops`).
typedef struct dl_crop_spec {
  int global_count, global_size;
  double global_scale_lo, global_scale_hi;
  int local_count, local_size;
  double local_scale_lo, local_scale_hi;
} dl_crop_spec;

// DINOv2's numbers: 2 x 224 at 0.32-1.0, 8 x 98 at 0.05-0.32.
dl_crop_spec dl_crop_spec_dinov2(void);

// Which photometric recipe a crop follows.
typedef enum { DL_CROP_GLOBAL_FIRST, DL_CROP_GLOBAL_SECOND, DL_CROP_LOCAL } dl_crop_kind;

// Crops 0 .. global_count-1 are global (the first is GLOBAL_FIRST, the
// others GLOBAL_SECOND), then the local ones.
dl_crop_kind dl_crop_kind_of(const dl_crop_spec *spec, int crop_index);

// Every random choice made for one crop.
typedef struct dl_crop_draw {
  dl_crop_kind kind;
  dl_box box;
  int flip;
  int jitter;                // ColorJitter applied
  int jitter_order[4];       // 0 brightness, 1 contrast, 2 saturation, 3 hue
  float brightness, contrast, saturation, hue;
  int grayscale;
  int blur;
  float blur_sigma;
  int solarize;
} dl_crop_draw;

// Draws crop `crop_index`'s parameters for an image of width x height.
void dl_crop_draw_params(const dl_crop_spec *spec, uint64_t aug_seed, int crop_index, int width,
                         int height, dl_crop_draw *draw);

// Applies the draw: out_rgb gets size*size*3 bytes.
void dl_crop_apply(const dl_image *img, const dl_crop_draw *draw, int size, uint8_t *out_rgb);

// Both, then ImageNet normalization into out_chw (3*size*size floats).
// `size` is the output resolution (a global crop may be asked at 518 in the
// high-resolution phase: the box is the same, only the resampling differs).
void dl_augment_crop(const dl_image *img, const dl_crop_spec *spec, uint64_t aug_seed, int crop_index,
                     int size, float *out_chw, dl_crop_draw *draw_out);

#endif
