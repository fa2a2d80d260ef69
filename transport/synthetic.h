// Deterministic pseudo-targets, a pure function of (block, resolution): what
// `distill teacher --synthetic D,P` serves instead of a model, and what the
// test student checks every value against.
#ifndef DISTILL_TRANSPORT_SYNTHETIC_H
#define DISTILL_TRANSPORT_SYNTHETIC_H

#include <stdint.h>

#include "common/err.h"
#include "transport/target_block.h"

typedef struct dl_synthetic_spec {
  uint32_t dim;          // D: floats per token
  uint32_t patches;      // P: patch tokens per crop
  uint32_t crops;        // global crops per sample
  uint32_t block_size;   // samples per block
} dl_synthetic_spec;

// Parses "D,P" into spec (crops and block_size untouched). Returns 0 or -1.
int dl_synthetic_parse(const char *s, dl_synthetic_spec *spec, dl_err *err);

// The value of one target element; in [-1, 1).
float dl_synthetic_value(uint64_t block, uint32_t resolution, int tensor, uint64_t index);

// Fills out with tensors "cls" [block_size*crops, D] and "patch"
// [block_size*crops*P, D]. Has the signature of a compute_block callback
// (user is a dl_synthetic_spec*).
int dl_synthetic_compute(void *user, uint64_t block, uint32_t resolution, dl_target_block *out,
                         dl_err *err);

// Compares a received block with what the teacher must have computed; max_abs
// is the largest error the codec may introduce (0 for f32). stride > 1 checks
// only every stride-th value (benchmarks). Returns 0, or -1 with the first
// difference.
int dl_synthetic_verify(const dl_synthetic_spec *spec, const dl_target_block *b, uint64_t block,
                        uint32_t resolution, float max_abs, uint32_t stride, dl_err *err);

#endif
