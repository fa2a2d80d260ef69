// Dataset spec parsing and the shared file-list dataset (folder:, list:).
#include "data/dataset.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/file_io.h"
#include "data/dataset_impl.h"

int dl_dataset_open(const char *spec, dl_dataset **out, dl_err *err) {
  *out = NULL;
  const char *colon = strchr(spec, ':');
  if (!colon || colon[1] == '\0')
    return dl_fail(err, "dataset '%s': expected KIND:PATH with KIND one of folder, list, tar, idx", spec);
  size_t kind_len = (size_t)(colon - spec);
  const char *arg = colon + 1;
  int rc;
  if (kind_len == 6 && strncmp(spec, "folder", 6) == 0) rc = dl_open_folder(arg, out, err);
  else if (kind_len == 4 && strncmp(spec, "list", 4) == 0) rc = dl_open_list(arg, out, err);
  else if (kind_len == 3 && strncmp(spec, "tar", 3) == 0) rc = dl_open_tar(arg, out, err);
  else if (kind_len == 3 && strncmp(spec, "idx", 3) == 0) rc = dl_open_idx(arg, out, err);
  else
    return dl_fail(err, "dataset '%s': unknown kind '%.*s' (folder, list, tar, idx)", spec, (int)kind_len, spec);
  if (rc == 0 && dl_dataset_count(*out) == 0) {
    dl_dataset_close(*out);
    *out = NULL;
    return dl_fail(err, "dataset '%s' holds no images", spec);
  }
  return rc;
}

void dl_dataset_close(dl_dataset *ds) {
  if (ds) ds->ops->close(ds);
}

int64_t dl_dataset_count(const dl_dataset *ds) { return ds->count; }
int dl_dataset_num_classes(const dl_dataset *ds) { return ds->num_classes; }

int dl_dataset_read(const dl_dataset *ds, int64_t i, dl_item *item, dl_err *err) {
  memset(item, 0, sizeof *item);
  item->label = DL_LABEL_NONE;
  DL_ASSERT(i >= 0 && i < ds->count);
  return ds->ops->read(ds, i, item, err);
}

void dl_item_release(dl_item *item) {
  free(item->owned);
  item->owned = NULL;
  item->bytes = NULL;
}

int dl_item_decode(const dl_item *item, dl_image *out, dl_err *err) {
  if (item->raw_width > 0) {
    dl_image_alloc(out, item->raw_width, item->raw_height);
    size_t n = (size_t)item->raw_width * item->raw_height;
    for (size_t i = 0; i < n; i++) out->rgb[3 * i] = out->rgb[3 * i + 1] = out->rgb[3 * i + 2] = item->bytes[i];
    return 0;
  }
  if (dl_image_decode(item->bytes, item->size, out, err) != 0) return dl_fail_prefix(err, item->name);
  return 0;
}

int dl_has_image_extension(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 || strcasecmp(dot, ".png") == 0);
}

void dl_file_list_add(dl_file_list *l, const char *path, int label) {
  if (l->count == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 64;
    char **p = realloc(l->paths, sizeof(char *) * l->cap);
    int *lb = realloc(l->labels, sizeof(int) * l->cap);
    if (!p || !lb) dl_die_input("out of memory listing dataset files");
    l->paths = p, l->labels = lb;
  }
  l->paths[l->count] = strdup(path);
  l->labels[l->count++] = label;
}

void dl_file_list_free(dl_file_list *l) {
  for (int64_t i = 0; i < l->count; i++) free(l->paths[i]);
  free(l->paths);
  free(l->labels);
  memset(l, 0, sizeof *l);
}

static int file_list_read(const dl_dataset *ds, int64_t i, dl_item *item, dl_err *err) {
  const dl_file_list *l = ds->impl;
  snprintf(item->name, sizeof item->name, "%s", l->paths[i]);
  item->label = l->labels[i];
  dl_mapped_file f;
  if (dl_map_file(l->paths[i], &f, err) != 0) return -1;
  // A private copy: the mapping would go stale if the file were replaced.
  item->owned = dl_malloc(f.size ? f.size : 1);
  if (f.size) memcpy(item->owned, f.data, f.size);
  item->bytes = item->owned;
  item->size = f.size;
  dl_unmap_file(&f);
  return 0;
}

static void file_list_close(dl_dataset *ds) {
  dl_file_list_free(ds->impl);
  free(ds->impl);
  free(ds);
}

static const dl_dataset_ops kFileListOps = {file_list_read, file_list_close};

dl_dataset *dl_dataset_from_file_list(dl_file_list *list, int num_classes) {
  dl_dataset *ds = dl_calloc(1, sizeof *ds);
  dl_file_list *own = dl_malloc(sizeof *own);
  *own = *list;
  memset(list, 0, sizeof *list);
  ds->ops = &kFileListOps;
  ds->count = own->count;
  ds->num_classes = num_classes;
  ds->impl = own;
  return ds;
}
