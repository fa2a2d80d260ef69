#include "transport/target_block.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"

static float *add(dl_target_block *b, const char *name, uint32_t rows, uint32_t cols, int zero) {
  if (b->ntensors >= DL_MAX_TENSORS || strlen(name) >= DL_TENSOR_NAME_MAX) return NULL;
  dl_tensor *t = &b->tensors[b->ntensors++];
  snprintf(t->name, sizeof t->name, "%s", name);
  t->rows = rows;
  t->cols = cols;
  size_t n = (size_t)rows * cols;
  if (b->arena && n <= (b->arena_bytes - b->arena_used) / sizeof(float)) {
    t->data = (float *)(b->arena + b->arena_used);
    t->borrowed = 1;
    b->arena_used += n * sizeof(float);
    if (zero) memset(t->data, 0, n * sizeof(float));
    return t->data;
  }
  t->data = zero ? dl_calloc(n > 0 ? n : 1, sizeof(float)) : dl_malloc((n > 0 ? n : 1) * sizeof(float));
  return t->data;
}

int dl_target_block_reserve(dl_target_block *b, size_t bytes) {
  if (b->ntensors > 0 || b->arena) return -1;
  b->arena = dl_malloc(bytes > 0 ? bytes : 1);
  b->arena_bytes = bytes;
  b->arena_used = 0;
  return 0;
}

float *dl_target_block_add(dl_target_block *b, const char *name, uint32_t rows, uint32_t cols) {
  return add(b, name, rows, cols, 1);
}

float *dl_target_block_add_uninitialized(dl_target_block *b, const char *name, uint32_t rows,
                                         uint32_t cols) {
  return add(b, name, rows, cols, 0);
}

const dl_tensor *dl_target_block_find(const dl_target_block *b, const char *name) {
  for (int i = 0; i < b->ntensors; i++)
    if (strcmp(b->tensors[i].name, name) == 0) return &b->tensors[i];
  return NULL;
}

void dl_target_block_free(dl_target_block *b) {
  for (int i = 0; i < b->ntensors; i++)
    if (!b->tensors[i].borrowed) free(b->tensors[i].data);
  if (b->release_owner) b->release_owner(b->owner);
  free(b->arena);
  memset(b, 0, sizeof *b);
}
