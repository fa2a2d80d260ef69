// The GPU AdamW's per-tensor table: for each layout entry its offset, size
// and this step's scalars, formed exactly as dl_adamw_step forms them (Python
// doubles, then float), so the kernel does the same float arithmetic as the
// CPU reference. Pure host logic: tested on the CPU against dl_adamw_step.
#ifndef DISTILL_MODEL_CUDA_ADAMW_SEGMENTS_H
#define DISTILL_MODEL_CUDA_ADAMW_SEGMENTS_H

#include <math.h>
#include <stdint.h>

#include "model/optim.h"

typedef struct dl_adamw_segment {
  uint64_t offset, numel;
  float decay, step_size;
  int frozen;
} dl_adamw_segment;

// segs: mod->layout->count entries, sorted by offset (the layout's order).
// *bc2_sqrt receives sqrt(1 - beta2^step) as a float.
void dl_adamw_segments_fill(dl_adamw_segment *segs, const dl_optim_module *mod, const dl_adamw_config *cfg,
                            long step, double lr, double wd, double last_layer_lr, float *bc2_sqrt);

// The element update, shared by the GPU kernel and the CPU test, so the test
// of the table also tests the kernel's arithmetic.
#ifdef __CUDACC__
#define DL_HOST_DEVICE __host__ __device__
#else
#define DL_HOST_DEVICE
#endif
static inline DL_HOST_DEVICE void dl_adamw_segment_apply(const dl_adamw_segment *s, float *p, float *m, float *v, float g,
                                          float b1, float b2, float eps, float bc2s) {
  const float one_b1 = (float)(1.0 - (double)b1), one_b2 = (float)(1.0 - (double)b2);
  *p *= s->decay;
  *m = *m * b1 + one_b1 * g;
  *v = *v * b2 + one_b2 * g * g;
  const float denom = sqrtf(*v) / bc2s + eps;
  *p = *p - s->step_size * (*m / denom);
}

// The segment holding flat index i (segs sorted by offset, count >= 1): the
// last one starting at or before i. i may fall in the padding after that
// segment's numel, which the update leaves alone.
static inline DL_HOST_DEVICE int dl_adamw_segment_find(const dl_adamw_segment *segs, int count, uint64_t i) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (segs[mid].offset <= i)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

#endif
