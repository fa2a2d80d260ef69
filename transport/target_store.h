// The target store: encoded blocks kept on disk, so a teacher can serve them
// again without its model and a student can replay them offline.
//
// A store is a directory:
//   shard-NNNNNN.dlts  records, each [magic "DLTR"][u32 envelope bytes]
//                      [u64 payload bytes][BLOCK envelope][payload]; the
//                      payload holds the tensors as encoded on the wire
//                      (zstd-compressed when the teacher's level is > 0)
//   index.dlti         [magic "DLTSIDX1"][u32 version 1][u32 count]
//                      count x [u64 block][u32 resolution][u32 shard]
//                      [u64 offset][u64 record bytes], then the xxHash64 of
//                      everything before it; all little-endian
// Every file is written whole and renamed into place (tmp, fsync, rename), a
// shard before the index that names it, so a killed writer leaves a store
// that is consistent, missing at most the blocks of its unwritten shard.
#ifndef DISTILL_TRANSPORT_TARGET_STORE_H
#define DISTILL_TRANSPORT_TARGET_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "transport/encoded_block.h"
#include "transport/envelope.h"
#include "transport/target_block.h"

typedef struct dl_store_entry {
  uint64_t block;
  uint32_t resolution;
  uint32_t shard;
  uint64_t offset;
  uint64_t length;
} dl_store_entry;

// Parsers over bytes in memory (the fuzz targets call these directly).
// Validates magic, version, count, checksum; *entries is malloc'd, sorted.
int dl_store_index_parse(const uint8_t *data, size_t n, dl_store_entry **entries, uint32_t *count,
                         dl_err *err);
// Validates one record at [offset, offset + length) of a shard and decodes its
// envelope (a BLOCK); *payload points into shard.
int dl_store_record_parse(const uint8_t *shard, size_t shard_size, uint64_t offset,
                          uint64_t length, dl_envelope **env, const uint8_t **payload,
                          size_t *payload_bytes, dl_err *err);

typedef struct dl_store_writer dl_store_writer;
// Creates dir when missing; continues an existing store. shard_bytes: a shard
// is written out once its records reach this size.
dl_store_writer *dl_store_writer_open(const char *dir, size_t shard_bytes, dl_err *err);
// Adds a block unless the store already has (block, resolution).
int dl_store_writer_add(dl_store_writer *w, const dl_encoded_block *e, dl_err *err);
// Writes the pending shard and the index.
int dl_store_writer_flush(dl_store_writer *w, dl_err *err);
// Flushes and frees (also on error).
int dl_store_writer_close(dl_store_writer *w, dl_err *err);

typedef struct dl_store_reader dl_store_reader;
dl_store_reader *dl_store_reader_open(const char *dir, dl_err *err);
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
