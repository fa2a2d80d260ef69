// Slices of one device allocation: a first pass with base NULL measures the
// bytes needed, a second hands out the addresses. Every slice starts 256-byte
// aligned (cuBLASLt's and the vector loads' preference) and none overlaps the
// next. Pure pointer arithmetic: never dereferences.
#ifndef DISTILL_MODEL_CUDA_DEVICE_ARENA_H
#define DISTILL_MODEL_CUDA_DEVICE_ARENA_H

#include <stddef.h>

typedef struct dl_device_arena {
  unsigned char *base;  // NULL: measuring
  size_t off;           // bytes handed out so far
} dl_device_arena;

static inline void *dl_arena_take(dl_device_arena *a, size_t bytes) {
  void *p = a->base ? a->base + a->off : NULL;
  a->off += (bytes + 255) & ~(size_t)255;
  return p;
}

#endif
