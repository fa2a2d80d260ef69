// A block as it travels: the tensors encoded into one payload buffer plus the
// metadata of its BLOCK envelope. Reference counted, because one encoded block
// sits in the teacher's cache and in the ZeroMQ queues of several peers at
// once (zero-copy: every payload frame points at the same buffer).
#ifndef DISTILL_TRANSPORT_ENCODED_BLOCK_H
#define DISTILL_TRANSPORT_ENCODED_BLOCK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "transport/codec.h"
#include "transport/envelope.h"
#include "transport/target_block.h"

// Which codec each tensor gets: a default plus per-name overrides.
typedef struct dl_codec_spec {
  dl_codec default_codec;
  int n;
  struct {
    char name[DL_TENSOR_NAME_MAX];
    dl_codec codec;
  } overrides[DL_MAX_TENSORS];
} dl_codec_spec;

// "f16" or "f32,patch=int8" (default first, then NAME=CODEC). Returns 0 or -1.
int dl_codec_spec_parse(const char *s, dl_codec_spec *out, dl_err *err);
dl_codec dl_codec_spec_for(const dl_codec_spec *spec, const char *name);

typedef struct dl_encoded_tensor {
  char name[DL_TENSOR_NAME_MAX];
  dl_tensor_wire wire;
  uint64_t offset;  // into payload
} dl_encoded_tensor;

typedef struct dl_encoded_block {
  atomic_int refs;
  uint64_t block;
  uint32_t resolution;
  uint64_t first_sample;
  uint32_t num_samples;
  uint64_t checksum;    // dl_block_checksum
  int checksum_kind;    // Distill__ChecksumKind: CRC32C for blocks encoded here
  size_t raw_bytes;     // float32 bytes before the codecs
  int ntensors;
  dl_encoded_tensor tensors[DL_MAX_TENSORS];
  uint8_t *payload;
  size_t payload_bytes;
} dl_encoded_block;

// Encodes every tensor of b. Returns a block with one reference, or NULL.
dl_encoded_block *dl_encode_block(const dl_target_block *b, const dl_codec_spec *spec,
                                  int zstd_level, dl_err *err);
// The same, but when b's tensors lie back to back in its arena
// (dl_target_block_reserve) and all go out as float32 without zstd, the arena
// becomes the payload instead of being copied (b gives it up; free b as
// usual). Otherwise exactly dl_encode_block.
dl_encoded_block *dl_encode_block_take(dl_target_block *b, const dl_codec_spec *spec,
                                       int zstd_level, dl_err *err);
dl_encoded_block *dl_encoded_block_ref(dl_encoded_block *e);
// Thread-safe: ZeroMQ's I/O thread drops the references of sent frames.
void dl_encoded_block_unref(dl_encoded_block *e);

// Fills a BLOCK body (pointing into e and into storage, which the caller
// keeps alive while the body is used) for packing.
typedef struct dl_block_msg_storage {
  Distill__TensorInfo infos[DL_MAX_TENSORS];
  Distill__TensorInfo *ptrs[DL_MAX_TENSORS];
} dl_block_msg_storage;
void dl_encoded_block_to_msg(const dl_encoded_block *e, Distill__Block *msg,
                             dl_block_msg_storage *storage);
// Packs a whole BLOCK envelope; free the result with free().
uint8_t *dl_encoded_block_pack_envelope(const dl_encoded_block *e, size_t *n);

// Rebuilds an encoded block from a validated BLOCK message and its payload
// (copied), verifying the checksum. Used by the target store.
dl_encoded_block *dl_encoded_block_from_msg(const Distill__Block *msg, const uint8_t *payload,
                                            size_t n, dl_err *err);

// The checksum of the payload that msg->checksum_kind names (CRC32C, or
// xxHash64 in blocks stored before it), seeded with an xxHash64 of the
// block's metadata (ids, sample range, tensor names, codecs, shapes, offsets).
uint64_t dl_block_checksum(const Distill__Block *msg, const uint8_t *payload, size_t n);

// Verifies the checksum of payload against msg and decodes every tensor into
// out (zeroed first; free with dl_target_block_free). Returns 0, or -1 with
// the reason (a checksum mismatch says "checksum").
int dl_decode_block_msg(const Distill__Block *msg, const uint8_t *payload, size_t n,
                        dl_target_block *out, dl_err *err);
// The same, but uncompressed float32 tensors (suitably aligned) point into
// payload instead of being copied (their `borrowed` is set): the caller keeps
// payload alive and sets out->owner. Returns the number of borrowed tensors,
// or -1.
int dl_decode_block_msg_borrowing(const Distill__Block *msg, const uint8_t *payload, size_t n,
                                  dl_target_block *out, dl_err *err);

#endif
