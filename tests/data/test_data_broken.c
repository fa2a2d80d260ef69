// The folder of deliberately broken files (tests/data/broken, written by
// make_broken.py): every bad file is refused with a message, skipped,
// counted and substituted; nothing crashes (this test also runs under ASan
// and UBSan in the sanitizer build).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/loader.h"
#include "data/sample_stream.h"
#include "tests/harness.h"

#define BROKEN_DIR DISTILL_SOURCE_DIR "/tests/data/broken"

static const char *kBroken[] = {"bad_crc.png", "bomb_100000x100000.png", "empty.jpg", "not_an_image.jpg",
                                "random.jpg", "random_with_jpeg_magic.jpg", "truncated.jpg", "truncated.png"};
enum { kNumBroken = sizeof kBroken / sizeof kBroken[0] };

static void check_each_file(void) {
  for (int i = 0; i < kNumBroken; i++) {
    char path[512];
    snprintf(path, sizeof path, BROKEN_DIR "/%s", kBroken[i]);
    dl_image img;
    dl_err err = {{0}};
    int rc = dl_image_read_file(path, &img, &err);
    CHECK(rc == -1 && img.rgb == NULL && strstr(err.msg, kBroken[i]) != NULL,
          "%-28s refused: %s", kBroken[i], err.msg);
  }
  dl_image img;
  dl_err err;
  int rc = dl_image_read_file(BROKEN_DIR "/good.png", &img, &err);
  CHECK(rc == 0 && img.width == 16 && img.height == 12, "good.png (control) decodes to 16x12");
  if (rc == 0) dl_image_free(&img);
  rc = dl_image_read_file(BROKEN_DIR "/does_not_exist.jpg", &img, &err);
  CHECK(rc == -1, "a missing file is an error: %s", err.msg);
}

static void check_stream_skips(void) {
  dl_dataset *ds;
  dl_err err;
  int rc = dl_dataset_open("folder:" BROKEN_DIR, &ds, &err);
  CHECK(rc == 0 && dl_dataset_count(ds) == kNumBroken + 1, "folder of broken files lists %lld images",
        rc == 0 ? (long long)dl_dataset_count(ds) : -1LL);
  if (rc != 0) return;
  dl_crop_spec crops = {2, 32, 0.32, 1.0, 2, 16, 0.05, 0.32};
  // One block is exactly one epoch: every file read once.
  dl_sample_stream st = {ds, 7, kNumBroken + 1, crops, 1};
  dl_loader *ld = dl_loader_start(&st, 0, 1, 3, 32, 2, 2);
  dl_block b;
  int blocks = 0;
  while (dl_loader_next(ld, &b)) {
    CHECK(b.skipped == kNumBroken, "block %lld: %d items skipped and substituted (want %d)", (long long)b.block,
          b.skipped, kNumBroken);
    blocks++;
    dl_block_free(&b);
  }
  CHECK(blocks == 3 && dl_loader_skipped(ld) == 3 * kNumBroken, "loader counted %lld skips over %d blocks",
        (long long)dl_loader_skipped(ld), blocks);
  dl_loader_stop(ld);
  dl_dataset_close(ds);
}

static void check_bad_specs(void) {
  const char *specs[] = {"nokind", "zip:/tmp", "folder:/nonexistent/dir", "list:/nonexistent.txt",
                         "tar:/nonexistent-{000..002}.tar", "tar:/x-{5..2}.tar", "idx:/nonexistent",
                         "idx:/usr/share/datasets/fashion-mnist,split=val", "folder:" DISTILL_SOURCE_DIR "/recipes"};
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    dl_dataset *ds;
    dl_err err = {{0}};
    int rc = dl_dataset_open(specs[i], &ds, &err);
    CHECK(rc == -1 && ds == NULL && err.msg[0], "bad spec '%s' refused: %s", specs[i], err.msg);
  }
}

int main(void) {
  check_each_file();
  check_stream_skips();
  check_bad_specs();
  return dl_test_summary("test_data_broken");
}
