// Internal to data/: the per-kind dataset implementations behind dataset.h.
#ifndef DISTILL_DATA_DATASET_IMPL_H
#define DISTILL_DATA_DATASET_IMPL_H

#include "data/dataset.h"

typedef struct dl_dataset_ops {
  int (*read)(const dl_dataset *ds, int64_t i, dl_item *item, dl_err *err);
  void (*close)(dl_dataset *ds);
} dl_dataset_ops;

struct dl_dataset {
  const dl_dataset_ops *ops;
  int64_t count;
  int num_classes;
  void *impl;
};

// A list of files with labels, shared by folder: and list: datasets.
typedef struct dl_file_list {
  char **paths;
  int *labels;
  int64_t count, cap;
} dl_file_list;

void dl_file_list_add(dl_file_list *l, const char *path, int label);
void dl_file_list_free(dl_file_list *l);
// Takes ownership of the list.
dl_dataset *dl_dataset_from_file_list(dl_file_list *list, int num_classes);

int dl_has_image_extension(const char *name);

int dl_open_folder(const char *dir, dl_dataset **out, dl_err *err);
int dl_open_list(const char *file, dl_dataset **out, dl_err *err);
int dl_open_tar(const char *pattern, dl_dataset **out, dl_err *err);
int dl_open_idx(const char *args, dl_dataset **out, dl_err *err);

#endif
