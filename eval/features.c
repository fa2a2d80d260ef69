#include "eval/features.h"

#include <stdlib.h>
#include <string.h>

#include "data/image.h"

void dl_eval_set_free(dl_eval_set *s) {
  free(s->feats);
  free(s->labels);
  memset(s, 0, sizeof *s);
}

int dl_eval_resize_for(int crop) { return (crop * 256 + 112) / 224; }

// Reads, decodes and transforms items [first, first + m) of the subset into images.
static int load_batch(const dl_dataset *ds, int64_t count, int64_t n, int64_t first, int m, int resize, int crop,
                      float *images, int *labels, dl_err *err) {
  int failed = 0;
#pragma omp parallel for schedule(dynamic, 4)
  for (int i = 0; i < m; i++) {
    const int64_t item = (first + i) * count / n;
    dl_item it;
    dl_image img = {0};
    dl_err e;
    int rc = dl_dataset_read(ds, item, &it, &e);
    if (rc == 0) {
      labels[i] = it.label;
      rc = dl_item_decode(&it, &img, &e);
      if (rc == 0 && it.label < 0) rc = dl_fail(&e, "%s: no label", it.name);
      dl_item_release(&it);
    }
    if (rc == 0) rc = dl_eval_transform(&img, resize, crop, images + (size_t)i * 3 * crop * crop, &e);
    dl_image_free(&img);
    if (rc) {
#pragma omp critical
      if (!failed) failed = 1, *err = e;
    }
  }
  return failed ? -1 : 0;
}

int dl_eval_features(const dl_vit *vit, const dl_dataset *ds, int64_t limit, int resize, int crop, int batch,
                     dl_eval_set *out, dl_err *err) {
  memset(out, 0, sizeof *out);
  if (crop % vit->cfg.patch) return dl_fail(err, "crop %d is not a multiple of the patch size %d", crop, vit->cfg.patch);
  const int64_t count = dl_dataset_count(ds), n = limit > 0 && limit < count ? limit : count;
  const int D = vit->cfg.dim, P = dl_vit_num_patches(&vit->cfg, crop, crop);
  out->n = (int)n;
  out->dim = D;
  out->feats = dl_malloc((size_t)n * D * sizeof(float));
  out->labels = dl_malloc((size_t)n * sizeof(int));
  float *images = dl_malloc((size_t)batch * 3 * crop * crop * sizeof(float));
  float *patches = dl_malloc((size_t)batch * P * D * sizeof(float));
  dl_vit_workspace ws = {0};
  int rc = 0;
  for (int64_t i = 0; i < n && rc == 0; i += batch) {
    const int m = n - i < batch ? (int)(n - i) : batch;
    rc = load_batch(ds, count, n, i, m, resize, crop, images, out->labels + i, err);
    dl_vit_outputs o = {out->feats + i * D, NULL, patches, NULL};
    float *regs = vit->cfg.registers ? dl_malloc((size_t)m * vit->cfg.registers * D * sizeof(float)) : NULL;
    o.regs = regs;
    if (rc == 0) rc = dl_vit_forward(vit, images, m, crop, crop, NULL, &ws, &o, err);
    free(regs);
  }
  dl_vit_workspace_free(&ws);
  free(images);
  free(patches);
  if (rc) {
    dl_eval_set_free(out);
    return -1;
  }
  for (int i = 0; i < out->n; i++)
    if (out->labels[i] + 1 > out->classes) out->classes = out->labels[i] + 1;
  return 0;
}

static int load_one(const dl_vit *vit, const char *spec, int64_t limit, int resize, int crop, int batch,
                    dl_eval_set *out, dl_err *err) {
  dl_dataset *ds;
  if (dl_dataset_open(spec, &ds, err)) return -1;
  int rc = dl_dataset_num_classes(ds) > 0 ? 0 : dl_fail(err, "%s: the dataset has no labels", spec);
  if (rc == 0) rc = dl_eval_features(vit, ds, limit, resize, crop, batch, out, err);
  dl_dataset_close(ds);
  return rc;
}

int dl_eval_load_pair(const dl_vit *vit, const char *train_spec, const char *test_spec, int64_t limit_train,
                      int64_t limit_test, int resize, int crop, int batch, dl_eval_set *train, dl_eval_set *test,
                      dl_err *err) {
  memset(test, 0, sizeof *test);
  if (load_one(vit, train_spec, limit_train, resize, crop, batch, train, err)) return -1;
  if (load_one(vit, test_spec, limit_test, resize, crop, batch, test, err)) {
    dl_eval_set_free(train);
    return -1;
  }
  return 0;
}
