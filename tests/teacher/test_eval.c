// The evaluation code on inputs whose answers are known: the k-NN vote is
// weighted by exp(similarity / T) (not a majority count), k bounds the
// neighbours, the linear probe separates separable classes and does not
// learn random labels, and features of a tiny image folder classify it.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/png_write.h"
#include "data/rng.h"
#include "eval/knn.h"
#include "eval/linear.h"
#include "teacher/model_io.h"
#include "tests/harness.h"

static dl_eval_set make_set(int n, int dim) {
  dl_eval_set s = {n, dim, 0, calloc((size_t)n * dim, sizeof(float)), calloc((size_t)n, sizeof(int))};
  return s;
}

static void set_row(dl_eval_set *s, int i, float x, float y, int label) {
  s->feats[(size_t)i * s->dim] = x;
  s->feats[(size_t)i * s->dim + 1] = y;
  s->labels[i] = label;
  if (label + 1 > s->classes) s->classes = label + 1;
}

// One training point of class 0 at angle 0, two of class 1 at +-0.6 rad; a
// test point at angle 0.05. k = 3: a majority count says 1, the weighted
// vote (exp(cos/0.07)) says 0; k = 1 says 0; a large temperature (10)
// flattens the weights and the count wins: 1.
static void test_knn_weighted_vote(void) {
  dl_eval_set train = make_set(3, 2), test = make_set(1, 2);
  set_row(&train, 0, 3.0f, 0.0f, 0);  // norms differ: the cosine must normalize
  set_row(&train, 1, cosf(0.6f), sinf(0.6f), 1);
  set_row(&train, 2, cosf(-0.6f), sinf(-0.6f), 1);
  set_row(&test, 0, cosf(0.05f), sinf(0.05f), 0);
  int ks[2] = {1, 3}, pred[2];
  double top1[2];
  dl_knn_eval(&train, &test, ks, 2, DL_KNN_TEMPERATURE, top1, pred);
  CHECK(pred[0] == 0 && pred[1] == 0 && top1[0] == 100.0 && top1[1] == 100.0,
        "knn T=0.07: k=1 -> class %d, k=3 -> class %d (weighted vote; a count would say 1)", pred[0], pred[1]);
  dl_knn_eval(&train, &test, ks, 2, 10.0f, top1, pred);
  CHECK(pred[1] == 1 && top1[1] == 0.0, "knn T=10: k=3 -> class %d (flat weights: the count wins)", pred[1]);
  dl_eval_set_free(&train);
  dl_eval_set_free(&test);
}

// Gaussian blobs: 4 classes in 16 dimensions, centres 4 apart, unit noise.
static dl_eval_set blobs(int n, uint64_t seed, int random_labels) {
  dl_eval_set s = make_set(n, 16);
  dl_rng r = dl_rng_make(seed);
  for (int i = 0; i < n; i++) {
    const int c = i % 4;
    for (int j = 0; j < 16; j++) {
      double u = dl_rng_unit(&r) + 1e-12, v = dl_rng_unit(&r);
      float noise = (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
      s.feats[(size_t)i * 16 + j] = noise + (j == c ? 4.0f : 0.0f) + 2.0f;  // an offset: standardization removes it
    }
    s.labels[i] = random_labels ? (int)dl_rng_below(&r, 4) : c;
  }
  s.classes = 4;
  return s;
}

static void test_linear_probe(void) {
  dl_eval_set train = blobs(800, 1, 0), test = blobs(400, 2, 0);
  dl_linear_config c = dl_linear_config_default();
  double loss;
  double acc = dl_linear_probe(&train, &test, &c, &loss);
  CHECK(acc >= 95.0 && loss < 0.3, "linear probe on separable blobs: top-1 %.2f%% (>= 95), train loss %.4f", acc, loss);
  dl_eval_set_free(&train);
  dl_eval_set_free(&test);
  train = blobs(800, 3, 1), test = blobs(400, 4, 1);
  acc = dl_linear_probe(&train, &test, &c, &loss);
  CHECK(acc < 40.0, "linear probe on random labels: top-1 %.2f%% (chance 25%%, < 40)", acc);
  dl_eval_set_free(&train);
  dl_eval_set_free(&test);
}

// A folder dataset of flat images: class 0 reddish, class 1 bluish shades.
static void write_folder(const char *dir, int per_class, int shade0) {
  char path[512];
  mkdir(dir, 0755);
  for (int c = 0; c < 2; c++) {
    snprintf(path, sizeof path, "%s/class%d", dir, c);
    mkdir(path, 0755);
    for (int i = 0; i < per_class; i++) {
      dl_image img;
      dl_image_alloc(&img, 20, 20);
      const int v = shade0 + 7 * i;
      for (int p = 0; p < 400; p++) {
        img.rgb[3 * p + 0] = (uint8_t)(c == 0 ? 150 + v : 30);
        img.rgb[3 * p + 1] = (uint8_t)(40 + v / 2);
        img.rgb[3 * p + 2] = (uint8_t)(c == 1 ? 150 + v : 30);
      }
      snprintf(path, sizeof path, "%s/class%d/%02d.png", dir, c, i);
      dl_err err;
      if (dl_png_write(path, &img, &err)) printf("png: %s\n", err.msg);
      dl_image_free(&img);
    }
  }
}

static void test_features_of_folder(void) {
  char root[128], train_dir[192], test_dir[192], spec_train[256], spec_test[256];
  snprintf(root, sizeof root, "/tmp/distill-eval-%d", (int)getpid());
  mkdir(root, 0755);
  snprintf(train_dir, sizeof train_dir, "%s/train", root);
  snprintf(test_dir, sizeof test_dir, "%s/test", root);
  write_folder(train_dir, 12, 0);
  write_folder(test_dir, 4, 3);
  snprintf(spec_train, sizeof spec_train, "folder:%s", train_dir);
  snprintf(spec_test, sizeof spec_test, "folder:%s", test_dir);
  // LayerScale 1: with DINOv2's 1e-5 a random network's CLS barely sees the image.
  dl_vit_config vc = {.patch = 14, .dim = 64, .depth = 2, .heads = 1, .ffn_hidden = 128, .pos_grid = 2,
                      .ffn = DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
  dl_vit vit;
  dl_vit_init_random(&vit, &vc, 1.0f, 7);
  dl_eval_set train, test;
  dl_err err;
  int rc = dl_eval_load_pair(&vit, spec_train, spec_test, 0, 0, 32, 28, 5, &train, &test, &err);
  CHECK(rc == 0 && train.n == 24 && test.n == 8 && train.classes == 2, "features of the folders: %d + %d items (%s)",
        train.n, test.n, rc ? err.msg : "ok");
  if (rc == 0) {
    int ks[1] = {10};
    double top1;
    dl_knn_eval(&train, &test, ks, 1, DL_KNN_TEMPERATURE, &top1, NULL);
    CHECK(top1 == 100.0, "k-NN (k=10) of red vs blue images: top-1 %.1f%% (100 expected)", top1);
    dl_eval_set_free(&train);
    dl_eval_set_free(&test);
  }
  dl_eval_set sub;
  dl_dataset *ds;
  rc = dl_dataset_open(spec_train, &ds, &err);
  if (rc == 0) rc = dl_eval_features(&vit, ds, 6, 32, 28, 4, &sub, &err);
  CHECK(rc == 0 && sub.n == 6 && sub.labels[0] == 0 && sub.labels[5] == 1,
        "a 6-item subset is evenly spaced: labels %d..%d", rc ? -1 : sub.labels[0], rc ? -1 : sub.labels[5]);
  if (rc == 0) dl_eval_set_free(&sub);
  if (ds) dl_dataset_close(ds);
  rc = dl_eval_load_pair(&vit, spec_train, "folder:/nonexistent/x", 0, 0, 32, 28, 5, &train, &test, &err);
  CHECK(rc == -1 && strstr(err.msg, "nonexistent"), "a missing test set is an error: %s", err.msg);
  dl_vit_free(&vit);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", root);
  if (system(cmd) != 0) printf("could not remove %s\n", root);
}

int main(void) {
  test_knn_weighted_vote();
  test_linear_probe();
  test_features_of_folder();
  return dl_test_summary("teacher_eval");
}
