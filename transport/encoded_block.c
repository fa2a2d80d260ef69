#include "transport/encoded_block.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/crc32c.h"
#include "transport/xxhash64.h"

int dl_codec_spec_parse(const char *s, dl_codec_spec *out, dl_err *err) {
  memset(out, 0, sizeof *out);
  char buf[512];
  if (strlen(s) >= sizeof buf) return dl_fail(err, "codec spec too long");
  snprintf(buf, sizeof buf, "%s", s);
  int first = 1;
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(tok, '=');
    if (first && !eq) {
      if (dl_codec_parse(tok, &out->default_codec, err)) return -1;
    } else if (eq) {
      *eq = '\0';
      if (out->n >= DL_MAX_TENSORS || strlen(tok) == 0 || strlen(tok) >= DL_TENSOR_NAME_MAX)
        return dl_fail(err, "bad codec override '%s'", tok);
      snprintf(out->overrides[out->n].name, DL_TENSOR_NAME_MAX, "%s", tok);
      if (dl_codec_parse(eq + 1, &out->overrides[out->n].codec, err)) return -1;
      out->n++;
    } else {
      return dl_fail(err, "bad codec spec '%s' (expected CODEC[,NAME=CODEC...])", s);
    }
    first = 0;
  }
  if (first) return dl_fail(err, "empty codec spec");
  return 0;
}

dl_codec dl_codec_spec_for(const dl_codec_spec *spec, const char *name) {
  for (int i = 0; i < spec->n; i++)
    if (strcmp(spec->overrides[i].name, name) == 0) return spec->overrides[i].codec;
  return spec->default_codec;
}

// The checksum covers the payload and, through its seed, every field that
// says what the payload is: a corrupted block id or tensor shape in the
// envelope fails it just as a corrupted payload byte does.
static uint64_t checksum_seed(const Distill__Block *msg) {
  uint64_t meta[5] = {msg->block, msg->resolution, msg->first_sample, msg->num_samples,
                      msg->payload_bytes};
  uint64_t seed = dl_xxhash64(meta, sizeof meta, msg->n_tensors);
  for (size_t i = 0; i < msg->n_tensors; i++) {
    const Distill__TensorInfo *t = msg->tensors[i];
    uint64_t f[6] = {(uint64_t)t->codec, t->rows, t->cols, t->offset, t->wire_bytes, t->zstd};
    seed = dl_xxhash64(f, sizeof f, seed);
    seed = dl_xxhash64(t->name, strlen(t->name), seed);
  }
  return seed;
}

// CRC32C continues from the 64-bit seed folded to 32 bits.
static uint32_t crc_seed(uint64_t seed) { return (uint32_t)(seed ^ (seed >> 32)); }

uint64_t dl_block_checksum(const Distill__Block *msg, const uint8_t *payload, size_t n) {
  uint64_t seed = checksum_seed(msg);
  if (msg->checksum_kind == DISTILL__CHECKSUM_KIND__CHECKSUM_CRC32C)
    return dl_crc32c(crc_seed(seed), payload, n);
  return dl_xxhash64(payload, n, seed);
}

// ---- checksums while the bytes are hot
//
// A block is quantized, and on the other side checked and dequantized, in
// pieces of about kHotBytes, each checksummed right after it is written or
// right before it is read: one pass over memory instead of two. The
// envelope's seed is only known once every tensor's size is, so the encoder
// checksums the payload from 0 and moves the seed in at the end
// (dl_crc32c_shift); the decoder knows it from the start.
enum { kHotBytes = 64 << 10 };

static uint32_t rows_per_piece(size_t row_bytes) {
  size_t r = row_bytes ? kHotBytes / row_bytes : 1;
  return r == 0 ? 1 : r > UINT32_MAX ? UINT32_MAX : (uint32_t)r;
}

// Quantizes x (no zstd) into dst piece by piece; returns the CRC32C from 0 of
// the dl_codec_quantized_bytes written.
static uint32_t quantize_hot(dl_codec codec, const float *x, uint32_t rows, uint32_t cols, uint8_t *dst) {
  size_t pre = dl_codec_prefix_bytes(codec, rows), rb = dl_codec_row_bytes(codec, cols);
  uint32_t step = rows_per_piece(rb), body = 0;
  for (uint32_t r0 = 0, r1; r0 < rows; r0 = r1) {
    r1 = rows - r0 > step ? r0 + step : rows;
    dl_codec_quantize_rows(codec, x, rows, cols, r0, r1, dst);
    body = dl_crc32c(body, dst + pre + (size_t)r0 * rb, (size_t)(r1 - r0) * rb);
  }
  // int8's scales come first in the payload but are complete only now.
  return body ^ dl_crc32c_shift(dl_crc32c(0, dst, pre), (uint64_t)rows * rb);
}

// Checks and dequantizes src (wire bytes of w, not zstd) into dst piece by
// piece, continuing *crc over its bytes. Returns 0 or -1.
static int dequantize_hot(const dl_tensor_wire *w, const uint8_t *src, float *dst, uint32_t *crc,
                          dl_err *err) {
  size_t want = dl_codec_quantized_bytes(w->codec, w->rows, w->cols);
  if (want == 0 || w->wire_bytes != want)  // the plain decoder words the error
    return dl_codec_dequantize(w->codec, src, w->wire_bytes, w->rows, w->cols, dst, err);
  size_t pre = dl_codec_prefix_bytes(w->codec, w->rows), rb = dl_codec_row_bytes(w->codec, w->cols);
  *crc = dl_crc32c(*crc, src, pre);
  uint32_t step = rows_per_piece(rb);
  for (uint32_t r0 = 0, r1; r0 < w->rows; r0 = r1) {
    r1 = w->rows - r0 > step ? r0 + step : w->rows;
    *crc = dl_crc32c(*crc, src + pre + (size_t)r0 * rb, (size_t)(r1 - r0) * rb);
    dl_codec_dequantize_rows(w->codec, src, w->rows, w->cols, r0, r1, dst);
  }
  return 0;
}

// An encoded block with one reference, its ids and no payload yet.
static dl_encoded_block *new_encoded(uint64_t block, uint32_t resolution, uint64_t first_sample,
                                     uint32_t num_samples, int ntensors, int checksum_kind) {
  dl_encoded_block *e = dl_calloc(1, sizeof *e);
  atomic_init(&e->refs, 1);
  e->block = block;
  e->resolution = resolution;
  e->first_sample = first_sample;
  e->num_samples = num_samples;
  e->ntensors = ntensors;
  e->checksum_kind = checksum_kind;
  return e;
}

// Blocks encoded here are checksummed with CRC32C.
static dl_encoded_block *new_encoded_for(const dl_target_block *b) {
  return new_encoded(b->block, b->resolution, b->first_sample, b->num_samples, b->ntensors,
                     DISTILL__CHECKSUM_KIND__CHECKSUM_CRC32C);
}

static void seal(dl_encoded_block *e) {
  Distill__Block msg;
  dl_block_msg_storage st;
  dl_encoded_block_to_msg(e, &msg, &st);
  e->checksum = dl_block_checksum(&msg, e->payload, e->payload_bytes);
}

// seal for a payload whose CRC32C from 0 is known (computed while encoding).
static void seal_crc(dl_encoded_block *e, uint32_t payload_crc) {
  Distill__Block msg;
  dl_block_msg_storage st;
  dl_encoded_block_to_msg(e, &msg, &st);
  e->checksum = payload_crc ^ dl_crc32c_shift(crc_seed(checksum_seed(&msg)), e->payload_bytes);
}

// One tensor into dst: quantized piece by piece while checksummed, or with
// zstd checksummed after. Continues *crc (from 0 over the payload).
static int encode_tensor_hot(dl_codec codec, int zstd_level, const dl_tensor *t, uint8_t *dst,
                             size_t cap, dl_tensor_wire *w, uint32_t *crc, dl_err *err) {
  if (zstd_level > 0) {
    if (dl_tensor_encode(codec, zstd_level, t->data, t->rows, t->cols, dst, cap, w, err)) return -1;
    *crc = dl_crc32c(*crc, dst, w->wire_bytes);
    return 0;
  }
  size_t q = dl_codec_quantized_bytes(codec, t->rows, t->cols);
  if (q == 0 || q > cap) return dl_fail(err, "cannot encode a %u x %u tensor as codec %d", t->rows, t->cols, codec);
  *w = (dl_tensor_wire){.codec = codec, .rows = t->rows, .cols = t->cols, .zstd = false, .wire_bytes = q};
  *crc = quantize_hot(codec, t->data, t->rows, t->cols, dst) ^ dl_crc32c_shift(*crc, q);
  return 0;
}

dl_encoded_block *dl_encode_block(const dl_target_block *b, const dl_codec_spec *spec,
                                  int zstd_level, dl_err *err) {
  if (b->ntensors <= 0 || b->ntensors > DL_MAX_TENSORS) {
    dl_fail(err, "block %llu has %d tensors", (unsigned long long)b->block, b->ntensors);
    return NULL;
  }
  size_t bound = 0;
  for (int i = 0; i < b->ntensors; i++) {
    const dl_tensor *t = &b->tensors[i];
    size_t tb = dl_tensor_encode_bound(dl_codec_spec_for(spec, t->name), t->rows, t->cols);
    if (tb == 0) {
      dl_fail(err, "block %llu: tensor '%s' of %u x %u cannot be encoded",
              (unsigned long long)b->block, t->name, t->rows, t->cols);
      return NULL;
    }
    bound += tb;
  }
  dl_encoded_block *e = new_encoded_for(b);
  e->payload = dl_malloc(bound);
  size_t off = 0;
  uint32_t crc = 0;
  for (int i = 0; i < b->ntensors; i++) {
    const dl_tensor *t = &b->tensors[i];
    dl_encoded_tensor *et = &e->tensors[i];
    snprintf(et->name, sizeof et->name, "%s", t->name);
    et->offset = off;
    if (encode_tensor_hot(dl_codec_spec_for(spec, t->name), zstd_level, t, e->payload + off,
                          bound - off, &et->wire, &crc, err)) {
      dl_encoded_block_unref(e);
      return NULL;
    }
    off += et->wire.wire_bytes;
    e->raw_bytes += (size_t)t->rows * t->cols * sizeof(float);
  }
  e->payload_bytes = off;
  seal_crc(e, crc);
  return e;
}

// Whether b's arena already is its payload: every tensor float32 without
// zstd, laid out back to back from the arena's start.
static int arena_is_payload(const dl_target_block *b, const dl_codec_spec *spec, int zstd_level) {
  if (!b->arena || zstd_level > 0 || b->ntensors <= 0 || b->ntensors > DL_MAX_TENSORS) return 0;
  size_t off = 0;
  for (int i = 0; i < b->ntensors; i++) {
    const dl_tensor *t = &b->tensors[i];
    size_t bytes = dl_codec_quantized_bytes(DL_CODEC_F32, t->rows, t->cols);
    if (bytes == 0 || dl_codec_spec_for(spec, t->name) != DL_CODEC_F32 ||
        (const uint8_t *)t->data != b->arena + off)
      return 0;
    off += bytes;
  }
  return 1;
}

dl_encoded_block *dl_encode_block_take(dl_target_block *b, const dl_codec_spec *spec,
                                       int zstd_level, dl_err *err) {
  if (!arena_is_payload(b, spec, zstd_level)) return dl_encode_block(b, spec, zstd_level, err);
  dl_encoded_block *e = new_encoded_for(b);
  size_t off = 0;
  for (int i = 0; i < b->ntensors; i++) {
    const dl_tensor *t = &b->tensors[i];
    dl_encoded_tensor *et = &e->tensors[i];
    size_t bytes = (size_t)t->rows * t->cols * sizeof(float);
    snprintf(et->name, sizeof et->name, "%s", t->name);
    et->offset = off;
    et->wire = (dl_tensor_wire){.codec = DL_CODEC_F32, .rows = t->rows, .cols = t->cols, .wire_bytes = bytes};
    off += bytes;
  }
  e->raw_bytes = e->payload_bytes = off;
  // The arena becomes the payload; b's tensors still point into it, and stay
  // valid until the block is unreferenced (b no longer frees it).
  e->payload = b->arena;
  b->arena = NULL;
  b->arena_bytes = b->arena_used = 0;
  seal(e);
  return e;
}

dl_encoded_block *dl_encoded_block_ref(dl_encoded_block *e) {
  atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
  return e;
}

void dl_encoded_block_unref(dl_encoded_block *e) {
  if (!e) return;
  if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) {
    free(e->payload);
    free(e);
  }
}

void dl_encoded_block_to_msg(const dl_encoded_block *e, Distill__Block *msg,
                             dl_block_msg_storage *st) {
  distill__block__init(msg);
  msg->block = e->block;
  msg->resolution = e->resolution;
  msg->first_sample = e->first_sample;
  msg->num_samples = e->num_samples;
  msg->checksum = e->checksum;
  msg->checksum_kind = (Distill__ChecksumKind)e->checksum_kind;
  msg->payload_bytes = e->payload_bytes;
  msg->n_tensors = (size_t)e->ntensors;
  msg->tensors = st->ptrs;
  for (int i = 0; i < e->ntensors; i++) {
    Distill__TensorInfo *t = &st->infos[i];
    distill__tensor_info__init(t);
    t->name = (char *)e->tensors[i].name;
    t->codec = (Distill__Codec)e->tensors[i].wire.codec;
    t->rows = e->tensors[i].wire.rows;
    t->cols = e->tensors[i].wire.cols;
    t->offset = e->tensors[i].offset;
    t->wire_bytes = e->tensors[i].wire.wire_bytes;
    t->zstd = e->tensors[i].wire.zstd;
    st->ptrs[i] = t;
  }
}

uint8_t *dl_encoded_block_pack_envelope(const dl_encoded_block *e, size_t *n) {
  dl_envelope env;
  dl_envelope_init(&env);
  Distill__Block msg;
  dl_block_msg_storage st;
  dl_encoded_block_to_msg(e, &msg, &st);
  env.body_case = DISTILL__ENVELOPE__BODY_BLOCK;
  env.block = &msg;
  return dl_envelope_pack(&env, n);
}

static dl_tensor_wire wire_of(const Distill__TensorInfo *t) {
  return (dl_tensor_wire){.codec = (dl_codec)t->codec, .rows = t->rows, .cols = t->cols,
                          .zstd = t->zstd, .wire_bytes = (size_t)t->wire_bytes};
}

static int check_payload(const Distill__Block *msg, const uint8_t *payload, size_t n, dl_err *err) {
  if (n != msg->payload_bytes)
    return dl_fail(err, "block %llu: payload of %zu bytes, envelope says %llu",
                   (unsigned long long)msg->block, n, (unsigned long long)msg->payload_bytes);
  if (dl_block_checksum(msg, payload, n) != msg->checksum)
    return dl_fail(err, "block %llu: payload checksum mismatch", (unsigned long long)msg->block);
  return 0;
}

// Copies payload into a new buffer, checking its CRC32C piece by piece as it
// is copied (the xxHash64 of old stores before). Returns it, or NULL.
static uint8_t *copy_checked(const Distill__Block *msg, const uint8_t *payload, size_t n, dl_err *err) {
  if (msg->checksum_kind != DISTILL__CHECKSUM_KIND__CHECKSUM_CRC32C || n != msg->payload_bytes) {
    if (check_payload(msg, payload, n, err)) return NULL;
    uint8_t *copy = dl_malloc(n ? n : 1);
    memcpy(copy, payload, n);
    return copy;
  }
  uint8_t *copy = dl_malloc(n ? n : 1);
  uint32_t crc = crc_seed(checksum_seed(msg));
  for (size_t off = 0; off < n; off += kHotBytes) {
    size_t len = n - off < kHotBytes ? n - off : kHotBytes;
    memcpy(copy + off, payload + off, len);
    crc = dl_crc32c(crc, copy + off, len);
  }
  if (crc != msg->checksum) {
    free(copy);
    dl_fail(err, "block %llu: payload checksum mismatch", (unsigned long long)msg->block);
    return NULL;
  }
  return copy;
}

dl_encoded_block *dl_encoded_block_from_msg(const Distill__Block *msg, const uint8_t *payload,
                                            size_t n, dl_err *err) {
  uint8_t *copy = copy_checked(msg, payload, n, err);
  if (!copy) return NULL;
  dl_encoded_block *e = new_encoded(msg->block, msg->resolution, msg->first_sample, msg->num_samples,
                                    (int)msg->n_tensors, (int)msg->checksum_kind);
  e->checksum = msg->checksum;
  for (size_t i = 0; i < msg->n_tensors; i++) {
    snprintf(e->tensors[i].name, DL_TENSOR_NAME_MAX, "%s", msg->tensors[i]->name);
    e->tensors[i].wire = wire_of(msg->tensors[i]);
    e->tensors[i].offset = msg->tensors[i]->offset;
    e->raw_bytes += (size_t)msg->tensors[i]->rows * msg->tensors[i]->cols * sizeof(float);
  }
  e->payload = copy;
  e->payload_bytes = n;
  return e;
}

// Whether the tensors tile the payload in order, as every encoder here lays
// them out: then the checksum can run tensor by tensor with the decoding.
static int tiles_payload(const Distill__Block *msg, size_t n) {
  uint64_t off = 0;
  for (size_t i = 0; i < msg->n_tensors; i++) {
    if (msg->tensors[i]->offset != off) return 0;
    off += msg->tensors[i]->wire_bytes;
  }
  return off == n;
}

// Decodes one tensor into out; continues *crc over its bytes when crc is set.
// Returns 1 when it was borrowed, 0 when decoded, -1 on error.
static int decode_tensor(const Distill__TensorInfo *t, const uint8_t *payload, dl_target_block *out,
                         int borrow, uint32_t *crc, uint64_t block, dl_err *err) {
  dl_tensor_wire w = wire_of(t);
  const uint8_t *src = payload + t->offset;
  if (borrow && w.codec == DL_CODEC_F32 && !w.zstd && (uintptr_t)src % sizeof(float) == 0 &&
      out->ntensors < DL_MAX_TENSORS) {
    dl_tensor *bt = &out->tensors[out->ntensors++];
    snprintf(bt->name, sizeof bt->name, "%s", t->name);
    bt->rows = t->rows;
    bt->cols = t->cols;
    bt->data = (float *)(uintptr_t)src;  // the caller keeps payload alive
    bt->borrowed = 1;
    if (crc) *crc = dl_crc32c(*crc, src, w.wire_bytes);
    return 1;
  }
  float *dst = dl_target_block_add_uninitialized(out, t->name, t->rows, t->cols);
  if (!dst) return dl_fail(err, "block %llu: too many tensors", (unsigned long long)block);
  if (!crc) return dl_tensor_decode(&w, src, dst, err);
  if (!w.zstd) return dequantize_hot(&w, src, dst, crc, err);
  *crc = dl_crc32c(*crc, src, w.wire_bytes);  // the compressed bytes, then their decoding
  return dl_tensor_decode(&w, src, dst, err);
}

static int decode_block(const Distill__Block *msg, const uint8_t *payload, size_t n,
                        dl_target_block *out, int borrow, dl_err *err) {
  memset(out, 0, sizeof *out);
  // CRC32C over tensors that tile the payload: checked while decoding. Else
  // (xxHash64 of old stores, a layout no encoder here writes) checked first.
  int hot = msg->checksum_kind == DISTILL__CHECKSUM_KIND__CHECKSUM_CRC32C && n == msg->payload_bytes &&
            tiles_payload(msg, n);
  if (!hot && check_payload(msg, payload, n, err)) return -1;
  uint32_t crc = hot ? crc_seed(checksum_seed(msg)) : 0;
  out->block = msg->block;
  out->resolution = msg->resolution;
  out->first_sample = msg->first_sample;
  out->num_samples = msg->num_samples;
  int borrowed = 0;
  for (size_t i = 0; i < msg->n_tensors; i++) {
    int rc = decode_tensor(msg->tensors[i], payload, out, borrow, hot ? &crc : NULL, msg->block, err);
    if (rc < 0) {
      dl_target_block_free(out);
      // A corrupted payload is reported as such, whatever its decoding said.
      if (hot && check_payload(msg, payload, n, err)) return -1;
      dl_fail_prefix(err, msg->tensors[i]->name);
      return -1;
    }
    borrowed += rc;
  }
  if (hot && crc != msg->checksum) {
    dl_target_block_free(out);
    return dl_fail(err, "block %llu: payload checksum mismatch", (unsigned long long)msg->block);
  }
  return borrowed;
}

int dl_decode_block_msg(const Distill__Block *msg, const uint8_t *payload, size_t n,
                        dl_target_block *out, dl_err *err) {
  return decode_block(msg, payload, n, out, 0, err) < 0 ? -1 : 0;
}

int dl_decode_block_msg_borrowing(const Distill__Block *msg, const uint8_t *payload, size_t n,
                                  dl_target_block *out, dl_err *err) {
  return decode_block(msg, payload, n, out, 1, err);
}
