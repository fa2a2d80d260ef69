// `distill preview`: one PNG showing, for each of a recipe's first samples,
// the original image and every crop the recipe makes of it, so a person can
// see what the augmentations do before training on them.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "data/augment.h"
#include "data/png_write.h"
#include "data/resample.h"
#include "data/sample_stream.h"
#include "recipe/recipe.h"

enum { kGap = 4 };

static void paste(dl_image *dst, const uint8_t *src, int w, int h, int x0, int y0) {
  for (int y = 0; y < h; y++) memcpy(dst->rgb + ((size_t)(y0 + y) * dst->width + x0) * 3, src + (size_t)y * w * 3, (size_t)w * 3);
}

// The original, scaled to `height` rows keeping its aspect ratio.
static uint8_t *thumbnail(const dl_image *img, int height, int *width) {
  *width = (int)((double)img->width * height / img->height + 0.5);
  if (*width < 1) *width = 1;
  if (*width > 2 * height) *width = 2 * height;   // very wide images are squeezed
  uint8_t *out = dl_malloc((size_t)*width * height * 3);
  dl_resample_bicubic(img->rgb, img->width * 3, 0, 0, img->width, img->height, out, *width, height);
  return out;
}

int cmd_preview(int argc, char **argv) {
  const char *recipe_path = NULL, *out_path = NULL;
  int samples = 4, first = 0;
  const dl_flag flags[] = {
      {"recipe", DL_FLAG_STRING, &recipe_path, "FILE", "the recipe (data and crops sections)"},
      {"samples", DL_FLAG_INT, &samples, "N", "how many samples, one row each (default 4)"},
      {"first", DL_FLAG_INT, &first, "S", "the first sample index (default 0)"},
      {"out", DL_FLAG_STRING, &out_path, "FILE", "the PNG to write"},
  };
  const dl_command_spec spec = {"preview", "--recipe R [--samples N] [--first S] --out grid.png",
                                "Writes one PNG: per sample, its original image, then its global and local crops.",
                                flags, sizeof flags / sizeof flags[0]};
  char *pos[1];
  int npos;
  if (dl_parse_flags(&spec, argc, argv, pos, 0, &npos)) return 0;
  dl_require_flag(&spec, "recipe", recipe_path);
  dl_require_flag(&spec, "out", out_path);
  if (samples < 1 || samples > 256) dl_die_input("preview: --samples must be in [1, 256], got %d", samples);
  if (first < 0) dl_die_input("preview: --first must be >= 0, got %d", first);
  dl_err err;
  dl_recipe r;
  if (dl_recipe_load(recipe_path, &r, &err) != 0) dl_die_input("%s", err.msg);
  dl_dataset *ds;
  if (dl_dataset_open(r.dataset, &ds, &err) != 0) dl_die_input("%s: %s", recipe_path, err.msg);
  dl_sample_stream st = {ds, r.seed, r.block_size, r.crops, 0};
  const dl_crop_spec *c = &r.crops;
  int g = c->global_size, l = c->local_size, row_h = g > l ? g : l;
  int ncrops = c->global_count + c->local_count;
  int width = kGap + 2 * row_h + kGap + c->global_count * (g + kGap) + c->local_count * (l + kGap);
  dl_image grid;
  dl_image_alloc(&grid, width, kGap + samples * (row_h + kGap));
  memset(grid.rgb, 255, (size_t)grid.width * grid.height * 3);
  int skipped = 0;
  for (int i = 0; i < samples; i++) {
    dl_sample_ref ref = dl_sample_stream_item(&st, (int64_t)first + i);
    dl_image img;
    dl_sample_stream_image(&st, ref.item, &img, &skipped);
    int y = kGap + i * (row_h + kGap), tw;
    uint8_t *thumb = thumbnail(&img, row_h, &tw);
    paste(&grid, thumb, tw, row_h, kGap, y);
    free(thumb);
    int x = kGap + 2 * row_h + kGap;
    for (int k = 0; k < ncrops; k++) {
      int size = k < c->global_count ? g : l;
      uint8_t *crop = dl_malloc((size_t)size * size * 3);
      dl_crop_draw d;
      dl_crop_draw_params(c, ref.aug_seed, k, img.width, img.height, &d);
      dl_crop_apply(&img, &d, size, crop);
      paste(&grid, crop, size, size, x, y);
      x += size + kGap;
      free(crop);
    }
    dl_image_free(&img);
  }
  int rc = dl_png_write(out_path, &grid, &err);
  dl_image_free(&grid);
  dl_dataset_close(ds);
  if (rc != 0) dl_die_input("%s", err.msg);
  printf("preview: wrote %s (%d samples, %d crops each, %d skipped items)\n", out_path, samples, ncrops, skipped);
  return 0;
}
