#include "transport/target_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file_io.h"
#include "transport/xxhash64.h"

#define INDEX_MAGIC "DLTSIDX1"
#define RECORD_MAGIC "DLTR"
enum { INDEX_HEADER = 16, INDEX_ENTRY = 32, RECORD_HEADER = 16 };
#define MAX_ENTRIES (1u << 26)

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static int cmp_entry(const void *a, const void *b) {
  const dl_store_entry *x = a, *y = b;
  if (x->block != y->block) return x->block < y->block ? -1 : 1;
  return x->resolution < y->resolution ? -1 : x->resolution > y->resolution;
}

int dl_store_index_parse(const uint8_t *data, size_t n, dl_store_entry **entries, uint32_t *count,
                         dl_err *err) {
  *entries = NULL;
  *count = 0;
  if (n < INDEX_HEADER + 8 || memcmp(data, INDEX_MAGIC, 8) != 0)
    return dl_fail(err, "not a target-store index");
  if (rd32(data + 8) != 1) return dl_fail(err, "index version %u (expected 1)", rd32(data + 8));
  uint32_t c = rd32(data + 12);
  if (c > MAX_ENTRIES || n != INDEX_HEADER + (size_t)c * INDEX_ENTRY + 8)
    return dl_fail(err, "index of %zu bytes cannot hold %u entries", n, c);
  if (dl_xxhash64(data, n - 8, 0) != rd64(data + n - 8)) return dl_fail(err, "index checksum mismatch");
  dl_store_entry *e = dl_calloc(c ? c : 1, sizeof *e);
  for (uint32_t i = 0; i < c; i++) {
    const uint8_t *p = data + INDEX_HEADER + (size_t)i * INDEX_ENTRY;
    e[i] = (dl_store_entry){rd64(p), rd32(p + 8), rd32(p + 12), rd64(p + 16), rd64(p + 24)};
  }
  qsort(e, c, sizeof *e, cmp_entry);
  for (uint32_t i = 1; i < c; i++)
    if (cmp_entry(&e[i - 1], &e[i]) == 0) {
      unsigned long long twice = e[i].block;
      free(e);
      return dl_fail(err, "index lists block %llu twice", twice);
    }
  *entries = e;
  *count = c;
  return 0;
}

int dl_store_record_parse(const uint8_t *shard, size_t shard_size, uint64_t offset,
                          uint64_t length, dl_envelope **env, const uint8_t **payload,
                          size_t *payload_bytes, dl_err *err) {
  *env = NULL;
  if (offset > shard_size || length > shard_size - offset || length < RECORD_HEADER)
    return dl_fail(err, "record [%llu, +%llu) outside the %zu-byte shard",
                   (unsigned long long)offset, (unsigned long long)length, shard_size);
  const uint8_t *p = shard + offset;
  if (memcmp(p, RECORD_MAGIC, 4) != 0) return dl_fail(err, "no record at offset %llu",
                                                      (unsigned long long)offset);
  uint64_t env_len = rd32(p + 4), pay_len = rd64(p + 8);
  if (pay_len > length || env_len != length - RECORD_HEADER - pay_len)
    return dl_fail(err, "record sizes do not add up");
  if (dl_envelope_decode(p + RECORD_HEADER, env_len, env, err)) return -1;
  if ((*env)->body_case != DISTILL__ENVELOPE__BODY_BLOCK) {
    dl_envelope_free(*env);
    *env = NULL;
    return dl_fail(err, "record holds no BLOCK");
  }
  *payload = p + RECORD_HEADER + env_len;
  *payload_bytes = (size_t)pay_len;
  return 0;
}

// ---- writer

struct dl_store_writer {
  char *dir;
  size_t shard_bytes;
  dl_store_entry *entries;  // [0, nflushed) sorted and on disk, then pending
  uint32_t n, cap, nflushed;
  uint32_t next_shard;
  uint8_t *buf;  // the pending shard
  size_t len, buf_cap;
};

static void path_of(char *out, size_t n, const char *dir, const char *name) {
  snprintf(out, n, "%s/%s", dir, name);
}

dl_store_writer *dl_store_writer_open(const char *dir, size_t shard_bytes, dl_err *err) {
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    dl_fail(err, "%s: cannot create the target store: %s", dir, strerror(errno));
    return NULL;
  }
  dl_store_writer *w = dl_calloc(1, sizeof *w);
  w->dir = strdup(dir);
  w->shard_bytes = shard_bytes ? shard_bytes : 64u << 20;
  char path[4096];
  path_of(path, sizeof path, dir, "index.dlti");
  struct stat st;
  if (stat(path, &st) == 0) {
    dl_mapped_file f;
    if (dl_map_file(path, &f, err) ||
        dl_store_index_parse(f.data, f.size, &w->entries, &w->n, err)) {
      if (f.data) dl_unmap_file(&f);
      dl_fail_prefix(err, path);
      free(w->dir);
      free(w);
      return NULL;
    }
    dl_unmap_file(&f);
    w->cap = w->nflushed = w->n;
    for (uint32_t i = 0; i < w->n; i++)
      if (w->entries[i].shard + 1 > w->next_shard) w->next_shard = w->entries[i].shard + 1;
  }
  return w;
}

static int writer_has(const dl_store_writer *w, uint64_t block, uint32_t res) {
  dl_store_entry key = {.block = block, .resolution = res};
  if (w->nflushed && bsearch(&key, w->entries, w->nflushed, sizeof key, cmp_entry)) return 1;
  for (uint32_t i = w->nflushed; i < w->n; i++)
    if (w->entries[i].block == block && w->entries[i].resolution == res) return 1;
  return 0;
}

int dl_store_writer_add(dl_store_writer *w, const dl_encoded_block *e, dl_err *err) {
  if (writer_has(w, e->block, e->resolution)) return 0;
  size_t env_len;
  uint8_t *env = dl_encoded_block_pack_envelope(e, &env_len);
  size_t rec = RECORD_HEADER + env_len + e->payload_bytes;
  if (w->len + rec > w->buf_cap) {
    w->buf_cap = (w->len + rec) * 2;
    w->buf = realloc(w->buf, w->buf_cap);
    if (!w->buf) dl_die_input("out of memory");
  }
  uint8_t *p = w->buf + w->len;
  memcpy(p, RECORD_MAGIC, 4);
  wr32(p + 4, (uint32_t)env_len);
  wr64(p + 8, e->payload_bytes);
  memcpy(p + RECORD_HEADER, env, env_len);
  memcpy(p + RECORD_HEADER + env_len, e->payload, e->payload_bytes);
  free(env);
  if (w->n == w->cap) {
    w->cap = w->cap ? 2 * w->cap : 256;
    w->entries = realloc(w->entries, w->cap * sizeof *w->entries);
    if (!w->entries) dl_die_input("out of memory");
  }
  w->entries[w->n++] = (dl_store_entry){e->block, e->resolution, w->next_shard, w->len, rec};
  w->len += rec;
  return w->len >= w->shard_bytes ? dl_store_writer_flush(w, err) : 0;
}

static int write_index(dl_store_writer *w, dl_err *err) {
  size_t n = INDEX_HEADER + (size_t)w->n * INDEX_ENTRY + 8;
  uint8_t *buf = dl_malloc(n);
  memcpy(buf, INDEX_MAGIC, 8);
  wr32(buf + 8, 1);
  wr32(buf + 12, w->n);
  for (uint32_t i = 0; i < w->n; i++) {
    uint8_t *p = buf + INDEX_HEADER + (size_t)i * INDEX_ENTRY;
    wr64(p, w->entries[i].block);
    wr32(p + 8, w->entries[i].resolution);
    wr32(p + 12, w->entries[i].shard);
    wr64(p + 16, w->entries[i].offset);
    wr64(p + 24, w->entries[i].length);
  }
  wr64(buf + n - 8, dl_xxhash64(buf, n - 8, 0));
  char path[4096];
  path_of(path, sizeof path, w->dir, "index.dlti");
  dl_chunk c = {buf, n};
  int rc = dl_write_file_atomic(path, &c, 1, err);
  free(buf);
  return rc;
}

int dl_store_writer_flush(dl_store_writer *w, dl_err *err) {
  if (w->n == w->nflushed) return 0;
  char name[64], path[4096];
  snprintf(name, sizeof name, "shard-%06u.dlts", w->next_shard);
  path_of(path, sizeof path, w->dir, name);
  dl_chunk c = {w->buf, w->len};
  if (dl_write_file_atomic(path, &c, 1, err)) return -1;
  qsort(w->entries, w->n, sizeof *w->entries, cmp_entry);
  w->nflushed = w->n;
  w->next_shard++;
  w->len = 0;
  return write_index(w, err);
}

int dl_store_writer_close(dl_store_writer *w, dl_err *err) {
  if (!w) return 0;
  int rc = dl_store_writer_flush(w, err);
  free(w->entries);
  free(w->buf);
  free(w->dir);
  free(w);
  return rc;
}

// ---- reader

struct dl_store_reader {
  char *dir;
  dl_store_entry *entries;
  uint32_t n;
  uint32_t nshards;
  dl_mapped_file *shards;  // mapped on first use
  uint8_t *mapped;
};

dl_store_reader *dl_store_reader_open(const char *dir, dl_err *err) {
  char path[4096];
  path_of(path, sizeof path, dir, "index.dlti");
  dl_mapped_file f;
  if (dl_map_file(path, &f, err)) return NULL;
  dl_store_reader *r = dl_calloc(1, sizeof *r);
  if (dl_store_index_parse(f.data, f.size, &r->entries, &r->n, err)) {
    dl_fail_prefix(err, path);
    dl_unmap_file(&f);
    free(r);
    return NULL;
  }
  dl_unmap_file(&f);
  r->dir = strdup(dir);
  for (uint32_t i = 0; i < r->n; i++)
    if (r->entries[i].shard + 1 > r->nshards) r->nshards = r->entries[i].shard + 1;
  r->shards = dl_calloc(r->nshards ? r->nshards : 1, sizeof *r->shards);
  r->mapped = dl_calloc(r->nshards ? r->nshards : 1, 1);
  return r;
}

uint32_t dl_store_reader_count(const dl_store_reader *r) { return r->n; }

static int reader_record(dl_store_reader *r, uint64_t block, uint32_t res, dl_envelope **env,
                         const uint8_t **payload, size_t *n, dl_err *err) {
  dl_store_entry key = {.block = block, .resolution = res};
  const dl_store_entry *e = bsearch(&key, r->entries, r->n, sizeof key, cmp_entry);
  if (!e) return 0;
  if (!r->mapped[e->shard]) {
    char name[64], path[4096];
    snprintf(name, sizeof name, "shard-%06u.dlts", e->shard);
    path_of(path, sizeof path, r->dir, name);
    if (dl_map_file(path, &r->shards[e->shard], err)) return -1;
    r->mapped[e->shard] = 1;
  }
  const dl_mapped_file *s = &r->shards[e->shard];
  if (dl_store_record_parse(s->data, s->size, e->offset, e->length, env, payload, n, err)) return -1;
  if ((*env)->block->block != block || (*env)->block->resolution != res) {
    dl_envelope_free(*env);
    return dl_fail(err, "index entry for block %llu points at another block",
                   (unsigned long long)block);
  }
  return 1;
}

int dl_store_reader_get_encoded(dl_store_reader *r, uint64_t block, uint32_t resolution,
                                dl_encoded_block **out, dl_err *err) {
  dl_envelope *env;
  const uint8_t *payload;
  size_t n;
  int rc = reader_record(r, block, resolution, &env, &payload, &n, err);
  if (rc <= 0) return rc;
  *out = dl_encoded_block_from_msg(env->block, payload, n, err);
  dl_envelope_free(env);
  return *out ? 1 : -1;
}

int dl_store_reader_get(dl_store_reader *r, uint64_t block, uint32_t resolution,
                        dl_target_block *out, dl_err *err) {
  dl_envelope *env;
  const uint8_t *payload;
  size_t n;
  int rc = reader_record(r, block, resolution, &env, &payload, &n, err);
  if (rc <= 0) return rc;
  rc = dl_decode_block_msg(env->block, payload, n, out, err) ? -1 : 1;
  dl_envelope_free(env);
  return rc;
}

void dl_store_reader_close(dl_store_reader *r) {
  if (!r) return;
  for (uint32_t i = 0; i < r->nshards; i++)
    if (r->mapped[i]) dl_unmap_file(&r->shards[i]);
  free(r->shards);
  free(r->mapped);
  free(r->entries);
  free(r->dir);
  free(r);
}
