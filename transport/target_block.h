// A block of teacher targets as float32 matrices: what the teacher's
// compute_block callback fills and what the student hands to its trainer.
// Block b holds samples [b * block_size, (b + 1) * block_size) of the sample
// stream (DESIGN.md section 3).
#ifndef DISTILL_TRANSPORT_TARGET_BLOCK_H
#define DISTILL_TRANSPORT_TARGET_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#define DL_MAX_TENSORS 8
#define DL_TENSOR_NAME_MAX 32

typedef struct dl_tensor {
  char name[DL_TENSOR_NAME_MAX];  // e.g. "cls", "patch"
  uint32_t rows, cols;
  float *data;    // rows * cols, row-major
  int borrowed;   // data lies in the block's owner buffer, not its own allocation
} dl_tensor;

typedef struct dl_target_block {
  uint64_t block;
  uint32_t resolution;
  uint64_t first_sample;
  uint32_t num_samples;
  int ntensors;
  dl_tensor tensors[DL_MAX_TENSORS];
  // Set when tensors borrow a received buffer (a float32 tensor is used where
  // it arrived, without a copy): released by dl_target_block_free.
  void *owner;
  void (*release_owner)(void *owner);
  // Set by dl_target_block_reserve: tensors added while they fit are laid out
  // back to back here, which is the float32 payload layout, so the teacher
  // can send this buffer as it is (dl_encode_block_take) instead of copying.
  uint8_t *arena;
  size_t arena_bytes, arena_used;
} dl_target_block;

// Adds a zeroed rows x cols tensor and returns its data for the caller to
// fill; NULL when the block already has DL_MAX_TENSORS tensors or the name is
// too long.
float *dl_target_block_add(dl_target_block *b, const char *name, uint32_t rows, uint32_t cols);
// The same without zeroing, for decoders that write every value.
float *dl_target_block_add_uninitialized(dl_target_block *b, const char *name, uint32_t rows,
                                         uint32_t cols);
// Allocates one buffer of `bytes` for the tensors added next (in order, back
// to back, while they fit; later ones get their own allocation). Call on a
// block without tensors. Returns 0, or -1 when the block already has tensors
// or an arena.
int dl_target_block_reserve(dl_target_block *b, size_t bytes);
const dl_tensor *dl_target_block_find(const dl_target_block *b, const char *name);
// Frees the tensors (and releases the owner) and zeroes the block (safe on a
// zeroed block).
void dl_target_block_free(dl_target_block *b);

#endif
