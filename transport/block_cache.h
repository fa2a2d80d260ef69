// The teacher's in-memory cache of encoded blocks, keyed by (block,
// resolution), least recently used first out, bounded by payload bytes. Holds
// one reference per entry, so an evicted block still in flight stays alive.
#ifndef DISTILL_TRANSPORT_BLOCK_CACHE_H
#define DISTILL_TRANSPORT_BLOCK_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "transport/encoded_block.h"

typedef struct dl_block_cache dl_block_cache;

// budget_bytes 0 makes a cache that holds nothing.
dl_block_cache *dl_block_cache_create(size_t budget_bytes);
void dl_block_cache_destroy(dl_block_cache *c);

// Returns a new reference (caller unrefs) or NULL; a hit becomes most recent.
dl_encoded_block *dl_block_cache_get(dl_block_cache *c, uint64_t block, uint32_t resolution);
// Adds a reference to e; evicts least recently used entries over the budget.
// A block larger than the whole budget is not kept.
void dl_block_cache_put(dl_block_cache *c, dl_encoded_block *e);

size_t dl_block_cache_bytes(const dl_block_cache *c);
size_t dl_block_cache_count(const dl_block_cache *c);
uint64_t dl_block_cache_evictions(const dl_block_cache *c);

#endif
