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
  t->data = zero ? dl_calloc(n > 0 ? n : 1, sizeof(float)) : dl_malloc((n > 0 ? n : 1) * sizeof(float));
  return t->data;
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
  memset(b, 0, sizeof *b);
}
