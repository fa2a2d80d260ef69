#include "model/cuda/loss_chunks.h"

#include <stdlib.h>

int dl_loss_chunk_rows(int rows, int k, size_t elem_bytes, size_t budget_bytes) {
  if (rows <= 0) return 0;
  const size_t row_bytes = (size_t)(k > 0 ? k : 1) * (elem_bytes ? elem_bytes : 1);
  size_t n = budget_bytes / row_bytes;
  const size_t by_elems = DL_LOSS_CHUNK_MAX_ELEMS / (size_t)(k > 0 ? k : 1);
  if (n > by_elems) n = by_elems;
  if (n < 1) n = 1;
  return n < (size_t)rows ? (int)n : rows;
}

int dl_loss_chunk_count(int rows, int chunk_rows) {
  if (rows <= 0 || chunk_rows <= 0) return 0;
  return (rows + chunk_rows - 1) / chunk_rows;
}

size_t dl_loss_chunk_budget(void) {
  const char *v = getenv("DISTILL_CUDA_LOSS_CHUNK_BYTES");
  if (v && *v) {
    char *end;
    const unsigned long long b = strtoull(v, &end, 10);
    if (*end == '\0' && b > 0) return (size_t)b;
  }
  return DL_LOSS_CHUNK_DEFAULT_BYTES;
}
