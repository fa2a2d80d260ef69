// Unit tests of data/ and recipe/: the permutation, the sample stream's
// mapping, each dataset kind on files written here, the recipe loader's
// acceptance and its refusals (with FILE:LINE).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data/dataset.h"
#include "data/permutation.h"
#include "data/png_write.h"
#include "data/sample_stream.h"
#include "recipe/recipe.h"
#include "tests/harness.h"

static char g_tmp[256];

static void check_permutation(void) {
  int64_t sizes[] = {1, 2, 3, 10, 97, 1000, 4096, 60000};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    int64_t n = sizes[s];
    char *seen = calloc((size_t)n, 1);
    int ok = 1, fixed = 0;
    for (int64_t i = 0; i < n; i++) {
      int64_t j = dl_permute_index(i, n, 12345);
      if (j < 0 || j >= n || seen[j]) ok = 0;
      else seen[j] = 1;
      fixed += j == i;
    }
    CHECK(ok, "perm of [0, %lld) is a bijection (%d fixed points)", (long long)n, fixed);
    free(seen);
  }
  int differ = 0;
  for (int i = 0; i < 1000; i++) differ += dl_permute_index(i, 1000, 1) != dl_permute_index(i, 1000, 2);
  CHECK(differ > 900, "different keys give different permutations (%d of 1000 positions differ)", differ);
}

static void write_png(const char *path, int w, int h, uint8_t value) {
  dl_image img;
  dl_err err;
  dl_image_alloc(&img, w, h);
  memset(img.rgb, value, (size_t)w * h * 3);
  DL_ASSERT(dl_png_write(path, &img, &err) == 0);
  dl_image_free(&img);
}

// Item i's first pixel and label, decoded.
static int first_pixel(const dl_dataset *ds, int64_t i, int *label) {
  dl_item it;
  dl_image img;
  dl_err err;
  if (dl_dataset_read(ds, i, &it, &err) != 0) return -1;
  *label = it.label;
  int rc = dl_item_decode(&it, &img, &err);
  dl_item_release(&it);
  if (rc != 0) return -1;
  int v = img.rgb[0];
  dl_image_free(&img);
  return v;
}

static void check_folder_and_list(void) {
  char path[512];
  const char *classes[] = {"b_cat", "a_dog"};   // sorted: a_dog = 0, b_cat = 1
  for (int c = 0; c < 2; c++) {
    snprintf(path, sizeof path, "%s/folder/%s", g_tmp, classes[c]);
    mkdir(path, 0755);
    for (int k = 0; k < 3; k++) {
      snprintf(path, sizeof path, "%s/folder/%s/img%d.png", g_tmp, classes[c], k);
      write_png(path, 8 + k, 6, (uint8_t)(10 * c + k));
    }
  }
  snprintf(path, sizeof path, "%s/folder/b_cat/notes.txt", g_tmp);
  FILE *f = fopen(path, "w");
  fputs("not an image\n", f);
  fclose(f);
  char spec[600];
  snprintf(spec, sizeof spec, "folder:%s/folder", g_tmp);
  dl_dataset *ds;
  dl_err err;
  int rc = dl_dataset_open(spec, &ds, &err);
  CHECK(rc == 0 && dl_dataset_count(ds) == 6 && dl_dataset_num_classes(ds) == 2,
        "folder: 6 images in 2 class folders (.txt ignored)");
  if (rc == 0) {
    int label, v0 = first_pixel(ds, 0, &label), l0 = label, v5 = first_pixel(ds, 5, &label);
    CHECK(v0 == 10 && l0 == 0 && v5 == 2 && label == 1, "folder: sorted class names give labels (a_dog=0, b_cat=1)");
    dl_dataset_close(ds);
  }
  snprintf(path, sizeof path, "%s/list.txt", g_tmp);
  f = fopen(path, "w");
  fprintf(f, "# a comment\nfolder/a_dog/img2.png 7\n\n%s/folder/b_cat/img0.png 3\n", g_tmp);
  fclose(f);
  snprintf(spec, sizeof spec, "list:%s/list.txt", g_tmp);
  rc = dl_dataset_open(spec, &ds, &err);
  CHECK(rc == 0 && dl_dataset_count(ds) == 2, "list: 2 entries (comment and blank line skipped)");
  if (rc == 0) {
    int label, v0 = first_pixel(ds, 0, &label), l0 = label, v1 = first_pixel(ds, 1, &label);
    CHECK(v0 == 12 && l0 == 7 && v1 == 0 && label == 3, "list: relative and absolute paths, labels 7 and 3");
    dl_dataset_close(ds);
  }
  f = fopen(path, "w");
  fprintf(f, "folder/a_dog/img2.png seven\n");
  fclose(f);
  rc = dl_dataset_open(spec, &ds, &err);
  CHECK(rc == -1 && strstr(err.msg, "list.txt:1:"), "list: a bad label is refused with its line: %s", err.msg);
}

// A minimal ustar member.
static void tar_member(FILE *f, const char *name, const void *data, size_t size) {
  uint8_t h[512] = {0};
  snprintf((char *)h, 100, "%s", name);
  snprintf((char *)h + 100, 8, "0000644");
  snprintf((char *)h + 124, 12, "%011zo", size);
  h[156] = '0';
  memcpy(h + 257, "ustar", 6);
  memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; i++) sum += h[i];
  snprintf((char *)h + 148, 8, "%06o", sum);
  fwrite(h, 1, 512, f);
  fwrite(data, 1, size, f);
  static const uint8_t zero[512];
  fwrite(zero, 1, (512 - size % 512) % 512, f);
}

static void check_tar(void) {
  char path[512], png[512];
  snprintf(png, sizeof png, "%s/t.png", g_tmp);
  for (int shard = 0; shard < 3; shard++) {
    snprintf(path, sizeof path, "%s/train-%03d.tar", g_tmp, shard);
    FILE *f = fopen(path, "wb");
    for (int k = 0; k < 2; k++) {
      write_png(png, 5, 5, (uint8_t)(shard * 10 + k));
      FILE *p = fopen(png, "rb");
      uint8_t buf[4096];
      size_t n = fread(buf, 1, sizeof buf, p);
      fclose(p);
      char name[64], cls[16];
      snprintf(name, sizeof name, "dir/s%d_%d.png", shard, k);
      tar_member(f, name, buf, n);
      snprintf(name, sizeof name, "dir/s%d_%d.cls", shard, k);
      snprintf(cls, sizeof cls, "%d\n", shard + k);
      tar_member(f, name, cls, strlen(cls));
    }
    static const uint8_t zero[1024];
    fwrite(zero, 1, sizeof zero, f);
    fclose(f);
  }
  char spec[600];
  snprintf(spec, sizeof spec, "tar:%s/train-{000..002}.tar", g_tmp);
  dl_dataset *ds;
  dl_err err;
  int rc = dl_dataset_open(spec, &ds, &err);
  CHECK(rc == 0 && dl_dataset_count(ds) == 6, "tar: 3 shards from a brace range, 6 samples (%s)", rc ? err.msg : "");
  if (rc == 0) {
    int label, v = first_pixel(ds, 5, &label);
    CHECK(v == 21 && label == 3, "tar: sample 5 is shard 2's second image with its .cls label (%d, %d)", v, label);
    dl_dataset_close(ds);
  }
}

static void check_idx(void) {
  char path[512];
  snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", g_tmp);
  gzFile g = gzopen(path, "wb");
  uint8_t head[16] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 4};
  gzwrite(g, head, 16);
  for (int i = 0; i < 3; i++) {
    uint8_t px[8];
    memset(px, 50 * i, 8);
    gzwrite(g, px, 8);
  }
  gzclose(g);
  snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte", g_tmp);   // plain, not gzip
  FILE *f = fopen(path, "wb");
  uint8_t lab[11] = {0, 0, 8, 1, 0, 0, 0, 3, 4, 5, 6};
  fwrite(lab, 1, sizeof lab, f);
  fclose(f);
  char spec[600];
  snprintf(spec, sizeof spec, "idx:%s,split=test", g_tmp);
  dl_dataset *ds;
  dl_err err;
  int rc = dl_dataset_open(spec, &ds, &err);
  CHECK(rc == 0 && dl_dataset_count(ds) == 3 && dl_dataset_num_classes(ds) == 7, "idx: 3 items of 2x4 (gzip + plain)");
  if (rc == 0) {
    int label, v = first_pixel(ds, 2, &label);
    CHECK(v == 100 && label == 6, "idx: item 2 gray 100 replicated to RGB, label 6");
    dl_dataset_close(ds);
  }
  rc = dl_dataset_open("idx:/usr/share/datasets/fashion-mnist", &ds, &err);
  if (rc == 0) {
    CHECK(dl_dataset_count(ds) == 60000 && dl_dataset_num_classes(ds) == 10, "idx: Fashion-MNIST train has 60000 items, 10 classes");
    dl_dataset_close(ds);
  } else {
    printf("skip Fashion-MNIST not installed: %s\n", err.msg);
  }
}

static void check_stream_mapping(void) {
  char spec[600];
  snprintf(spec, sizeof spec, "folder:%s/folder", g_tmp);
  dl_dataset *ds;
  dl_err err;
  DL_ASSERT(dl_dataset_open(spec, &ds, &err) == 0);
  dl_sample_stream st = {ds, 3, 4, dl_crop_spec_dinov2(), 1};
  int ok = 1, epochs_differ = 0;
  for (int e = 0; e < 5; e++) {
    int seen[6] = {0};
    for (int i = 0; i < 6; i++) {
      dl_sample_ref r = dl_sample_stream_item(&st, e * 6 + i);
      if (r.epoch != e) ok = 0;
      seen[r.item]++;
      if (e > 0 && r.item != dl_sample_stream_item(&st, i).item) epochs_differ = 1;
    }
    for (int i = 0; i < 6; i++) ok &= seen[i] == 1;
  }
  CHECK(ok, "stream: each epoch visits every item exactly once");
  CHECK(epochs_differ, "stream: epochs use different orders");
  CHECK(dl_sample_stream_item(&st, 7).aug_seed != dl_sample_stream_item(&st, 13).aug_seed,
        "stream: samples of the same item get different augmentation seeds");
  dl_block b;
  dl_sample_stream_block(&st, 2, 32, &b);
  CHECK(b.num_samples == 4 && b.sample_ids[0] == 8 && b.sample_ids[3] == 11 && b.global_size == 32 && b.local_count == 8,
        "stream: block 2 holds samples 8..11, global crops at the requested 32 px");
  dl_block_free(&b);
  dl_dataset_close(ds);
}

static int parse_text(const char *text, dl_recipe *r, dl_err *err) {
  return dl_recipe_parse("r.yaml", (const uint8_t *)text, strlen(text), r, err);
}

static void check_recipe(void) {
  dl_recipe r;
  dl_err err;
  char path[512];
  snprintf(path, sizeof path, "%s/recipes/demo.yaml", DISTILL_SOURCE_DIR);
  int rc = dl_recipe_load(path, &r, &err);
  CHECK(rc == 0 && strncmp(r.dataset, "idx:", 4) == 0 && r.crops.global_count == 2 && r.crops.local_count == 8,
        "recipes/demo.yaml loads (%s)", rc == 0 ? r.dataset : err.msg);
  snprintf(path, sizeof path, "%s/recipes/dinov2.yaml", DISTILL_SOURCE_DIR);
  rc = dl_recipe_load(path, &r, &err);
  CHECK(rc == 0 && r.crops.global_size == 224 && r.crops.local_size == 98 && r.crops.global_scale_lo == 0.32 &&
            r.crops.local_scale_hi == 0.32 && r.crops.local_count == 8,
        "recipes/dinov2.yaml loads with DINOv2's crops (2 x 224 at 0.32-1, 8 x 98 at 0.05-0.32)");
  rc = parse_text("data:\n  dataset: folder:/x\n", &r, &err);
  CHECK(rc == 0 && r.block_size == 32 && r.crops.global_size == 224 && r.crops.local_scale_hi == 0.32,
        "defaults: block 32, DINOv2 crops");
  struct { const char *text, *want; } bad[] = {
      {"data:\n  dataset: folder:/x\n  sede: 1\n", "r.yaml:3: unknown key 'sede' in section data"},
      {"data:\n  dataset: folder:/x\ncrops:\n  global_scale: [0.5, 0.2]\n", "r.yaml:4: crops.global_scale: need 0 < LOW <= HIGH <= 1"},
      {"data:\n  dataset: folder:/x\n  block_size: -3\n", "r.yaml:3: data.block_size: expected an integer in [1, 4096]"},
      {"data:\n  dataset: folder:/x\ncrops:\n  local_size: big\n", "r.yaml:4: crops.local_size: expected an integer"},
      {"data:\n  dataset: folder:/x\nmodle: {}\n", "r.yaml:3: unknown section 'modle'"},
      {"crops:\n  local_count: 2\n", "r.yaml: data.dataset is required"},
      {"data: [1, 2\n", "r.yaml:2: YAML error"},
      {"", "r.yaml: empty recipe"},
      {"data:\n  dataset: folder:/x\n  seed: 1\n  seed: 2\n", "r.yaml:4: key 'seed' repeated in data"},
      {"data:\n  dataset: folder:/x\ndata:\n  seed: 2\n", "r.yaml:3: key 'data' repeated in the recipe"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err.msg[0] = 0;
    rc = parse_text(bad[i].text, &r, &err);
    CHECK(rc == -1 && strncmp(err.msg, bad[i].want, strlen(bad[i].want)) == 0, "refused: %s", err.msg);
  }
}

int main(void) {
  snprintf(g_tmp, sizeof g_tmp, "/tmp/distill_test_data_%d", (int)getpid());
  mkdir(g_tmp, 0755);
  char path[512];
  snprintf(path, sizeof path, "%s/folder", g_tmp);
  mkdir(path, 0755);
  check_permutation();
  check_folder_and_list();
  check_tar();
  check_idx();
  check_stream_mapping();
  check_recipe();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
  if (system(cmd) != 0) printf("note: could not remove %s\n", g_tmp);
  return dl_test_summary("test_data_unit");
}
