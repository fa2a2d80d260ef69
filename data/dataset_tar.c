// tar:PATTERN datasets: WebDataset-style shards read in place (mapped). A
// sample is a run of consecutive members sharing a key (the member name up
// to the first dot of its base name): KEY.jpg|jpeg|png, optional KEY.cls.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/file_io.h"
#include "data/dataset_impl.h"

typedef struct tar_sample {
  int shard;
  size_t offset, size;   // the image member's bytes inside the shard
  int label;
  char name[200];
} tar_sample;

typedef struct tar_dataset {
  dl_mapped_file *shards;
  char **shard_paths;
  int num_shards;
  tar_sample *samples;
  int64_t count, cap;
} tar_dataset;

// Expands one {A..B} range (zero padded to A's width) into shard paths.
static int expand_pattern(const char *pattern, char ***paths, int *n, dl_err *err) {
  const char *open = strchr(pattern, '{');
  if (!open) {
    *paths = dl_malloc(sizeof(char *));
    (*paths)[0] = strdup(pattern);
    *n = 1;
    return 0;
  }
  long lo, hi;
  int width, consumed;
  if (sscanf(open, "{%ld..%ld}%n", &lo, &hi, &consumed) != 2 || lo < 0 || hi < lo || hi - lo > 1000000)
    return dl_fail(err, "tar pattern '%s': expected one {FIRST..LAST} range of shard numbers", pattern);
  width = (int)(strchr(open, '.') - open - 1);
  const char *tail = open + consumed;
  if (strchr(tail, '{')) return dl_fail(err, "tar pattern '%s': only one {FIRST..LAST} range is supported", pattern);
  *n = (int)(hi - lo + 1);
  *paths = dl_malloc(sizeof(char *) * (size_t)*n);
  for (long v = lo; v <= hi; v++) {
    size_t len = strlen(pattern) + 32;
    char *p = dl_malloc(len);
    snprintf(p, len, "%.*s%0*ld%s", (int)(open - pattern), pattern, width, v, tail);
    (*paths)[v - lo] = p;
  }
  return 0;
}

static size_t parse_octal(const uint8_t *field, int len) {
  size_t v = 0;
  for (int i = 0; i < len && field[i] >= '0' && field[i] <= '7'; i++) v = v * 8 + (size_t)(field[i] - '0');
  return v;
}

static void add_sample(tar_dataset *t, const tar_sample *s) {
  if (t->count == t->cap) {
    t->cap = t->cap ? 2 * t->cap : 256;
    tar_sample *grown = realloc(t->samples, sizeof(tar_sample) * t->cap);
    if (!grown) dl_die_input("out of memory indexing tar shards");
    t->samples = grown;
  }
  t->samples[t->count++] = *s;
}

// Key of a member name: up to the first dot of the base name.
static size_t key_length(const char *name) {
  const char *base = strrchr(name, '/');
  base = base ? base + 1 : name;
  const char *dot = strchr(base, '.');
  return dot ? (size_t)(dot - name) : strlen(name);
}

static int index_shard(tar_dataset *t, int shard, dl_err *err) {
  const dl_mapped_file *f = &t->shards[shard];
  const char *path = t->shard_paths[shard];
  tar_sample cur = {.shard = -1};
  char cur_key[256] = "";
  for (size_t pos = 0; pos + 512 <= f->size;) {
    const uint8_t *h = f->data + pos;
    if (h[0] == 0) break;   // end-of-archive blocks
    char name[256];
    snprintf(name, sizeof name, "%.*s%s%.*s", (int)strnlen((const char *)h + 345, 155), h + 345,
             h[345] ? "/" : "", (int)strnlen((const char *)h, 100), h);
    size_t size = parse_octal(h + 124, 12);
    if (size > f->size - pos - 512) return dl_fail(err, "tar shard '%s': member '%s' runs past the end", path, name);
    char type = (char)h[156];
    if (type == '0' || type == '\0') {
      size_t klen = key_length(name);
      if (klen >= sizeof cur_key) klen = sizeof cur_key - 1;
      if (strncmp(cur_key, name, klen) != 0 || cur_key[klen] != '\0') {
        if (cur.shard >= 0) add_sample(t, &cur);
        cur = (tar_sample){.shard = -1, .label = DL_LABEL_NONE};
        memcpy(cur_key, name, klen);
        cur_key[klen] = '\0';
      }
      const char *ext = name + klen;
      if (dl_has_image_extension(name) && cur.shard < 0) {
        cur.shard = shard, cur.offset = pos + 512, cur.size = size;
        snprintf(cur.name, sizeof cur.name, "%s", name);
      } else if (strcasecmp(ext, ".cls") == 0) {
        char text[24] = {0};
        memcpy(text, h + 512, size < sizeof text - 1 ? size : sizeof text - 1);
        char *end;
        long v = strtol(text, &end, 10);
        if (end != text && v >= 0 && v < 1000000000) cur.label = (int)v;
      }
    }
    pos += 512 + (size + 511) / 512 * 512;
  }
  if (cur.shard >= 0) add_sample(t, &cur);
  return 0;
}

static int tar_read(const dl_dataset *ds, int64_t i, dl_item *item, dl_err *err) {
  (void)err;
  const tar_dataset *t = ds->impl;
  const tar_sample *s = &t->samples[i];
  item->bytes = t->shards[s->shard].data + s->offset;
  item->size = s->size;
  item->label = s->label;
  snprintf(item->name, sizeof item->name, "%s:%s", t->shard_paths[s->shard], s->name);
  return 0;
}

static void tar_close(dl_dataset *ds) {
  tar_dataset *t = ds->impl;
  for (int i = 0; i < t->num_shards; i++) {
    dl_unmap_file(&t->shards[i]);
    free(t->shard_paths[i]);
  }
  free(t->shards);
  free(t->shard_paths);
  free(t->samples);
  free(t);
  free(ds);
}

static const dl_dataset_ops kTarOps = {tar_read, tar_close};

int dl_open_tar(const char *pattern, dl_dataset **out, dl_err *err) {
  tar_dataset *t = dl_calloc(1, sizeof *t);
  dl_dataset *ds = dl_calloc(1, sizeof *ds);
  ds->ops = &kTarOps;
  ds->impl = t;
  if (expand_pattern(pattern, &t->shard_paths, &t->num_shards, err) != 0) {
    free(t), free(ds);
    return -1;
  }
  t->shards = dl_calloc((size_t)t->num_shards, sizeof(dl_mapped_file));
  int max_label = -1;
  for (int i = 0; i < t->num_shards; i++)
    if (dl_map_file(t->shard_paths[i], &t->shards[i], err) != 0 || index_shard(t, i, err) != 0) {
      tar_close(ds);
      return -1;
    }
  for (int64_t i = 0; i < t->count; i++)
    if (t->samples[i].label > max_label) max_label = t->samples[i].label;
  ds->count = t->count;
  ds->num_classes = max_label + 1;
  *out = ds;
  return 0;
}
