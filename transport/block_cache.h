// The teacher's in-memory cache of encoded blocks, keyed by (block,
// resolution), in the order they were added. It holds blocks; it does not
// decide which to drop: over the budget the teacher server drops first the
// blocks every family that needs them has taken, and its lead policy (pace,
// spill, free) decides about the rest (teacher_share.c). A hit does not
// reorder anything: every family reads each block once, in increasing order,
// so "recently used" says nothing about who still needs a block. Holds one
// reference per entry, so a dropped block still in flight stays alive.
#ifndef DISTILL_TRANSPORT_BLOCK_CACHE_H
#define DISTILL_TRANSPORT_BLOCK_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/encoded_block.h"

typedef struct dl_block_cache dl_block_cache;

// budget_bytes 0 makes a cache that holds nothing.
dl_block_cache *dl_block_cache_create(size_t budget_bytes);
void dl_block_cache_destroy(dl_block_cache *c);

// Returns a new reference (caller unrefs) or NULL.
dl_encoded_block *dl_block_cache_get(dl_block_cache *c, uint64_t block, uint32_t resolution);
bool dl_block_cache_has(const dl_block_cache *c, uint64_t block, uint32_t resolution);
// Adds a reference to e as the newest entry (replacing an entry with the same
// key). Nothing is dropped here, even over the budget; with budget 0 nothing
// is kept.
void dl_block_cache_put(dl_block_cache *c, dl_encoded_block *e);
// Drops the entry; returns whether there was one.
bool dl_block_cache_remove(dl_block_cache *c, uint64_t block, uint32_t resolution);
// The oldest and newest entries (borrowed; NULL when empty), and the entry
// after (newer than) or before (older than) one: for walking in order.
const dl_encoded_block *dl_block_cache_oldest(const dl_block_cache *c);
const dl_encoded_block *dl_block_cache_newest(const dl_block_cache *c);
const dl_encoded_block *dl_block_cache_newer(const dl_block_cache *c, const dl_encoded_block *b);
const dl_encoded_block *dl_block_cache_older(const dl_block_cache *c, const dl_encoded_block *b);

size_t dl_block_cache_bytes(const dl_block_cache *c);
size_t dl_block_cache_count(const dl_block_cache *c);
size_t dl_block_cache_budget(const dl_block_cache *c);
bool dl_block_cache_over_budget(const dl_block_cache *c);

#endif
