// A loader that builds blocks on worker threads ahead of the consumer: a
// bounded window of blocks in flight, delivered strictly in order. Blocks are
// pure functions of their index (sample_stream.h), so the result does not
// depend on the thread count.
#ifndef DISTILL_DATA_LOADER_H
#define DISTILL_DATA_LOADER_H

#include <stdint.h>

#include "data/sample_stream.h"

typedef struct dl_loader dl_loader;

// Delivers blocks first, first+stride, first+2*stride, ... (a data-parallel
// rank r of W takes first = r, stride = W), `count` of them (-1: unbounded),
// with `threads` workers and at most `depth` blocks built ahead.
dl_loader *dl_loader_start(const dl_sample_stream *st, int64_t first, int64_t stride, int64_t count,
                           int global_size, int threads, int depth);

// The next block in order (the caller frees it with dl_block_free); returns
// 0 when `count` blocks were delivered.
int dl_loader_next(dl_loader *ld, dl_block *out);

// Items skipped so far (unreadable or undecodable), over delivered blocks.
int64_t dl_loader_skipped(const dl_loader *ld);

// Stops the workers and frees the loader (blocks not taken are dropped).
void dl_loader_stop(dl_loader *ld);

#endif
