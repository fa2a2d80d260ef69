// The spill store: encoded blocks a teacher must keep (computed ahead, not yet
// sent to every rank that will ask) but cannot hold in RAM, parked on disk
// under a byte budget of their own. Scratch for one teacher process, not a
// replay store: the index lives in memory only, old spill files are removed
// at open, and close removes this store's files.
//
// Layout: one file per block, DIR/spill-<block, 16 hex digits>-<resolution>.dlsp,
// holding one record (transport/store_record.h). It is written with pwrite
// straight from the record's pieces (the payload is not copied first) and
// read back with one pread into a fresh buffer, from which the returned
// block takes its own copy of the payload (dl_encoded_block_from_msg, which
// also verifies the checksum).
//
// One file per block rather than reused segment files because a teacher
// drops blocks in no fixed order: with segments a drop frees nothing until
// every record of its segment is gone, so disk use drifts above the live
// bytes and only compaction could bring it back, while a file per block
// makes the budget exact (a drop frees its bytes at once) with nothing to
// compact. Blocks are large (hundreds of KiB to hundreds of MiB), so a
// file's creation and removal cost little beside its I/O. Nothing is
// fsynced: the data is worthless after this process ends.
//
// Budget: the record bytes of the blocks held (envelope + payload + 16); the
// file system's rounding to its block size is not counted.
// One thread only, like the teacher's serving loop.
#ifndef DISTILL_TRANSPORT_SPILL_STORE_H
#define DISTILL_TRANSPORT_SPILL_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "transport/encoded_block.h"

typedef struct dl_spill_store dl_spill_store;

typedef struct dl_spill_counters {
  uint64_t puts;     // blocks written
  uint64_t gets;     // blocks read back
  uint64_t drops;    // blocks dropped
  uint64_t full;     // puts refused for want of room (returned 1)
  uint64_t blocks;   // blocks held now
} dl_spill_counters;

// Creates dir when missing and removes the spill files an earlier process
// left there (other files stay). budget_bytes > 0. NULL with a message on error.
dl_spill_store *dl_spill_open(const char *dir, uint64_t budget_bytes, dl_err *err);
// Writes b to disk. 0 when written, or already held (put twice is a no-op);
// 1 when it would take the store past its budget (nothing written: the
// caller paces until drops make room); -1 on an I/O error, or when b alone
// is larger than the whole budget (no drop would ever make room).
int dl_spill_put(dl_spill_store *s, const dl_encoded_block *b, dl_err *err);
// 1 and a new reference in *out, byte-identical to the block put (payload,
// metadata, checksum: it can be sent like a cached block); 0 when absent; -1
// when its file is unreadable or corrupt (message in err; the block stays
// held until dropped).
int dl_spill_get(dl_spill_store *s, uint64_t block, uint32_t resolution, dl_encoded_block **out,
                 dl_err *err);
// Removes the block and frees its bytes; absent blocks are ignored.
void dl_spill_drop(dl_spill_store *s, uint64_t block, uint32_t resolution);
bool dl_spill_has(const dl_spill_store *s, uint64_t block, uint32_t resolution);
uint64_t dl_spill_bytes(const dl_spill_store *s);
uint64_t dl_spill_budget(const dl_spill_store *s);
dl_spill_counters dl_spill_stats(const dl_spill_store *s);
// Removes this store's files and frees it. NULL is ignored.
void dl_spill_close(dl_spill_store *s);

#endif
