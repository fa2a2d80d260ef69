// Batched feature extraction for `distill embed` (and later the teacher):
// runs the forward pass over many inputs in batches and collects outputs.
#ifndef DISTILL_MODEL_EMBED_H
#define DISTILL_MODEL_EMBED_H

#include "common/err.h"
#include "model/vit.h"

typedef struct dl_embed_result {
  int n, tokens, patches, registers, dim;
  float *cls, *regs, *patches_out, *prenorm;
} dl_embed_result;

// Embeds `n` normalized images [n, 3, h, w], `batch` at a time.
int dl_embed_array(const dl_vit *vit, const float *images, int n, int h, int w, int batch,
                   dl_embed_result *res, dl_err *err);
// Reads an [N, 3, H, W] tensor (the only one in the file, or `tensor`).
int dl_embed_tensor_file(const dl_vit *vit, const char *path, const char *tensor, int batch,
                         dl_embed_result *res, dl_err *err);
// Decodes JPEG/PNG files through the DINOv2 evaluation transform.
int dl_embed_images(const dl_vit *vit, const char *const *files, int n, int resize, int crop, int batch,
                    dl_embed_result *res, dl_err *err);
// Writes x_norm_clstoken, x_norm_patchtokens, x_prenorm (and x_norm_regtokens).
int dl_embed_write(const dl_embed_result *res, const char *path, dl_err *err);
void dl_embed_result_free(dl_embed_result *res);

#endif
