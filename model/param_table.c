#include "model/param_table.h"

#include <stdio.h>

#include "common/err.h"

void dl_param_table_init(dl_vit_layout *t, int capacity) {
  t->entries = dl_calloc((size_t)capacity, sizeof *t->entries);
  t->count = 0;
  t->total = 0;
}

int dl_param_table_add(dl_vit_layout *t, const char *name, int ndim, const int64_t *shape, int no_weight_decay,
                       int layer_id) {
  dl_param_entry *e = &t->entries[t->count];
  snprintf(e->name, sizeof e->name, "%s", name);
  e->ndim = ndim;
  e->numel = 1;
  for (int i = 0; i < ndim; i++) {
    e->shape[i] = shape[i];
    e->numel *= (size_t)shape[i];
  }
  e->offset = t->total;
  t->total += (e->numel + 15) & ~(size_t)15;
  e->no_weight_decay = no_weight_decay;
  e->layer_id = layer_id;
  return t->count++;
}
