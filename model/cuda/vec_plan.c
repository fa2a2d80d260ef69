// Vector widths for the element-wise kernels (see vec_plan.h).
#include "model/cuda/vec_plan.h"

#include <stdint.h>

static int all_aligned(const void *const *ptrs, int count, uintptr_t bytes) {
  for (int i = 0; i < count; i++)
    if (ptrs[i] && (uintptr_t)ptrs[i] % bytes) return 0;
  return 1;
}

dl_vec_split dl_vec_plan(size_t n, size_t elem_bytes, const void *const *ptrs, int count) {
  dl_vec_split p = {0, n, 1};
  if (elem_bytes == 0 || 16 % elem_bytes || !all_aligned(ptrs, count, 16)) return p;
  p.width = (int)(16 / elem_bytes);
  p.head = n - n % (size_t)p.width;
  p.tail = n - p.head;
  return p;
}

int dl_vec_row_width(int d, const void *const *ptrs, int count) {
  return d > 0 && d % 4 == 0 && all_aligned(ptrs, count, 16) ? 4 : 1;
}
