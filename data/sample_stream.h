// The sample stream (DESIGN.md section 3): a recipe's dataset, seed and block
// size define an infinite, deterministic sequence of samples. Sample s is
// item perm(seed, epoch)[s % N] of epoch s / N with augmentation seed
// hash(seed, s); block b holds samples [b*B, (b+1)*B). Any process rebuilds
// any block's inputs from b alone.
#ifndef DISTILL_DATA_SAMPLE_STREAM_H
#define DISTILL_DATA_SAMPLE_STREAM_H

#include <stdint.h>

#include "data/augment.h"
#include "data/dataset.h"

typedef struct dl_sample_stream {
  const dl_dataset *dataset;   // borrowed
  uint64_t seed;
  int block_size;
  dl_crop_spec crops;
  int quiet;                   // no per-item warnings (tests of broken data)
} dl_sample_stream;

typedef struct dl_sample_ref {
  int64_t sample, epoch, item;
  uint64_t aug_seed;
} dl_sample_ref;

dl_sample_ref dl_sample_stream_item(const dl_sample_stream *st, int64_t sample);

// One block's inputs, normalized float crops, channel-major:
// global_crops[sample][crop][3][G][G], local_crops[sample][crop][3][L][L].
typedef struct dl_block {
  int64_t block;
  int num_samples, global_count, global_size, local_count, local_size;
  int64_t *sample_ids;
  int *labels;
  float *global_crops, *local_crops;
  int skipped;   // items that could not be read or decoded (substituted)
} dl_block;

// Builds block `block` with global crops at `global_size` (the recipe's size,
// or a higher one in the high-resolution phase; the boxes do not change).
void dl_sample_stream_block(const dl_sample_stream *st, int64_t block, int global_size, dl_block *out);
void dl_block_free(dl_block *b);

// Reads and decodes one sample's image. A bad item is reported on stderr,
// counted in *skipped and replaced by a fixed substitute image, so the stream
// stays identical across runs. Returns the label.
int dl_sample_stream_image(const dl_sample_stream *st, int64_t item, dl_image *img, int *skipped);

#endif
