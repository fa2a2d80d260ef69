#include "model/embed.h"

#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "model/safetensors.h"

void dl_embed_result_free(dl_embed_result *res) {
  free(res->cls);
  free(res->regs);
  free(res->patches_out);
  free(res->prenorm);
  memset(res, 0, sizeof *res);
}

static void result_alloc(const dl_vit *vit, int n, int h, int w, dl_embed_result *res) {
  const int np = dl_vit_num_patches(&vit->cfg, h, w), D = vit->cfg.dim, R = vit->cfg.registers;
  *res = (dl_embed_result){.n = n, .tokens = 1 + R + np, .patches = np, .registers = R, .dim = D};
  res->cls = dl_malloc((size_t)n * D * sizeof(float));
  res->regs = R ? dl_malloc((size_t)n * R * D * sizeof(float)) : NULL;
  res->patches_out = dl_malloc((size_t)n * np * D * sizeof(float));
  res->prenorm = dl_malloc((size_t)n * res->tokens * D * sizeof(float));
}

// Runs images [m, 3, h, w] and stores their outputs at rows first.. of res.
static int embed_batch(const dl_vit *vit, const float *images, int first, int m, int h, int w,
                       dl_vit_workspace *ws, dl_embed_result *res, dl_err *err) {
  const size_t D = (size_t)res->dim;
  dl_vit_outputs out = {res->cls + first * D, res->regs ? res->regs + first * res->registers * D : NULL,
                        res->patches_out + first * res->patches * D, res->prenorm + first * res->tokens * D};
  return dl_vit_forward(vit, images, m, h, w, NULL, ws, &out, err);
}

int dl_embed_array(const dl_vit *vit, const float *images, int n, int h, int w, int batch,
                   dl_embed_result *res, dl_err *err) {
  const dl_vit_config *c = &vit->cfg;
  memset(res, 0, sizeof *res);
  if (h % c->patch || w % c->patch || h <= 0 || w <= 0)
    return dl_fail(err, "input %dx%d is not a multiple of the patch size %d", h, w, c->patch);
  result_alloc(vit, n, h, w, res);
  dl_vit_workspace ws = {0};
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i += batch) {
    int m = n - i < batch ? n - i : batch;
    rc = embed_batch(vit, images + (size_t)i * 3 * h * w, i, m, h, w, &ws, res, err);
  }
  dl_vit_workspace_free(&ws);
  if (rc) dl_embed_result_free(res);
  return rc;
}

// Decodes and transforms one batch of files; the first unreadable one ends
// the command (embedding is per file, so a gap would misalign outputs).
static int load_batch(const char *const *files, int m, int resize, int crop, float *images, dl_err *err) {
  int failed = -1;  // the index of the first file that failed, under `critical`
#pragma omp parallel for schedule(dynamic, 1)
  for (int i = 0; i < m; i++) {
    dl_image img;
    dl_err e;
    int r = dl_image_read_file(files[i], &img, &e);
    if (r == 0) {
      r = dl_eval_transform(&img, resize, crop, images + (size_t)i * 3 * crop * crop, &e);
      dl_image_free(&img);
    }
    if (r != 0) {
#pragma omp critical
      if (failed < 0 || i < failed) {
        failed = i;
        *err = e;
      }
    }
  }
  return failed < 0 ? 0 : -1;
}

int dl_embed_images(const dl_vit *vit, const char *const *files, int n, int resize, int crop, int batch,
                    dl_embed_result *res, dl_err *err) {
  memset(res, 0, sizeof *res);
  if (crop % vit->cfg.patch)
    return dl_fail(err, "crop size %d is not a multiple of the patch size %d", crop, vit->cfg.patch);
  result_alloc(vit, n, crop, crop, res);
  float *images = dl_malloc((size_t)batch * 3 * crop * crop * sizeof(float));
  dl_vit_workspace ws = {0};
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i += batch) {
    int m = n - i < batch ? n - i : batch;
    rc = load_batch(files + i, m, resize, crop, images, err);
    if (rc == 0) rc = embed_batch(vit, images, i, m, crop, crop, &ws, res, err);
  }
  dl_vit_workspace_free(&ws);
  free(images);
  if (rc) dl_embed_result_free(res);
  return rc;
}

int dl_embed_tensor_file(const dl_vit *vit, const char *path, const char *tensor, int batch,
                         dl_embed_result *res, dl_err *err) {
  memset(res, 0, sizeof *res);
  dl_safetensors st;
  if (dl_st_open(path, &st, err)) return -1;
  const dl_st_tensor *t = NULL;
  int rc = 0;
  if (tensor) {
    t = dl_st_find(&st, tensor);
    if (!t) rc = dl_fail(err, "%s: no tensor named '%s'", path, tensor);
  } else if (st.count == 1) {
    t = &st.tensors[0];
  } else {
    rc = dl_fail(err, "%s: holds %d tensors; name one with --tensor", path, st.count);
  }
  if (rc == 0 && (t->ndim != 4 || t->shape[1] != 3 || t->shape[0] <= 0))
    rc = dl_fail(err, "%s: tensor '%s' is not [N, 3, H, W]", path, t->name);
  if (rc == 0) {
    float *x = dl_malloc((size_t)t->numel * sizeof(float));
    rc = dl_st_read_f32(t, x, err);
    if (rc == 0)
      rc = dl_embed_array(vit, x, (int)t->shape[0], (int)t->shape[2], (int)t->shape[3], batch, res, err);
    if (rc) dl_fail_prefix(err, path);
    free(x);
  }
  dl_st_close(&st);
  return rc;
}

int dl_embed_write(const dl_embed_result *r, const char *path, dl_err *err) {
  dl_st_out t[4];
  int n = 0;
  t[n++] = (dl_st_out){"x_norm_clstoken", 2, {r->n, r->dim}, r->cls};
  if (r->registers) t[n++] = (dl_st_out){"x_norm_regtokens", 3, {r->n, r->registers, r->dim}, r->regs};
  t[n++] = (dl_st_out){"x_norm_patchtokens", 3, {r->n, r->patches, r->dim}, r->patches_out};
  t[n++] = (dl_st_out){"x_prenorm", 3, {r->n, r->tokens, r->dim}, r->prenorm};
  return dl_st_write_f32(path, t, n, NULL, 0, err);
}

