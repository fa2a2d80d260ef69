// One stored block, as the target store's shards and the spill store's files
// hold it:
//   [magic "DLTR"][u32 envelope bytes][u64 payload bytes][BLOCK envelope][payload]
// little-endian; the payload holds the tensors exactly as encoded on the wire
// (zstd-compressed when the teacher compresses), so a block read back is
// byte-identical to the one written, checksum included, and can be sent as is.
// Both stores write and read records through these functions only, so the
// format lives in one place.
#ifndef DISTILL_TRANSPORT_STORE_RECORD_H
#define DISTILL_TRANSPORT_STORE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "transport/encoded_block.h"
#include "transport/envelope.h"
#include "transport/target_block.h"

enum { DL_STORE_RECORD_HEADER = 16 };

// A record in its three pieces, so a writer can copy or pwritev them without
// first assembling the payload (megabytes) into one buffer. The payload
// points into the encoded block, which the caller keeps alive meanwhile.
typedef struct dl_store_record {
  uint8_t header[DL_STORE_RECORD_HEADER];
  uint8_t *envelope;  // malloc'd
  size_t envelope_bytes;
  const uint8_t *payload;
  size_t payload_bytes;
} dl_store_record;

void dl_store_record_prepare(const dl_encoded_block *e, dl_store_record *rec);
uint64_t dl_store_record_bytes(const dl_store_record *rec);
// Copies the whole record to dst (dl_store_record_bytes of room).
void dl_store_record_copy_to(const dl_store_record *rec, uint8_t *dst);
void dl_store_record_release(dl_store_record *rec);

// Validates the record at [offset, offset + length) of bytes[0, size) and
// decodes its envelope (a BLOCK); *payload points into bytes. 0 or -1. The
// fuzz target calls this directly.
int dl_store_record_parse(const uint8_t *bytes, size_t size, uint64_t offset, uint64_t length,
                          dl_envelope **env, const uint8_t **payload, size_t *payload_bytes,
                          dl_err *err);
// dl_store_record_parse, and the record must hold (block, resolution): an
// index that points at another block is corruption too.
int dl_store_record_open(const uint8_t *bytes, size_t size, uint64_t offset, uint64_t length,
                         uint64_t block, uint32_t resolution, dl_envelope **env,
                         const uint8_t **payload, size_t *payload_bytes, dl_err *err);
// dl_store_record_open, then the block as a new encoded block owning a copy
// of the payload, its checksum verified. 0 or -1.
int dl_store_record_load(const uint8_t *bytes, size_t size, uint64_t offset, uint64_t length,
                         uint64_t block, uint32_t resolution, dl_encoded_block **out,
                         dl_err *err);

#endif
