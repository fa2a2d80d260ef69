#include "transport/synthetic.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dl_synthetic_parse(const char *s, dl_synthetic_spec *spec, dl_err *err) {
  char *end;
  unsigned long d = strtoul(s, &end, 10);
  if (end == s || *end != ',') return dl_fail(err, "--synthetic expects D,P, got '%s'", s);
  const char *p_str = end + 1;
  unsigned long p = strtoul(p_str, &end, 10);
  if (end == p_str || *end || d == 0 || d > 65536 || p > 65536)
    return dl_fail(err, "--synthetic expects D,P with 1 <= D <= 65536, 0 <= P <= 65536, got '%s'", s);
  spec->dim = (uint32_t)d;
  spec->patches = (uint32_t)p;
  return 0;
}

static inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static inline uint64_t tensor_seed(uint64_t block, uint32_t resolution, int tensor) {
  return mix64(block * 0x9E3779B97F4A7C15ULL + ((uint64_t)resolution << 8) + (uint64_t)tensor);
}

// A 32-bit integer hash (lowbias32): cheap enough to vectorize, so the
// synthetic teacher is never the bottleneck of a transport benchmark.
static inline float value_of(uint64_t seed, uint64_t index) {
  uint32_t h = (uint32_t)seed ^ (uint32_t)(seed >> 32) ^ ((uint32_t)index * 0x9E3779B1u);
  h ^= h >> 16;
  h *= 0x7FEB352Du;
  h ^= h >> 15;
  h *= 0x846CA68Bu;
  h ^= h >> 16;
  return (float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f;
}

float dl_synthetic_value(uint64_t block, uint32_t resolution, int tensor, uint64_t index) {
  return value_of(tensor_seed(block, resolution, tensor), index);
}

static void fill(float *x, size_t n, uint64_t block, uint32_t res, int tensor) {
  uint64_t seed = tensor_seed(block, res, tensor);
  for (size_t i = 0; i < n; i++) x[i] = value_of(seed, i);
}

int dl_synthetic_compute(void *user, uint64_t block, uint32_t resolution, dl_target_block *out,
                         dl_err *err) {
  const dl_synthetic_spec *s = user;
  (void)err;
  uint32_t tokens = s->block_size * s->crops;
  out->block = block;
  out->resolution = resolution;
  out->first_sample = block * s->block_size;
  out->num_samples = s->block_size;
  // One buffer in the float32 payload's layout: sent as it is with codec f32.
  dl_target_block_reserve(out, ((size_t)tokens * s->dim + (size_t)tokens * s->patches * s->dim) * sizeof(float));
  fill(dl_target_block_add_uninitialized(out, "cls", tokens, s->dim), (size_t)tokens * s->dim, block, resolution, 0);
  if (s->patches)
    fill(dl_target_block_add_uninitialized(out, "patch", tokens * s->patches, s->dim),
         (size_t)tokens * s->patches * s->dim, block, resolution, 1);
  return 0;
}

static int verify_tensor(const dl_target_block *b, const char *name, int tensor, uint32_t rows,
                         uint32_t cols, uint64_t block, uint32_t res, float max_abs,
                         uint32_t stride, dl_err *err) {
  const dl_tensor *t = dl_target_block_find(b, name);
  if (!t) return dl_fail(err, "block %llu: no tensor '%s'", (unsigned long long)block, name);
  if (t->rows != rows || t->cols != cols)
    return dl_fail(err, "block %llu: '%s' is %u x %u, expected %u x %u", (unsigned long long)block,
                   name, t->rows, t->cols, rows, cols);
  size_t n = (size_t)rows * cols;
  uint64_t seed = tensor_seed(block, res, tensor);
  for (size_t i = 0; i < n; i += stride) {
    float want = value_of(seed, i);
    if (!(fabsf(t->data[i] - want) <= max_abs))
      return dl_fail(err, "block %llu: '%s'[%zu] = %g, expected %g", (unsigned long long)block,
                     name, i, t->data[i], want);
  }
  return 0;
}

int dl_synthetic_verify(const dl_synthetic_spec *s, const dl_target_block *b, uint64_t block,
                        uint32_t res, float max_abs, uint32_t stride, dl_err *err) {
  if (b->block != block || b->resolution != res)
    return dl_fail(err, "got block %llu @%u, expected %llu @%u", (unsigned long long)b->block,
                   b->resolution, (unsigned long long)block, res);
  if (b->first_sample != block * s->block_size || b->num_samples != s->block_size)
    return dl_fail(err, "block %llu: samples [%llu, +%u), expected [%llu, +%u)",
                   (unsigned long long)block, (unsigned long long)b->first_sample, b->num_samples,
                   (unsigned long long)(block * s->block_size), s->block_size);
  if (stride == 0) stride = 1;
  uint32_t tokens = s->block_size * s->crops;
  if (verify_tensor(b, "cls", 0, tokens, s->dim, block, res, max_abs, stride, err)) return -1;
  if (s->patches &&
      verify_tensor(b, "patch", 1, tokens * s->patches, s->dim, block, res, max_abs, stride, err))
    return -1;
  if (b->ntensors != (s->patches ? 2 : 1))
    return dl_fail(err, "block %llu: %d tensors", (unsigned long long)block, b->ntensors);
  return 0;
}
