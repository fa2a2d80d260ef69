// Target tensor codecs: a float32 matrix (rows x cols) is quantized with one of
// four codecs, then compressed with zstd when that makes it smaller. The
// teacher encodes, the student and the target store decode; a decoder never
// trusts sizes that came over the wire.
#ifndef DISTILL_TRANSPORT_CODEC_H
#define DISTILL_TRANSPORT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

// Same numbers as distill.proto's Codec enum.
typedef enum dl_codec {
  DL_CODEC_F32 = 0,
  DL_CODEC_F16 = 1,
  DL_CODEC_BF16 = 2,
  DL_CODEC_INT8_ROW = 3,  // int8 values, one float32 scale (max |x| / 127) per row
} dl_codec;
enum { DL_NUM_CODECS = 4 };

// Refuses tensors above 2^28 values (1 GiB of float32): no target is that big,
// and the bound keeps every size computation far from overflow.
#define DL_CODEC_MAX_VALUES ((uint64_t)1 << 28)

const char *dl_codec_name(dl_codec c);
// "f32", "f16", "bf16", "int8". Returns 0, or -1 with a message.
int dl_codec_parse(const char *s, dl_codec *out, dl_err *err);

// Bytes of the quantized form (before zstd); 0 for an invalid codec or size.
size_t dl_codec_quantized_bytes(int codec, uint64_t rows, uint64_t cols);

// How one tensor travels: what the decoder needs besides the bytes.
typedef struct dl_tensor_wire {
  dl_codec codec;
  uint32_t rows, cols;
  bool zstd;          // the bytes are one zstd frame of the quantized form
  size_t wire_bytes;  // bytes on the wire
} dl_tensor_wire;

// Upper bound of dl_tensor_encode's output.
size_t dl_tensor_encode_bound(dl_codec codec, uint32_t rows, uint32_t cols);

// Quantizes x (finite values) and, when zstd_level > 0, compresses; keeps the
// plain quantized bytes when zstd does not make them smaller. dst holds at
// least dl_tensor_encode_bound bytes. Fills *out. Returns 0 or -1.
int dl_tensor_encode(dl_codec codec, int zstd_level, const float *x, uint32_t rows, uint32_t cols,
                     uint8_t *dst, size_t dst_cap, dl_tensor_wire *out, dl_err *err);

// Decodes src (w->wire_bytes bytes) into dst (rows * cols floats). Returns 0,
// or -1 with a message when the bytes do not match the description.
int dl_tensor_decode(const dl_tensor_wire *w, const uint8_t *src, float *dst, dl_err *err);

// The quantization step alone (no zstd), for benchmarks and tests.
void dl_codec_quantize(dl_codec codec, const float *x, uint32_t rows, uint32_t cols, uint8_t *dst);
int dl_codec_dequantize(int codec, const uint8_t *src, size_t n, uint32_t rows, uint32_t cols,
                        float *dst, dl_err *err);

// Rows [r0, r1) alone, in the whole tensor's layout (dst and src are the
// whole tensor's buffers, sizes checked by the caller): so a block can be
// checksummed piece by piece while each piece is still in cache. The
// quantized form is dl_codec_prefix_bytes (int8's per-row scales) followed by
// rows of dl_codec_row_bytes each.
size_t dl_codec_prefix_bytes(int codec, uint32_t rows);
size_t dl_codec_row_bytes(int codec, uint32_t cols);
void dl_codec_quantize_rows(dl_codec codec, const float *x, uint32_t rows, uint32_t cols, uint32_t r0,
                            uint32_t r1, uint8_t *dst);
void dl_codec_dequantize_rows(int codec, const uint8_t *src, uint32_t rows, uint32_t cols, uint32_t r0,
                              uint32_t r1, float *dst);

#endif
