#include "data/sample_stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/permutation.h"
#include "data/rng.h"

// Domain-separation constants, so epochs' permutations and samples'
// augmentation seeds come from unrelated streams of the same recipe seed.
enum { kPermutationDomain = 1, kAugmentationDomain = 2 };

dl_sample_ref dl_sample_stream_item(const dl_sample_stream *st, int64_t sample) {
  DL_ASSERT(sample >= 0);
  int64_t n = dl_dataset_count(st->dataset);
  dl_sample_ref r;
  r.sample = sample;
  r.epoch = sample / n;
  uint64_t perm_key = dl_key_derive(dl_key_derive(st->seed, kPermutationDomain), (uint64_t)r.epoch);
  r.item = dl_permute_index(sample % n, n, perm_key);
  r.aug_seed = dl_key_derive(dl_key_derive(st->seed, kAugmentationDomain), (uint64_t)sample);
  return r;
}

// A flat image near the ImageNet mean: neutral input for an unusable item.
static void substitute_image(dl_image *img) {
  dl_image_alloc(img, 256, 256);
  for (int i = 0; i < 256 * 256; i++) img->rgb[3 * i] = 124, img->rgb[3 * i + 1] = 116, img->rgb[3 * i + 2] = 104;
}

int dl_sample_stream_image(const dl_sample_stream *st, int64_t item, dl_image *img, int *skipped) {
  dl_item it;
  dl_err err;
  int label = DL_LABEL_NONE;
  if (dl_dataset_read(st->dataset, item, &it, &err) == 0) {
    label = it.label;
    int rc = dl_item_decode(&it, img, &err);
    dl_item_release(&it);
    if (rc == 0) return label;
  }
  if (!st->quiet) fprintf(stderr, "distill: warning: skipping item %lld: %s\n", (long long)item, err.msg);
  (*skipped)++;
  substitute_image(img);
  return label;
}

void dl_sample_stream_block(const dl_sample_stream *st, int64_t block, int global_size, dl_block *b) {
  const dl_crop_spec *c = &st->crops;
  memset(b, 0, sizeof *b);
  b->block = block;
  b->num_samples = st->block_size;
  b->global_count = c->global_count, b->global_size = global_size;
  b->local_count = c->local_count, b->local_size = c->local_size;
  b->sample_ids = dl_malloc(sizeof(int64_t) * b->num_samples);
  b->labels = dl_malloc(sizeof(int) * b->num_samples);
  size_t g = (size_t)3 * global_size * global_size, l = (size_t)3 * c->local_size * c->local_size;
  b->global_crops = dl_malloc(sizeof(float) * g * c->global_count * b->num_samples + 1);
  b->local_crops = dl_malloc(sizeof(float) * l * c->local_count * b->num_samples + 1);
  for (int i = 0; i < b->num_samples; i++) {
    dl_sample_ref r = dl_sample_stream_item(st, block * st->block_size + i);
    dl_image img;
    b->sample_ids[i] = r.sample;
    b->labels[i] = dl_sample_stream_image(st, r.item, &img, &b->skipped);
    for (int k = 0; k < c->global_count; k++)
      dl_augment_crop(&img, c, r.aug_seed, k, global_size, b->global_crops + g * ((size_t)i * c->global_count + k), NULL);
    for (int k = 0; k < c->local_count; k++)
      dl_augment_crop(&img, c, r.aug_seed, c->global_count + k, c->local_size,
                      b->local_crops + l * ((size_t)i * c->local_count + k), NULL);
    dl_image_free(&img);
  }
}

void dl_block_free(dl_block *b) {
  free(b->sample_ids);
  free(b->labels);
  free(b->global_crops);
  free(b->local_crops);
  memset(b, 0, sizeof *b);
}
