#include "data/augment.h"

#include <stdlib.h>

#include "data/augment_ops.h"
#include "data/resample.h"
#include "data/rng.h"

dl_crop_spec dl_crop_spec_dinov2(void) {
  return (dl_crop_spec){2, 224, 0.32, 1.0, 8, 98, 0.05, 0.32};
}

dl_crop_kind dl_crop_kind_of(const dl_crop_spec *spec, int crop_index) {
  if (crop_index >= spec->global_count) return DL_CROP_LOCAL;
  return crop_index == 0 ? DL_CROP_GLOBAL_FIRST : DL_CROP_GLOBAL_SECOND;
}

static double rng_uniform_cb(void *ctx, double lo, double hi) { return dl_rng_uniform(ctx, lo, hi); }
static int64_t rng_randint_cb(void *ctx, int64_t lo, int64_t hi) { return lo + dl_rng_below(ctx, hi - lo); }

// The released code wraps blur in RandomApply with p = 1 - (its argument),
// so these are the probabilities that actually ran.
static double blur_probability(dl_crop_kind kind) {
  return kind == DL_CROP_GLOBAL_FIRST ? 0.0 : kind == DL_CROP_GLOBAL_SECOND ? 0.9 : 0.5;
}

void dl_crop_draw_params(const dl_crop_spec *spec, uint64_t aug_seed, int crop_index, int width,
                         int height, dl_crop_draw *d) {
  dl_rng geo = dl_rng_make(dl_key_derive(aug_seed, 2 * (uint64_t)crop_index));
  // Photometric draws use a second stream, so their values do not depend on
  // how many tries the crop box needed.
  dl_rng photo = dl_rng_make(dl_key_derive(aug_seed, 2 * (uint64_t)crop_index + 1));
  d->kind = dl_crop_kind_of(spec, crop_index);
  int local = d->kind == DL_CROP_LOCAL;
  dl_draw_source src = {rng_uniform_cb, rng_randint_cb, &geo};
  d->box = dl_rrc_params(width, height, local ? spec->local_scale_lo : spec->global_scale_lo,
                         local ? spec->local_scale_hi : spec->global_scale_hi, 3.0 / 4.0, 4.0 / 3.0, &src);
  d->flip = dl_rng_unit(&photo) < 0.5;
  d->jitter = dl_rng_unit(&photo) < 0.8;
  for (int i = 0; i < 4; i++) d->jitter_order[i] = i;
  for (int i = 3; i > 0; i--) {   // Fisher-Yates, like torch.randperm(4)'s role
    int j = (int)dl_rng_below(&photo, i + 1);
    int t = d->jitter_order[i];
    d->jitter_order[i] = d->jitter_order[j];
    d->jitter_order[j] = t;
  }
  d->brightness = (float)dl_rng_uniform(&photo, 0.6, 1.4);
  d->contrast = (float)dl_rng_uniform(&photo, 0.6, 1.4);
  d->saturation = (float)dl_rng_uniform(&photo, 0.8, 1.2);
  d->hue = (float)dl_rng_uniform(&photo, -0.1, 0.1);
  d->grayscale = dl_rng_unit(&photo) < 0.2;
  d->blur = dl_rng_unit(&photo) < blur_probability(d->kind);
  d->blur_sigma = (float)dl_rng_uniform(&photo, 0.1, 2.0);
  d->solarize = dl_rng_unit(&photo) < (d->kind == DL_CROP_GLOBAL_SECOND ? 0.2 : 0.0);
}

void dl_crop_apply(const dl_image *img, const dl_crop_draw *d, int size, uint8_t *out) {
  dl_resample_bicubic(img->rgb, img->width * 3, d->box.left, d->box.top, d->box.width, d->box.height,
                      out, size, size);
  if (d->flip) dl_hflip_rgb8(out, size, size);
  if (d->jitter)
    for (int i = 0; i < 4; i++) {
      switch (d->jitter_order[i]) {
        case 0: dl_adjust_brightness(out, size, size, d->brightness); break;
        case 1: dl_adjust_contrast(out, size, size, d->contrast); break;
        case 2: dl_adjust_saturation(out, size, size, d->saturation); break;
        default: dl_adjust_hue(out, size, size, d->hue); break;
      }
    }
  if (d->grayscale) dl_grayscale_rgb8(out, size, size);
  if (d->blur) dl_gaussian_blur_rgb8(out, size, size, 9, d->blur_sigma);
  if (d->solarize) dl_solarize_rgb8(out, size, size, 128);
}

void dl_augment_crop(const dl_image *img, const dl_crop_spec *spec, uint64_t aug_seed, int crop_index,
                     int size, float *out_chw, dl_crop_draw *draw_out) {
  dl_crop_draw d;
  dl_crop_draw_params(spec, aug_seed, crop_index, img->width, img->height, &d);
  uint8_t *rgb = dl_malloc((size_t)size * size * 3);
  dl_crop_apply(img, &d, size, rgb);
  dl_normalize_imagenet(rgb, size, size, out_chw);
  free(rgb);
  if (draw_out) *draw_out = d;
}
