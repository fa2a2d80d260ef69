#include "transport/block_cache.h"

#include <stdlib.h>

typedef struct entry {
  dl_encoded_block *blk;
  struct entry *hnext;             // hash chain
  struct entry *newer, *older;     // insertion order
} entry;

struct dl_block_cache {
  size_t budget, bytes, count;
  size_t nbuckets;
  entry **buckets;
  entry *newest, *oldest;
};

static size_t bucket_of(const dl_block_cache *c, uint64_t block, uint32_t res) {
  uint64_t h = (block * 0x9E3779B97F4A7C15ULL) ^ ((uint64_t)res * 0xC2B2AE3D27D4EB4FULL);
  return (size_t)(h >> 17) % c->nbuckets;
}

dl_block_cache *dl_block_cache_create(size_t budget_bytes) {
  dl_block_cache *c = dl_calloc(1, sizeof *c);
  c->budget = budget_bytes;
  c->nbuckets = 4096;
  c->buckets = dl_calloc(c->nbuckets, sizeof *c->buckets);
  return c;
}

static void list_unlink(dl_block_cache *c, entry *e) {
  if (e->newer) e->newer->older = e->older; else c->newest = e->older;
  if (e->older) e->older->newer = e->newer; else c->oldest = e->newer;
  e->newer = e->older = NULL;
}

static void list_push_newest(dl_block_cache *c, entry *e) {
  e->older = c->newest;
  e->newer = NULL;
  if (c->newest) c->newest->newer = e;
  c->newest = e;
  if (!c->oldest) c->oldest = e;
}

static entry **find_slot(const dl_block_cache *c, uint64_t block, uint32_t res) {
  entry **p = &c->buckets[bucket_of(c, block, res)];
  while (*p && !((*p)->blk->block == block && (*p)->blk->resolution == res)) p = &(*p)->hnext;
  return p;
}

static void remove_entry(dl_block_cache *c, entry *e) {
  entry **p = find_slot(c, e->blk->block, e->blk->resolution);
  *p = e->hnext;
  list_unlink(c, e);
  c->bytes -= e->blk->payload_bytes;
  c->count--;
  dl_encoded_block_unref(e->blk);
  free(e);
}

void dl_block_cache_destroy(dl_block_cache *c) {
  if (!c) return;
  while (c->oldest) remove_entry(c, c->oldest);
  free(c->buckets);
  free(c);
}

dl_encoded_block *dl_block_cache_get(dl_block_cache *c, uint64_t block, uint32_t resolution) {
  entry *e = *find_slot(c, block, resolution);
  return e ? dl_encoded_block_ref(e->blk) : NULL;
}

bool dl_block_cache_has(const dl_block_cache *c, uint64_t block, uint32_t resolution) {
  return *find_slot(c, block, resolution) != NULL;
}

void dl_block_cache_put(dl_block_cache *c, dl_encoded_block *blk) {
  if (c->budget == 0) return;
  entry **slot = find_slot(c, blk->block, blk->resolution);
  if (*slot) remove_entry(c, *slot);
  entry *e = dl_calloc(1, sizeof *e);
  e->blk = dl_encoded_block_ref(blk);
  const size_t b = bucket_of(c, blk->block, blk->resolution);
  e->hnext = c->buckets[b];
  c->buckets[b] = e;
  list_push_newest(c, e);
  c->bytes += blk->payload_bytes;
  c->count++;
}

bool dl_block_cache_remove(dl_block_cache *c, uint64_t block, uint32_t resolution) {
  entry *e = *find_slot(c, block, resolution);
  if (e) remove_entry(c, e);
  return e != NULL;
}

static const entry *entry_of(const dl_block_cache *c, const dl_encoded_block *b) {
  return b ? *find_slot(c, b->block, b->resolution) : NULL;
}

const dl_encoded_block *dl_block_cache_oldest(const dl_block_cache *c) { return c->oldest ? c->oldest->blk : NULL; }
const dl_encoded_block *dl_block_cache_newest(const dl_block_cache *c) { return c->newest ? c->newest->blk : NULL; }

const dl_encoded_block *dl_block_cache_newer(const dl_block_cache *c, const dl_encoded_block *b) {
  const entry *e = entry_of(c, b);
  return e && e->newer ? e->newer->blk : NULL;
}

const dl_encoded_block *dl_block_cache_older(const dl_block_cache *c, const dl_encoded_block *b) {
  const entry *e = entry_of(c, b);
  return e && e->older ? e->older->blk : NULL;
}

size_t dl_block_cache_bytes(const dl_block_cache *c) { return c->bytes; }
size_t dl_block_cache_count(const dl_block_cache *c) { return c->count; }
size_t dl_block_cache_budget(const dl_block_cache *c) { return c->budget; }
bool dl_block_cache_over_budget(const dl_block_cache *c) { return c->bytes > c->budget; }
