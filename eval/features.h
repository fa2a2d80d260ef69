// Frozen features for evaluation: a dataset's images through the DINOv2
// evaluation transform (shorter side to `resize`, center crop `crop`,
// ImageNet normalization), the backbone, and its normalized CLS token.
#ifndef DISTILL_EVAL_FEATURES_H
#define DISTILL_EVAL_FEATURES_H

#include <stdint.h>

#include "common/err.h"
#include "data/dataset.h"
#include "model/vit.h"

typedef struct dl_eval_set {
  int n, dim, classes;  // classes: 1 + the largest label
  float *feats;         // [n, dim]: the backbone's x_norm_clstoken
  int *labels;          // [n]
} dl_eval_set;

// Features of `limit` items (0: all) of a labelled dataset, evenly spaced over
// it (item i * count / limit) so a subset keeps the class mix. An item that
// cannot be read or decoded, or has no label, is an error naming it.
int dl_eval_features(const dl_vit *vit, const dl_dataset *ds, int64_t limit, int resize, int crop, int batch,
                     dl_eval_set *out, dl_err *err);
void dl_eval_set_free(dl_eval_set *s);

// The evaluation resize for a crop, in DINOv2's 256 / 224 proportion.
int dl_eval_resize_for(int crop);

// Both sets of an evaluation: opens the datasets, extracts features, closes them.
int dl_eval_load_pair(const dl_vit *vit, const char *train_spec, const char *test_spec, int64_t limit_train,
                      int64_t limit_test, int resize, int crop, int batch, dl_eval_set *train, dl_eval_set *test,
                      dl_err *err);

#endif
