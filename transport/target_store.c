#include "transport/target_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file_io.h"
#include "transport/xxhash64.h"

#define INDEX_MAGIC "DLTSIDX1"
#define INDEX_NAME "index.dlti"
enum {
  INDEX_HEADER = 16,
  INDEX_IDENTITY = 8 + 8 + 4 + 4 + DL_STORE_CODEC_TEXT_MAX,
  INDEX_ENTRY = 32,
  INDEX_CHECKSUM = 8,
  INDEX_VERSION_PLAIN = 1,     // no identity
  INDEX_VERSION_IDENTITY = 2,  // written now
  ZSTD_LEVEL_MAX = 22,
  TARGET_KIND_MAX = 2,
};
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

// Entries [0, nsorted) are sorted, [nsorted, n) are not (a writer's pending shard).
static const dl_store_entry *find_entry(const dl_store_entry *entries, uint32_t nsorted,
                                        uint32_t n, uint64_t block, uint32_t res) {
  dl_store_entry key = {.block = block, .resolution = res};
  const dl_store_entry *e = nsorted ? bsearch(&key, entries, nsorted, sizeof key, cmp_entry) : NULL;
  for (uint32_t i = nsorted; !e && i < n; i++)
    if (cmp_entry(&entries[i], &key) == 0) e = &entries[i];
  return e;
}

static void path_of(char *out, size_t n, const char *dir, const char *name) {
  snprintf(out, n, "%s/%s", dir, name);
}

static void shard_path(char *out, size_t n, const char *dir, uint32_t shard) {
  char name[64];
  snprintf(name, sizeof name, "shard-%06u.dlts", shard);
  path_of(out, n, dir, name);
}

// ---- identity

static const char *target_kind_name(int kind) {
  static const char *names[] = {"features", "prototypes", "both"};
  return kind >= 0 && kind <= TARGET_KIND_MAX ? names[kind] : "unknown";
}

int dl_store_identity_check(const dl_store_identity *id, dl_err *err) {
  if (!id) return dl_fail(err, "no store identity given (stream, weights, codec, zstd level, target kind)");
  size_t len = strnlen(id->codec, sizeof id->codec);
  if (len == 0) return dl_fail(err, "store identity without a codec");
  if (len == sizeof id->codec)
    return dl_fail(err, "store identity: codec text longer than %d characters",
                   DL_STORE_CODEC_TEXT_MAX - 1);
  if (id->zstd_level < 0 || id->zstd_level > ZSTD_LEVEL_MAX)
    return dl_fail(err, "store identity: zstd level %d outside 0..%d", id->zstd_level,
                   ZSTD_LEVEL_MAX);
  if (id->target_kind < 0 || id->target_kind > TARGET_KIND_MAX)
    return dl_fail(err, "store identity: target kind %d (expected 0 features, 1 prototypes, 2 both)",
                   id->target_kind);
  return 0;
}

enum { ID_STREAM, ID_WEIGHTS, ID_CODEC, ID_ZSTD, ID_KIND, ID_FIELDS };

// One field as the refusal names it, e.g. "stream 00000000001a2b3c" or "codec f16".
static void identity_field_text(const dl_store_identity *id, int field, char *out, size_t n) {
  switch (field) {
    case ID_STREAM: snprintf(out, n, "stream %016llx", (unsigned long long)id->stream_hash); break;
    case ID_WEIGHTS: snprintf(out, n, "weights %016llx", (unsigned long long)id->weights_hash); break;
    case ID_CODEC: snprintf(out, n, "codec %s", id->codec); break;
    case ID_ZSTD: snprintf(out, n, "zstd level %d", id->zstd_level); break;
    default: snprintf(out, n, "target kind %s", target_kind_name(id->target_kind)); break;
  }
}

// "a, b and c" over the given fields of id.
static void join_fields(const dl_store_identity *id, const int *fields, int n, char *out,
                        size_t cap) {
  size_t used = 0;
  out[0] = '\0';
  for (int i = 0; i < n && used < cap; i++) {
    char text[DL_STORE_CODEC_TEXT_MAX + 32];
    identity_field_text(id, fields[i], text, sizeof text);
    const char *sep = i == 0 ? "" : i == n - 1 ? " and " : ", ";
    int w = snprintf(out + used, cap - used, "%s%s", sep, text);
    used += w > 0 ? (size_t)w : 0;
  }
}

// Refuses a store whose identity differs from want (who: how the message
// names the side that wants it). want NULL accepts any store.
static int check_store_identity(const char *dir, const dl_store_index *ix,
                                const dl_store_identity *want, const char *who, dl_err *err) {
  if (!want) return 0;
  if (!ix->has_identity)
    return dl_fail(err, "%s: the store was written before stores recorded their identity "
                        "(index version 1), so nothing shows its blocks fit; use a new store",
                   dir);
  int differ[ID_FIELDS], n = 0;
  for (int f = 0; f < ID_FIELDS; f++) {
    char held[DL_STORE_CODEC_TEXT_MAX + 32], wanted[DL_STORE_CODEC_TEXT_MAX + 32];
    identity_field_text(&ix->identity, f, held, sizeof held);
    identity_field_text(want, f, wanted, sizeof wanted);
    if (strcmp(held, wanted) != 0) differ[n++] = f;
  }
  if (n == 0) return 0;
  char held[512], wanted[512];
  join_fields(&ix->identity, differ, n, held, sizeof held);
  join_fields(want, differ, n, wanted, sizeof wanted);
  return dl_fail(err, "%s: the store holds blocks of %s; %s %s", dir, held, who, wanted);
}

// ---- index

static void read_identity(const uint8_t *p, dl_store_identity *id) {
  memset(id, 0, sizeof *id);
  id->stream_hash = rd64(p);
  id->weights_hash = rd64(p + 8);
  id->zstd_level = (int32_t)rd32(p + 16);
  id->target_kind = (int32_t)rd32(p + 20);
  memcpy(id->codec, p + 24, DL_STORE_CODEC_TEXT_MAX);
}

static void write_identity(uint8_t *p, const dl_store_identity *id) {
  wr64(p, id->stream_hash);
  wr64(p + 8, id->weights_hash);
  wr32(p + 16, (uint32_t)id->zstd_level);
  wr32(p + 20, (uint32_t)id->target_kind);
  memset(p + 24, 0, DL_STORE_CODEC_TEXT_MAX);
  memcpy(p + 24, id->codec, strnlen(id->codec, DL_STORE_CODEC_TEXT_MAX - 1));
}

// Reads the header and identity; *entries_at: where the entries start.
static int parse_index_head(const uint8_t *data, size_t n, dl_store_index *out,
                            size_t *entries_at, dl_err *err) {
  if (n < INDEX_HEADER + INDEX_CHECKSUM || memcmp(data, INDEX_MAGIC, 8) != 0)
    return dl_fail(err, "not a target-store index");
  out->version = rd32(data + 8);
  if (out->version != INDEX_VERSION_PLAIN && out->version != INDEX_VERSION_IDENTITY)
    return dl_fail(err, "index version %u (expected 1 or 2)", out->version);
  out->count = rd32(data + 12);
  *entries_at = INDEX_HEADER;
  if (out->version == INDEX_VERSION_PLAIN) return 0;
  if (n < INDEX_HEADER + INDEX_IDENTITY + INDEX_CHECKSUM)
    return dl_fail(err, "index of %zu bytes cannot hold its identity", n);
  read_identity(data + INDEX_HEADER, &out->identity);
  out->has_identity = true;
  *entries_at += INDEX_IDENTITY;
  if (strnlen(out->identity.codec, DL_STORE_CODEC_TEXT_MAX) == DL_STORE_CODEC_TEXT_MAX)
    return dl_fail(err, "index identity: codec text not terminated");
  return dl_store_identity_check(&out->identity, err);
}

static int check_entries(const dl_store_index *ix, dl_err *err) {
  for (uint32_t i = 0; i < ix->count; i++)
    // Every shard holds at least one block, so a store of N blocks has at
    // most N shards; this also bounds what a reader allocates per shard.
    if (ix->entries[i].shard >= ix->count)
      return dl_fail(err, "index entry for block %llu names shard %u of a %u-block store",
                     (unsigned long long)ix->entries[i].block, ix->entries[i].shard, ix->count);
  for (uint32_t i = 1; i < ix->count; i++)
    if (cmp_entry(&ix->entries[i - 1], &ix->entries[i]) == 0)
      return dl_fail(err, "index lists block %llu at %u twice",
                     (unsigned long long)ix->entries[i].block, ix->entries[i].resolution);
  return 0;
}

int dl_store_index_parse(const uint8_t *data, size_t n, dl_store_index *out, dl_err *err) {
  memset(out, 0, sizeof *out);
  size_t at = INDEX_HEADER;
  if (parse_index_head(data, n, out, &at, err)) goto fail;
  uint32_t c = out->count;
  if (c > MAX_ENTRIES || n != at + (size_t)c * INDEX_ENTRY + INDEX_CHECKSUM) {
    dl_fail(err, "index of %zu bytes cannot hold %u entries", n, c);
    goto fail;
  }
  if (dl_xxhash64(data, n - INDEX_CHECKSUM, 0) != rd64(data + n - INDEX_CHECKSUM)) {
    dl_fail(err, "index checksum mismatch");
    goto fail;
  }
  out->entries = dl_calloc(c ? c : 1, sizeof *out->entries);
  for (uint32_t i = 0; i < c; i++) {
    const uint8_t *p = data + at + (size_t)i * INDEX_ENTRY;
    out->entries[i] = (dl_store_entry){rd64(p), rd32(p + 8), rd32(p + 12), rd64(p + 16), rd64(p + 24)};
  }
  qsort(out->entries, c, sizeof *out->entries, cmp_entry);
  if (check_entries(out, err)) goto fail;
  return 0;
fail:
  dl_store_index_free(out);
  return -1;
}

void dl_store_index_free(dl_store_index *ix) {
  free(ix->entries);
  memset(ix, 0, sizeof *ix);
}

uint8_t *dl_store_index_encode(const dl_store_identity *id, const dl_store_entry *entries,
                               uint32_t count, size_t *n) {
  size_t at = INDEX_HEADER + (id ? INDEX_IDENTITY : 0);
  *n = at + (size_t)count * INDEX_ENTRY + INDEX_CHECKSUM;
  uint8_t *buf = dl_malloc(*n);
  memcpy(buf, INDEX_MAGIC, 8);
  wr32(buf + 8, id ? INDEX_VERSION_IDENTITY : INDEX_VERSION_PLAIN);
  wr32(buf + 12, count);
  if (id) write_identity(buf + INDEX_HEADER, id);
  for (uint32_t i = 0; i < count; i++) {
    uint8_t *p = buf + at + (size_t)i * INDEX_ENTRY;
    wr64(p, entries[i].block);
    wr32(p + 8, entries[i].resolution);
    wr32(p + 12, entries[i].shard);
    wr64(p + 16, entries[i].offset);
    wr64(p + 24, entries[i].length);
  }
  wr64(buf + *n - INDEX_CHECKSUM, dl_xxhash64(buf, *n - INDEX_CHECKSUM, 0));
  return buf;
}

// Reads DIR/index.dlti; errors name the file.
static int load_index(const char *dir, dl_store_index *ix, dl_err *err) {
  char path[4096];
  path_of(path, sizeof path, dir, INDEX_NAME);
  dl_mapped_file f;
  if (dl_map_file(path, &f, err)) return -1;
  int rc = dl_store_index_parse(f.data, f.size, ix, err);
  if (rc) dl_fail_prefix(err, path);
  dl_unmap_file(&f);
  return rc;
}

// ---- shards, mapped on first use and kept mapped: a shard is never rewritten
// once an index names it.

typedef struct shard_maps {
  uint32_t n;
  dl_mapped_file *files;
  bool *mapped;
} shard_maps;

static const dl_mapped_file *shard_map(shard_maps *m, const char *dir, uint32_t shard,
                                       dl_err *err) {
  if (shard >= m->n) {
    uint32_t n = shard + 1 > 2 * m->n ? shard + 1 : 2 * m->n;
    m->files = realloc(m->files, n * sizeof *m->files);
    m->mapped = realloc(m->mapped, n * sizeof *m->mapped);
    if (!m->files || !m->mapped) dl_die_input("out of memory");
    memset(m->mapped + m->n, 0, (n - m->n) * sizeof *m->mapped);
    m->n = n;
  }
  if (!m->mapped[shard]) {
    char path[4096];
    shard_path(path, sizeof path, dir, shard);
    if (dl_map_file(path, &m->files[shard], err)) return NULL;
    m->mapped[shard] = true;
  }
  return &m->files[shard];
}

static void shard_maps_free(shard_maps *m) {
  for (uint32_t i = 0; i < m->n; i++)
    if (m->mapped[i]) dl_unmap_file(&m->files[i]);
  free(m->files);
  free(m->mapped);
  memset(m, 0, sizeof *m);
}

// -1, the message in err prefixed with the shard file it concerns.
static int fail_in_shard(const char *dir, uint32_t shard, dl_err *err) {
  char path[4096];
  shard_path(path, sizeof path, dir, shard);
  return dl_fail_prefix(err, path);
}

// The encoded block of entry e, read from its shard on disk: 1 or -1.
static int load_from_shard(shard_maps *m, const char *dir, const dl_store_entry *e,
                           dl_encoded_block **out, dl_err *err) {
  const dl_mapped_file *f = shard_map(m, dir, e->shard, err);
  if (!f) return -1;
  if (dl_store_record_load(f->data, f->size, e->offset, e->length, e->block, e->resolution, out,
                           err))
    return fail_in_shard(dir, e->shard, err);
  return 1;
}

// ---- writer

struct dl_store_writer {
  char *dir;
  size_t shard_bytes;
  dl_store_identity id;
  dl_store_entry *entries;  // [0, nflushed) sorted and on disk, then pending
  uint32_t n, cap, nflushed;
  uint32_t next_shard;
  uint8_t *buf;  // the pending shard
  size_t len, buf_cap;
  shard_maps shards;  // for serving flushed blocks
};

static int write_index(dl_store_writer *w, dl_err *err) {
  size_t n;
  uint8_t *buf = dl_store_index_encode(&w->id, w->entries, w->n, &n);
  char path[4096];
  path_of(path, sizeof path, w->dir, INDEX_NAME);
  dl_chunk c = {buf, n};
  int rc = dl_write_file_atomic(path, &c, 1, err);
  free(buf);
  return rc;
}

static void writer_free(dl_store_writer *w) {
  shard_maps_free(&w->shards);
  free(w->entries);
  free(w->buf);
  free(w->dir);
  free(w);
}

// Takes over the index of an existing store of the same identity.
static int writer_continue(dl_store_writer *w, dl_err *err) {
  dl_store_index ix;
  if (load_index(w->dir, &ix, err)) return -1;
  if (check_store_identity(w->dir, &ix, &w->id, "this teacher has", err)) {
    dl_store_index_free(&ix);
    return -1;
  }
  w->entries = ix.entries;
  w->n = w->cap = w->nflushed = ix.count;
  for (uint32_t i = 0; i < w->n; i++)
    if (w->entries[i].shard + 1 > w->next_shard) w->next_shard = w->entries[i].shard + 1;
  return 0;
}

dl_store_writer *dl_store_writer_open(const char *dir, size_t shard_bytes,
                                      const dl_store_identity *id, dl_err *err) {
  if (dl_store_identity_check(id, err)) {
    dl_fail_prefix(err, dir);
    return NULL;
  }
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    dl_fail(err, "%s: cannot create the target store: %s", dir, strerror(errno));
    return NULL;
  }
  dl_store_writer *w = dl_calloc(1, sizeof *w);
  w->dir = strdup(dir);
  w->shard_bytes = shard_bytes ? shard_bytes : 64u << 20;
  w->id = *id;
  char path[4096];
  path_of(path, sizeof path, dir, INDEX_NAME);
  struct stat st;
  // A new store records its identity at once, so a teacher of another
  // identity is refused before it computes anything.
  int rc = stat(path, &st) == 0 ? writer_continue(w, err) : write_index(w, err);
  if (rc) {
    writer_free(w);
    return NULL;
  }
  return w;
}

int dl_store_writer_has(const dl_store_writer *w, uint64_t block, uint32_t resolution) {
  return find_entry(w->entries, w->nflushed, w->n, block, resolution) != NULL;
}

uint32_t dl_store_writer_count(const dl_store_writer *w) { return w->n; }

int dl_store_writer_add(dl_store_writer *w, const dl_encoded_block *e, dl_err *err) {
  if (dl_store_writer_has(w, e->block, e->resolution)) return 0;
  dl_store_record rec;
  dl_store_record_prepare(e, &rec);
  size_t bytes = (size_t)dl_store_record_bytes(&rec);
  if (w->len + bytes > w->buf_cap) {
    w->buf_cap = (w->len + bytes) * 2;
    w->buf = realloc(w->buf, w->buf_cap);
    if (!w->buf) dl_die_input("out of memory");
  }
  dl_store_record_copy_to(&rec, w->buf + w->len);
  dl_store_record_release(&rec);
  if (w->n == w->cap) {
    w->cap = w->cap ? 2 * w->cap : 256;
    w->entries = realloc(w->entries, w->cap * sizeof *w->entries);
    if (!w->entries) dl_die_input("out of memory");
  }
  w->entries[w->n++] = (dl_store_entry){e->block, e->resolution, w->next_shard, w->len, bytes};
  w->len += bytes;
  return w->len >= w->shard_bytes ? dl_store_writer_flush(w, err) : 0;
}

int dl_store_writer_get_encoded(dl_store_writer *w, uint64_t block, uint32_t resolution,
                                dl_encoded_block **out, dl_err *err) {
  *out = NULL;
  const dl_store_entry *e = find_entry(w->entries, w->nflushed, w->n, block, resolution);
  if (!e) return 0;
  bool pending = e >= w->entries + w->nflushed;
  if (!pending) return load_from_shard(&w->shards, w->dir, e, out, err);
  if (dl_store_record_load(w->buf, w->len, e->offset, e->length, block, resolution, out, err))
    return -1;
  return 1;
}

int dl_store_writer_flush(dl_store_writer *w, dl_err *err) {
  if (w->n == w->nflushed) return 0;
  char path[4096];
  shard_path(path, sizeof path, w->dir, w->next_shard);
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
  writer_free(w);
  return rc;
}

// ---- reader

struct dl_store_reader {
  char *dir;
  dl_store_index ix;
  shard_maps shards;
};

dl_store_reader *dl_store_reader_open(const char *dir, const dl_store_identity *expect,
                                      dl_err *err) {
  if (expect && dl_store_identity_check(expect, err)) {
    dl_fail_prefix(err, dir);
    return NULL;
  }
  dl_store_reader *r = dl_calloc(1, sizeof *r);
  if (load_index(dir, &r->ix, err) ||
      check_store_identity(dir, &r->ix, expect, "expected", err)) {
    dl_store_index_free(&r->ix);
    free(r);
    return NULL;
  }
  r->dir = strdup(dir);
  return r;
}

const dl_store_identity *dl_store_reader_identity(const dl_store_reader *r) {
  return r->ix.has_identity ? &r->ix.identity : NULL;
}

uint32_t dl_store_reader_count(const dl_store_reader *r) { return r->ix.count; }

static const dl_store_entry *reader_find(const dl_store_reader *r, uint64_t block, uint32_t res) {
  return find_entry(r->ix.entries, r->ix.count, r->ix.count, block, res);
}

int dl_store_reader_get_encoded(dl_store_reader *r, uint64_t block, uint32_t resolution,
                                dl_encoded_block **out, dl_err *err) {
  *out = NULL;
  const dl_store_entry *e = reader_find(r, block, resolution);
  return e ? load_from_shard(&r->shards, r->dir, e, out, err) : 0;
}

int dl_store_reader_get(dl_store_reader *r, uint64_t block, uint32_t resolution,
                        dl_target_block *out, dl_err *err) {
  memset(out, 0, sizeof *out);  // safe to free whatever the answer
  const dl_store_entry *e = reader_find(r, block, resolution);
  if (!e) return 0;
  const dl_mapped_file *f = shard_map(&r->shards, r->dir, e->shard, err);
  dl_envelope *env;
  const uint8_t *payload;
  size_t n;
  if (!f) return -1;
  if (dl_store_record_open(f->data, f->size, e->offset, e->length, block, resolution, &env,
                           &payload, &n, err))
    return fail_in_shard(r->dir, e->shard, err);
  int rc = dl_decode_block_msg(env->block, payload, n, out, err) ? -1 : 1;
  dl_envelope_free(env);
  return rc;
}

void dl_store_reader_close(dl_store_reader *r) {
  if (!r) return;
  shard_maps_free(&r->shards);
  dl_store_index_free(&r->ix);
  free(r->dir);
  free(r);
}
