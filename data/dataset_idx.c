// idx:DIR[,split=train|test]: MNIST-style IDX files, gzip-compressed or not
// (zlib's gzread reads both), loaded whole at open: 60k 28x28 images are 47 MB.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data/dataset_impl.h"

typedef struct idx_dataset {
  uint8_t *pixels, *labels;
  int rows, cols;
} idx_dataset;

// Reads a whole gzip (or plain) file; tries PATH then PATH.gz.
static uint8_t *read_gz(const char *dir, const char *base, size_t *size, dl_err *err) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.gz", dir, base);
  gzFile g = gzopen(path, "rb");
  if (!g) {
    snprintf(path, sizeof path, "%s/%s", dir, base);
    g = gzopen(path, "rb");
  }
  if (!g) {
    dl_fail(err, "idx dataset: cannot open %s/%s[.gz]", dir, base);
    return NULL;
  }
  size_t cap = 1 << 20, n = 0;
  uint8_t *buf = dl_malloc(cap);
  for (;;) {
    if (n == cap) {
      if (cap >= ((size_t)1 << 32)) break;
      cap *= 2;
      uint8_t *grown = realloc(buf, cap);
      if (!grown) dl_die_input("out of memory reading %s", path);
      buf = grown;
    }
    int got = gzread(g, buf + n, (unsigned)(cap - n > (1u << 30) ? (1u << 30) : cap - n));
    if (got < 0) {
      gzclose(g);
      free(buf);
      dl_fail(err, "idx dataset: %s: corrupt gzip data", path);
      return NULL;
    }
    if (got == 0) break;
    n += (size_t)got;
  }
  gzclose(g);
  *size = n;
  return buf;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int idx_read(const dl_dataset *ds, int64_t i, dl_item *item, dl_err *err) {
  (void)err;
  const idx_dataset *x = ds->impl;
  item->raw_width = x->cols;
  item->raw_height = x->rows;
  item->size = (size_t)x->rows * x->cols;
  item->bytes = x->pixels + 16 + (size_t)i * item->size;
  item->label = x->labels[8 + i];
  snprintf(item->name, sizeof item->name, "idx item %lld", (long long)i);
  return 0;
}

static void idx_close(dl_dataset *ds) {
  idx_dataset *x = ds->impl;
  free(x->pixels);
  free(x->labels);
  free(x);
  free(ds);
}

static const dl_dataset_ops kIdxOps = {idx_read, idx_close};

int dl_open_idx(const char *args, dl_dataset **out, dl_err *err) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", args);
  const char *split = "train";
  char *comma = strchr(dir, ',');
  if (comma) {
    *comma = '\0';
    if (strcmp(comma + 1, "split=train") == 0) split = "train";
    else if (strcmp(comma + 1, "split=test") == 0) split = "t10k";
    else return dl_fail(err, "idx dataset '%s': unknown option '%s' (split=train or split=test)", args, comma + 1);
  }
  char base[64];
  size_t npix, nlab;
  snprintf(base, sizeof base, "%s-images-idx3-ubyte", split);
  uint8_t *pixels = read_gz(dir, base, &npix, err);
  if (!pixels) return -1;
  snprintf(base, sizeof base, "%s-labels-idx1-ubyte", split);
  uint8_t *labels = read_gz(dir, base, &nlab, err);
  if (!labels) {
    free(pixels);
    return -1;
  }
  uint32_t count = npix >= 16 ? be32(pixels + 4) : 0;
  uint32_t rows = npix >= 16 ? be32(pixels + 8) : 0, cols = npix >= 16 ? be32(pixels + 12) : 0;
  int ok = npix >= 16 && nlab >= 8 && be32(pixels) == 0x803 && be32(labels) == 0x801 &&
           be32(labels + 4) == count && rows > 0 && cols > 0 && rows <= 4096 && cols <= 4096 &&
           npix - 16 >= (size_t)count * rows * cols && nlab - 8 >= count;
  if (!ok) {
    free(pixels);
    free(labels);
    return dl_fail(err, "idx dataset '%s': files are not matching IDX image/label files", dir);
  }
  idx_dataset *x = dl_malloc(sizeof *x);
  *x = (idx_dataset){pixels, labels, (int)rows, (int)cols};
  dl_dataset *ds = dl_calloc(1, sizeof *ds);
  ds->ops = &kIdxOps;
  ds->impl = x;
  ds->count = count;
  int max_label = 0;
  for (uint32_t i = 0; i < count; i++)
    if (labels[8 + i] > max_label) max_label = labels[8 + i];
  ds->num_classes = max_label + 1;
  *out = ds;
  return 0;
}
