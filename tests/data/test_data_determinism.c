// Determinism: the same (dataset, seed, sample) gives byte-identical crops
// across runs, loader thread counts and processes, and a global crop asked
// at another resolution keeps its box.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/loader.h"
#include "data/sample_stream.h"
#include "tests/harness.h"

enum { kBlocks = 6, kBlockSize = 4 };

// FNV-1a over a block's sample ids, labels and crop bytes.
static uint64_t block_hash(const dl_block *b) {
  uint64_t h = 1469598103934665603ull;
  size_t g = (size_t)b->num_samples * b->global_count * 3 * b->global_size * b->global_size;
  size_t l = (size_t)b->num_samples * b->local_count * 3 * b->local_size * b->local_size;
  const uint8_t *parts[4] = {(const uint8_t *)b->sample_ids, (const uint8_t *)b->labels,
                             (const uint8_t *)b->global_crops, (const uint8_t *)b->local_crops};
  size_t sizes[4] = {sizeof(int64_t) * b->num_samples, sizeof(int) * b->num_samples, g * sizeof(float), l * sizeof(float)};
  for (int p = 0; p < 4; p++)
    for (size_t i = 0; i < sizes[p]; i++) h = (h ^ parts[p][i]) * 1099511628211ull;
  return h;
}

static void hashes_with_loader(const dl_sample_stream *st, int threads, uint64_t *out) {
  dl_loader *ld = dl_loader_start(st, 0, 1, kBlocks, st->crops.global_size, threads, 3);
  dl_block b;
  for (int i = 0; dl_loader_next(ld, &b); i++) {
    out[i] = block_hash(&b);
    dl_block_free(&b);
  }
  dl_loader_stop(ld);
}

int main(void) {
  dl_dataset *ds;
  dl_err err;
  if (dl_dataset_open("folder:" DISTILL_SOURCE_DIR "/tests/ref/data", &ds, &err) != 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  dl_crop_spec crops = {2, 64, 0.32, 1.0, 4, 32, 0.05, 0.32};
  dl_sample_stream st = {ds, 42, kBlockSize, crops, 0};

  uint64_t serial[kBlocks], again[kBlocks], one[kBlocks], two[kBlocks], child[kBlocks];
  for (int i = 0; i < kBlocks; i++) {
    dl_block b;
    dl_sample_stream_block(&st, i, crops.global_size, &b);
    serial[i] = block_hash(&b);
    dl_block_free(&b);
    dl_sample_stream_block(&st, i, crops.global_size, &b);
    again[i] = block_hash(&b);
    dl_block_free(&b);
  }
  CHECK(memcmp(serial, again, sizeof serial) == 0, "%d blocks built twice are byte-identical", kBlocks);
  hashes_with_loader(&st, 1, one);
  hashes_with_loader(&st, 2, two);
  CHECK(memcmp(serial, one, sizeof serial) == 0 && memcmp(serial, two, sizeof serial) == 0,
        "the loader with 1 and 2 threads delivers the same bytes (block 0 hash %016llx)", (unsigned long long)serial[0]);

  int fds[2];
  DL_ASSERT(pipe(fds) == 0);
  pid_t pid = fork();
  if (pid == 0) {   // another process, its own loader with 3 threads
    close(fds[0]);
    hashes_with_loader(&st, 3, child);
    ssize_t w = write(fds[1], child, sizeof child);
    _exit(w == (ssize_t)sizeof child ? 0 : 1);
  }
  close(fds[1]);
  ssize_t got = read(fds[0], child, sizeof child);
  int status = 0;
  waitpid(pid, &status, 0);
  close(fds[0]);
  CHECK(got == (ssize_t)sizeof child && status == 0 && memcmp(serial, child, sizeof serial) == 0,
        "a separate process (3 loader threads) rebuilds the same bytes");

  dl_sample_stream other = st;
  other.seed = 43;
  dl_block b;
  dl_sample_stream_block(&other, 0, crops.global_size, &b);
  CHECK(block_hash(&b) != serial[0], "another seed gives other crops");
  dl_block_free(&b);

  // High-resolution phase: the same sample's global crop boxes at 2x size.
  dl_sample_ref r = dl_sample_stream_item(&st, 5);
  dl_crop_draw d64, d128;
  dl_image img;
  int skipped = 0;
  dl_sample_stream_image(&st, r.item, &img, &skipped);
  float *c64 = malloc(sizeof(float) * 3 * 64 * 64), *c128 = malloc(sizeof(float) * 3 * 128 * 128);
  dl_augment_crop(&img, &crops, r.aug_seed, 1, 64, c64, &d64);
  dl_augment_crop(&img, &crops, r.aug_seed, 1, 128, c128, &d128);
  int same = d64.box.top == d128.box.top && d64.box.left == d128.box.left && d64.box.width == d128.box.width &&
             d64.box.height == d128.box.height && d64.flip == d128.flip && d64.jitter == d128.jitter &&
             d64.brightness == d128.brightness && d64.hue == d128.hue && d64.blur == d128.blur &&
             d64.blur_sigma == d128.blur_sigma && d64.solarize == d128.solarize && d64.grayscale == d128.grayscale;
  CHECK(same, "a global crop at 128 px uses the same box and draws as at 64 px");
  free(c64);
  free(c128);
  dl_image_free(&img);
  dl_dataset_close(ds);
  return dl_test_summary("test_data_determinism");
}
