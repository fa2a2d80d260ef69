// distill embed: DINOv2 features of a tensor file or of image files.
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/model_flags.h"
#include "model/embed.h"
#include "model/safetensors.h"

int cmd_embed(int argc, char **argv) {
  const char *weights = NULL, *input = NULL, *tensor = NULL, *out = NULL;
  bool images = false;
  int size = 224, resize = 256, batch = 16;
  dl_model_flags mf = DL_MODEL_FLAGS_INIT;
  const dl_flag flags[] = {
      {"weights", DL_FLAG_STRING, &weights, "FILE", "backbone weights (.safetensors: official, timm or HF names)"},
      {"input", DL_FLAG_STRING, &input, "FILE", "a .safetensors file holding an [N,3,H,W] float32 tensor, already normalized"},
      {"tensor", DL_FLAG_STRING, &tensor, "NAME", "the tensor to read from --input (default: the only one)"},
      {"images", DL_FLAG_BOOL, &images, NULL, "embed the JPEG/PNG files given as arguments (evaluation transform)"},
      {"size", DL_FLAG_INT, &size, "PX", "center-crop size for --images (default 224)"},
      {"resize", DL_FLAG_INT, &resize, "PX", "shorter side before the crop (default 256)"},
      {"batch", DL_FLAG_INT, &batch, "N", "images per forward pass (default 16)"},
      {"out", DL_FLAG_STRING, &out, "FILE", "output .safetensors: x_norm_clstoken, x_norm_patchtokens, x_prenorm (+ x_norm_regtokens)"},
      DL_MODEL_FLAG_ENTRIES(mf),
  };
  const dl_command_spec spec = {
      "embed", "--weights W (--input X.safetensors [--tensor NAME] | --images FILE...) --out Y.safetensors",
      "Computes the backbone's normalized CLS, register and patch tokens and the tokens\n"
      "before the final norm, exactly as the official DINOv2 code does.",
      flags, sizeof flags / sizeof flags[0]};
  char *files[4096];
  int nfiles = 0;
  if (dl_parse_flags(&spec, argc, argv, files, 4096, &nfiles)) return 0;
  dl_require_flag(&spec, "weights", weights);
  dl_require_flag(&spec, "out", out);
  if (!images && !input) dl_die_input("embed: give --input FILE or --images FILE... (see distill embed --help)");
  if (images && input) dl_die_input("embed: --input and --images exclude each other");
  if (!images && nfiles) dl_die_input("embed: unexpected argument '%s'", files[0]);
  if (images && !nfiles) dl_die_input("embed: --images needs at least one file");
  if (batch <= 0 || size <= 0 || resize <= 0) dl_die_input("embed: --batch, --size and --resize must be positive");

  dl_vit vit;
  dl_err err;
  dl_vit_overrides ov;
  dl_model_flags_overrides(&mf, &ov);
  if (dl_vit_load(weights, &ov, &vit, NULL, &err)) dl_die_input("%s", err.msg);
  dl_embed_result res;
  int rc = images ? dl_embed_images(&vit, (const char *const *)files, nfiles, resize, size, batch, &res, &err)
                  : dl_embed_tensor_file(&vit, input, tensor, batch, &res, &err);
  if (rc == 0) rc = dl_embed_write(&res, out, &err);
  if (rc == 0)
    printf("embed: %d images, %d tokens of dim %d -> %s\n", res.n, res.tokens, vit.cfg.dim, out);
  dl_embed_result_free(&res);
  dl_vit_free(&vit);
  if (rc) dl_die_input("%s", err.msg);
  return 0;
}
