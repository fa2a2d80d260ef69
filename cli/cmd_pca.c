// `distill pca`: the first three principal components of a backbone's patch
// features as RGB, background removed by a threshold on the first component
// and a second PCA on the foreground, as the DINOv2 paper describes for its
// figure 1. One PNG: per image, the crop the backbone saw beside its PCA map.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/model_flags.h"
#include "data/image.h"
#include "data/png_write.h"
#include "eval/pca.h"
#include "model/embed.h"

enum { kGap = 4, kMaxImages = 256 };

// Each file through the evaluation transform with resize == crop (shorter
// side to `size`, centre square): the 8-bit crop for the picture and the
// normalized tensor for the backbone, so the two match pixel for pixel.
static void load_images(char **files, int n, int size, uint8_t *crops, float *chw) {
  for (int i = 0; i < n; i++) {
    dl_image img;
    dl_err err;
    if (dl_image_read_file(files[i], &img, &err) != 0) dl_die_input("pca: %s", err.msg);
    uint8_t *crop = crops + (size_t)i * size * size * 3;
    int rc = dl_eval_crop_rgb8(&img, size, size, crop, &err);
    dl_image_free(&img);
    if (rc != 0) dl_die_input("pca: %s: %s", files[i], err.msg);
    dl_normalize_imagenet(crop, size, size, chw + (size_t)i * 3 * size * size);
  }
}

// Row i of the picture: the crop, then the map with each patch's colour
// filling its patch x patch pixels (nearest upscaling).
static void draw_row(dl_image *out, int i, int size, int patch, const uint8_t *crop, const uint8_t *colours) {
  const int y0 = kGap + i * (size + kGap), grid = size / patch;
  for (int y = 0; y < size; y++) {
    uint8_t *row = out->rgb + ((size_t)(y0 + y) * out->width) * 3;
    memcpy(row + (size_t)kGap * 3, crop + (size_t)y * size * 3, (size_t)size * 3);
    for (int x = 0; x < size; x++)
      memcpy(row + (size_t)(2 * kGap + size + x) * 3, colours + ((size_t)(y / patch) * grid + x / patch) * 3, 3);
  }
}

int cmd_pca(int argc, char **argv) {
  const char *weights = NULL, *out_path = NULL;
  bool images = false;
  int size = 224;
  double threshold = 0;
  dl_model_flags mf = DL_MODEL_FLAGS_INIT;
  const dl_flag flags[] = {
      {"weights", DL_FLAG_STRING, &weights, "FILE", "backbone weights (.safetensors: official, timm or HF names)"},
      {"images", DL_FLAG_BOOL, &images, NULL, "the JPEG/PNG files given as arguments"},
      {"size", DL_FLAG_INT, &size, "PX", "shorter side and centre-crop size, a multiple of the patch (default 224)"},
      {"threshold", DL_FLAG_DOUBLE, &threshold, "T",
       "foreground: first component above T standard deviations (default 0: positive, as the paper)"},
      {"out", DL_FLAG_STRING, &out_path, "FILE", "the PNG to write"},
      DL_MODEL_FLAG_ENTRIES(mf),
  };
  const dl_command_spec spec = {
      "pca", "--weights W --images FILE... --out pca.png [--size PX] [--threshold T]",
      "Fits PCA on the patch features (x_norm_patchtokens) of all the images together;\n"
      "as in the DINOv2 paper, patches whose first component is positive are the\n"
      "foreground (its sign is chosen so the grid's border sits low); a second PCA on\n"
      "the foreground gives the first three components, shown as RGB. Writes one PNG:\n"
      "per image, its crop and its map; background is black.",
      flags, sizeof flags / sizeof flags[0]};
  char *files[kMaxImages];
  int nfiles = 0;
  if (dl_parse_flags(&spec, argc, argv, files, kMaxImages, &nfiles)) return 0;
  dl_require_flag(&spec, "weights", weights);
  dl_require_flag(&spec, "out", out_path);
  if (!images) dl_die_input("pca: give the images as --images FILE... (see distill pca --help)");
  if (!nfiles) dl_die_input("pca: --images needs at least one file");
  if (size <= 0 || size > 4096) dl_die_input("pca: --size must be in [1, 4096], got %d", size);
  if (!(threshold >= -10 && threshold <= 10)) dl_die_input("pca: --threshold must be in [-10, 10], got %g", threshold);

  dl_vit vit;
  dl_err err;
  dl_vit_overrides ov;
  dl_model_flags_overrides(&mf, &ov);
  if (dl_vit_load(weights, &ov, &vit, NULL, &err)) dl_die_input("%s", err.msg);
  const int patch = vit.cfg.patch;
  if (size % patch) dl_die_input("pca: --size %d is not a multiple of the patch size %d", size, patch);
  uint8_t *crops = dl_malloc((size_t)nfiles * size * size * 3);
  float *chw = dl_malloc((size_t)nfiles * 3 * size * size * sizeof(float));
  load_images(files, nfiles, size, crops, chw);
  dl_embed_result res;
  if (dl_embed_array(&vit, chw, nfiles, size, size, 8, &res, &err)) dl_die_input("pca: %s", err.msg);
  free(chw);

  // First pass on every patch: the first component separates object and background.
  const int n = nfiles * res.patches, grid = size / patch;
  dl_pca all, fgpca;
  if (dl_pca_fit(res.patches_out, n, res.dim, NULL, 1, &all, &err)) dl_die_input("%s", err.msg);
  float *pc0 = dl_malloc((size_t)n * sizeof(float));
  dl_pca_project(&all, res.patches_out, n, pc0);
  uint8_t *fg = dl_malloc((size_t)n);
  int nfg = dl_pca_foreground(pc0, nfiles, grid, grid, threshold, fg);
  // Second pass on the foreground only, as the paper does, so the colours
  // spend their range on the object's parts, not on object against background.
  if (dl_pca_fit(res.patches_out, n, res.dim, fg, 3, &fgpca, &err))
    dl_die_input("%s at --threshold %g (%d foreground patches of %d): lower it", err.msg, threshold, nfg, n);
  float *proj = dl_malloc((size_t)n * 3 * sizeof(float));
  dl_pca_project(&fgpca, res.patches_out, n, proj);
  uint8_t *colours = dl_malloc((size_t)n * 3);
  dl_pca_colours(proj, n, fg, colours);

  dl_image pic;
  dl_image_alloc(&pic, 3 * kGap + 2 * size, kGap + nfiles * (size + kGap));
  memset(pic.rgb, 255, (size_t)pic.width * pic.height * 3);
  for (int i = 0; i < nfiles; i++)
    draw_row(&pic, i, size, patch, crops + (size_t)i * size * size * 3, colours + (size_t)i * res.patches * 3);
  int rc = dl_png_write(out_path, &pic, &err);
  printf("pca: %d images, %d patches of dim %d, %d foreground (threshold %g); variance of the first "
         "components %.4g %.4g %.4g -> %s\n",
         nfiles, n, res.dim, nfg, threshold, fgpca.variance[0], fgpca.variance[1], fgpca.variance[2], out_path);
  dl_image_free(&pic);
  free(colours);
  free(proj);
  free(fg);
  free(pc0);
  free(crops);
  dl_pca_free(&all);
  dl_pca_free(&fgpca);
  dl_embed_result_free(&res);
  dl_vit_free(&vit);
  if (rc) dl_die_input("%s", err.msg);
  return 0;
}
