#include "model/embed.h"

#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"

void dl_embed_result_free(dl_embed_result *res) {
  free(res->cls);
  free(res->regs);
  free(res->patches_out);
  free(res->prenorm);
  memset(res, 0, sizeof *res);
}

int dl_embed_array(const dl_vit *vit, const float *images, int n, int h, int w, int batch,
                   dl_embed_result *res, dl_err *err) {
  const dl_vit_config *c = &vit->cfg;
  memset(res, 0, sizeof *res);
  if (h % c->patch || w % c->patch || h <= 0 || w <= 0)
    return dl_fail(err, "input %dx%d is not a multiple of the patch size %d", h, w, c->patch);
  const int np = dl_vit_num_patches(c, h, w), D = c->dim, R = c->registers, t = 1 + R + np;
  *res = (dl_embed_result){.n = n, .tokens = t, .patches = np, .registers = R, .dim = D};
  res->cls = dl_malloc((size_t)n * D * sizeof(float));
  res->regs = R ? dl_malloc((size_t)n * R * D * sizeof(float)) : NULL;
  res->patches_out = dl_malloc((size_t)n * np * D * sizeof(float));
  res->prenorm = dl_malloc((size_t)n * t * D * sizeof(float));
  dl_vit_workspace ws = {0};
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i += batch) {
    int m = n - i < batch ? n - i : batch;
    dl_vit_outputs out = {res->cls + (size_t)i * D, R ? res->regs + (size_t)i * R * D : NULL,
                          res->patches_out + (size_t)i * np * D, res->prenorm + (size_t)i * t * D};
    rc = dl_vit_forward(vit, images + (size_t)i * 3 * h * w, m, h, w, NULL, &ws, &out, err);
  }
  dl_vit_workspace_free(&ws);
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

// Until the data pipeline lands, image files are refused with a clear message.
int dl_embed_images(const dl_vit *vit, const char *const *files, int n, int resize, int crop, int batch,
                    dl_embed_result *res, dl_err *err) {
  (void)vit; (void)n; (void)resize; (void)crop; (void)batch;
  memset(res, 0, sizeof *res);
  return dl_fail(err, "%s: image input needs the data pipeline (not built yet)", files[0]);
}
