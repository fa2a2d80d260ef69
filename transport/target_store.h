// The target store: encoded blocks kept on disk, so a teacher can serve them
// again without its model and a student can replay them offline.
//
// A store is a directory:
//   shard-NNNNNN.dlts  records (transport/store_record.h): BLOCK envelope and
//                      payload exactly as on the wire
//   index.dlti         [magic "DLTSIDX1"][u32 version][u32 count]
//                      version 2 only, the identity (152 bytes):
//                        [u64 stream_hash][u64 weights_hash][i32 zstd_level]
//                        [u32 target_kind][codec: 128 bytes, NUL-terminated,
//                        zero-padded]
//                      count x [u64 block][u32 resolution][u32 shard]
//                      [u64 offset][u64 record bytes], then the xxHash64 of
//                      everything before it; all little-endian. Version 1
//                      (no identity) is still read.
// Every file is written whole and renamed into place (tmp, fsync, rename), a
// shard before the index that names it, so a killed writer leaves a store
// that is consistent, missing at most the blocks of its unwritten shard.
//
// The identity says which blocks a store holds: blocks of one recipe stream
// from one teacher, encoded one way. A teacher continuing a store, or a
// reader that expects an identity, is refused by a store of another one
// (a single line naming each field that differs), so a changed recipe, model
// or codec never mixes its blocks with older ones.
#ifndef DISTILL_TRANSPORT_TARGET_STORE_H
#define DISTILL_TRANSPORT_TARGET_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "transport/encoded_block.h"
#include "transport/envelope.h"
#include "transport/store_record.h"
#include "transport/target_block.h"

enum { DL_STORE_CODEC_TEXT_MAX = 128 };

typedef struct dl_store_identity {
  uint64_t stream_hash;   // the recipe's data + crops sections
  uint64_t weights_hash;  // the teacher's weights and heads
  char codec[DL_STORE_CODEC_TEXT_MAX];  // the codec spec as given, e.g. "f16,patch=int8"
  int zstd_level;         // 0..22, 0: none
  int target_kind;        // 0 features, 1 prototypes, 2 both (dl_target_kind)
} dl_store_identity;

typedef struct dl_store_entry {
  uint64_t block;
  uint32_t resolution;
  uint32_t shard;
  uint64_t offset;
  uint64_t length;
} dl_store_entry;

typedef struct dl_store_index {
  uint32_t version;            // 1 or 2
  bool has_identity;           // version 2
  dl_store_identity identity;
  dl_store_entry *entries;     // malloc'd, sorted by (block, resolution)
  uint32_t count;
} dl_store_index;

// Parses an index in memory (the fuzz target calls this directly): validates
// magic, version, identity, count, checksum, shard numbers, duplicates.
// 0, or -1 with *out empty.
int dl_store_index_parse(const uint8_t *data, size_t n, dl_store_index *out, dl_err *err);
void dl_store_index_free(dl_store_index *ix);
// The bytes of an index (malloc'd) over entries sorted as above: version 2
// with id, version 1 when id is NULL (as stores were written before they
// recorded their identity; kept for tests and fuzz seeds).
uint8_t *dl_store_index_encode(const dl_store_identity *id, const dl_store_entry *entries,
                               uint32_t count, size_t *n);
// 0, or -1 naming what is wrong with id (NULL, codec text, level, kind).
int dl_store_identity_check(const dl_store_identity *id, dl_err *err);

// ---- writer (one thread)

typedef struct dl_store_writer dl_store_writer;
// Creates dir when missing and records id in a new store at once; continues
// an existing store of the same identity, and refuses one of another
// identity or one written before stores recorded theirs. shard_bytes: a shard
// is written out once its records reach this size (0: 64 MiB).
dl_store_writer *dl_store_writer_open(const char *dir, size_t shard_bytes,
                                      const dl_store_identity *id, dl_err *err);
// Adds a block unless the store already has (block, resolution). 0 or -1.
int dl_store_writer_add(dl_store_writer *w, const dl_encoded_block *e, dl_err *err);
// 1 when the store has (block, resolution): written in this run, pending, or
// there when the writer opened; else 0.
int dl_store_writer_has(const dl_store_writer *w, uint64_t block, uint32_t resolution);
// The writer serves what it wrote, so a teacher can send blocks it stored in
// the same run: from the pending shard in memory or from the shards on disk.
// 1 and a new reference in *out (byte-identical to the block added), 0 when
// absent, -1 when the record is corrupt (message in err).
int dl_store_writer_get_encoded(dl_store_writer *w, uint64_t block, uint32_t resolution,
                                dl_encoded_block **out, dl_err *err);
uint32_t dl_store_writer_count(const dl_store_writer *w);
// Writes the pending shard and the index.
int dl_store_writer_flush(dl_store_writer *w, dl_err *err);
// Flushes and frees (also on error).
int dl_store_writer_close(dl_store_writer *w, dl_err *err);

// ---- reader (one thread)

typedef struct dl_store_reader dl_store_reader;
// expect NULL accepts any store (a student's offline replay); otherwise the
// store must hold blocks of exactly that identity, with the writer's refusals.
dl_store_reader *dl_store_reader_open(const char *dir, const dl_store_identity *expect,
                                      dl_err *err);
// What the store says it holds; NULL for a version-1 store.
const dl_store_identity *dl_store_reader_identity(const dl_store_reader *r);
uint32_t dl_store_reader_count(const dl_store_reader *r);
// 1 and a new reference in *out when present, 0 when absent, -1 when the
// record is corrupt (message in err).
int dl_store_reader_get_encoded(dl_store_reader *r, uint64_t block, uint32_t resolution,
                                dl_encoded_block **out, dl_err *err);
// The decoded targets (offline replay): 1, 0 or -1 as above.
int dl_store_reader_get(dl_store_reader *r, uint64_t block, uint32_t resolution,
                        dl_target_block *out, dl_err *err);
void dl_store_reader_close(dl_store_reader *r);

#endif
