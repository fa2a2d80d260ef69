// How the element-wise kernels split their work into 16-byte vectors: pure
// host logic, kept apart from the CUDA code so the CPU tests check it.
#ifndef DISTILL_MODEL_CUDA_VEC_PLAN_H
#define DISTILL_MODEL_CUDA_VEC_PLAN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// A flat kernel over n elements: `head` elements (a multiple of `width`) go
// in 16-byte vectors of `width` elements, the last `tail` one at a time.
// width = 16 / elem_bytes when every pointer is 16-byte aligned, else 1
// (head 0: all scalar). The pointers are those the kernel loads and stores.
typedef struct dl_vec_split {
  size_t head, tail;
  int width;
} dl_vec_split;
dl_vec_split dl_vec_plan(size_t n, size_t elem_bytes, const void *const *ptrs, int count);

// A row kernel over rows of d elements (LayerNorm): 4 elements per access
// when d is a multiple of 4 and every pointer is 16-byte aligned, so each row
// start of a float row is 16-byte and of a bf16 row 8-byte aligned; else 1.
int dl_vec_row_width(int d, const void *const *ptrs, int count);

#ifdef __cplusplus
}
#endif

#endif
