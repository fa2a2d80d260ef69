// Datasets behind one interface: a count and a thread-safe read(i) giving an
// item's encoded bytes and its label. A recipe names one as KIND:PATH:
//   folder:DIR            image files; class subfolders (sorted) give labels
//   list:FILE             one "path [label]" per line, relative to FILE's folder
//   tar:PATTERN           WebDataset shards, brace ranges like {000..099}
//   idx:DIR[,split=S]     MNIST / Fashion-MNIST IDX files (gzip or plain)
#ifndef DISTILL_DATA_DATASET_H
#define DISTILL_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "data/image.h"

#define DL_LABEL_NONE (-1)

typedef struct dl_item {
  const uint8_t *bytes;   // encoded file, or raw gray pixels when raw_width > 0
  size_t size;
  int label;
  int raw_width, raw_height;
  uint8_t *owned;         // freed by dl_item_release (NULL when bytes are borrowed)
  char name[256];         // for warnings: a path or shard:member
} dl_item;

typedef struct dl_dataset dl_dataset;

// Parses the spec and opens the dataset; a bad spec, a missing path or an
// empty dataset is an error (the CLI turns it into exit 2).
int dl_dataset_open(const char *spec, dl_dataset **out, dl_err *err);
void dl_dataset_close(dl_dataset *ds);
int64_t dl_dataset_count(const dl_dataset *ds);
int dl_dataset_num_classes(const dl_dataset *ds);   // 0 when unlabelled

// Reads item i (0 <= i < count). An unreadable file is an error for this
// item only. Safe to call from several threads at once.
int dl_dataset_read(const dl_dataset *ds, int64_t i, dl_item *item, dl_err *err);
void dl_item_release(dl_item *item);

// Decodes an item to RGB (raw gray items are replicated to three channels).
int dl_item_decode(const dl_item *item, dl_image *out, dl_err *err);

#endif
