#include "transport/envelope.h"

#include <stdlib.h>
#include <string.h>

#include "transport/codec.h"
#include "transport/xxhash64.h"
#include "transport/target_block.h"

void dl_envelope_init(dl_envelope *e) {
  distill__envelope__init(e);
  e->version = DL_PROTOCOL_VERSION;
}

static uint64_t content_checksum(const dl_envelope *e) {
  dl_envelope copy = *e;
  copy.checksum = 0;
  size_t n = distill__envelope__get_packed_size(&copy);
  uint8_t small[512];
  uint8_t *buf = n <= sizeof small ? small : dl_malloc(n);
  distill__envelope__pack(&copy, buf);
  uint64_t h = dl_xxhash64(buf, n, 0x64697374696c6cULL);
  if (buf != small) free(buf);
  return h;
}

uint8_t *dl_envelope_pack(const dl_envelope *e, size_t *n) {
  dl_envelope sealed = *e;
  sealed.checksum = content_checksum(e);
  *n = distill__envelope__get_packed_size(&sealed);
  uint8_t *buf = dl_malloc(*n ? *n : 1);
  distill__envelope__pack(&sealed, buf);
  return buf;
}

void dl_envelope_free(dl_envelope *e) {
  if (e) distill__envelope__free_unpacked(e, NULL);
}

static int valid_string(const char *s, size_t max) { return s && strnlen(s, max) < max; }

static int validate_block(const Distill__Block *b, dl_err *err) {
  if (b->n_tensors == 0 || b->n_tensors > DL_MAX_TENSORS)
    return dl_fail(err, "BLOCK with %zu tensors (1..%d allowed)", b->n_tensors, DL_MAX_TENSORS);
  if (b->num_samples == 0 || b->num_samples > (1u << 20))
    return dl_fail(err, "BLOCK with %u samples", b->num_samples);
  if (b->checksum_kind != DISTILL__CHECKSUM_KIND__CHECKSUM_XXHASH64 &&
      b->checksum_kind != DISTILL__CHECKSUM_KIND__CHECKSUM_CRC32C)
    return dl_fail(err, "BLOCK with checksum kind %d", (int)b->checksum_kind);
  uint64_t values = 0;
  for (size_t i = 0; i < b->n_tensors; i++) {
    const Distill__TensorInfo *t = b->tensors[i];
    if (!valid_string(t->name, DL_TENSOR_NAME_MAX) || t->name[0] == '\0')
      return dl_fail(err, "BLOCK tensor %zu: bad name", i);
    size_t q = dl_codec_quantized_bytes((int)t->codec, t->rows, t->cols);
    if (q == 0)
      return dl_fail(err, "BLOCK tensor '%s': codec %d, %u x %u is invalid", t->name, (int)t->codec,
                     t->rows, t->cols);
    if (t->wire_bytes == 0 || (!t->zstd && t->wire_bytes != q))
      return dl_fail(err, "BLOCK tensor '%s': %llu wire bytes for %zu quantized", t->name,
                     (unsigned long long)t->wire_bytes, q);
    if (t->offset > b->payload_bytes || t->wire_bytes > b->payload_bytes - t->offset)
      return dl_fail(err, "BLOCK tensor '%s' lies outside the %llu-byte payload", t->name,
                     (unsigned long long)b->payload_bytes);
    // Bounds what a small zstd frame can make the receiver allocate.
    values += (uint64_t)t->rows * t->cols;
    if (values > DL_CODEC_MAX_VALUES) return dl_fail(err, "BLOCK holds too many values");
  }
  return 0;
}

static int validate_body(const dl_envelope *e, dl_err *err) {
  switch (e->body_case) {
    case DISTILL__ENVELOPE__BODY_HELLO: {
      const Distill__Hello *h = e->hello;
      if (!valid_string(h->group, DL_GROUP_NAME_MAX)) return dl_fail(err, "HELLO: bad group name");
      if (h->world == 0 || h->world > DL_MAX_WORLD || h->rank >= h->world)
        return dl_fail(err, "HELLO: rank %u of world %u (1..%d ranks)", h->rank, h->world, DL_MAX_WORLD);
      if (h->n_codecs > 16) return dl_fail(err, "HELLO: %zu codecs", h->n_codecs);
      if (h->stream && strnlen(h->stream, DL_STREAM_TEXT_MAX) >= DL_STREAM_TEXT_MAX)
        return dl_fail(err, "HELLO: stream text longer than %d bytes", DL_STREAM_TEXT_MAX - 1);
      if (h->n_plan > DL_PLAN_MAX_PHASES) return dl_fail(err, "HELLO: %zu plan phases", h->n_plan);
      for (size_t i = 0; i < h->n_plan; i++) {
        const Distill__Phase *p = h->plan[i];
        if (p->first_block >= p->end_block || p->resolution == 0 || p->resolution > 65536)
          return dl_fail(err, "HELLO: plan phase %zu is blocks [%llu, %llu) at %u px", i,
                         (unsigned long long)p->first_block, (unsigned long long)p->end_block, p->resolution);
        if (i > 0 && p->first_block < h->plan[i - 1]->end_block)
          return dl_fail(err, "HELLO: plan phase %zu overlaps the one before", i);
      }
      return 0;
    }
    case DISTILL__ENVELOPE__BODY_WELCOME: {
      const Distill__Welcome *w = e->welcome;
      if (!valid_string(w->teacher_id, 256)) return dl_fail(err, "WELCOME: bad teacher id");
      if (w->embed_dim > DL_TARGET_DIM_MAX || w->patch_dim > DL_TARGET_DIM_MAX)
        return dl_fail(err, "WELCOME: target widths %u (cls) and %u (patch), at most %d", w->embed_dim, w->patch_dim,
                       DL_TARGET_DIM_MAX);
      return 0;
    }
    case DISTILL__ENVELOPE__BODY_REJECT:
      return valid_string(e->reject->reason, 1024) ? 0 : dl_fail(err, "REJECT: bad reason");
    case DISTILL__ENVELOPE__BODY_REQUEST:
      if (e->request->n_blocks == 0 || e->request->n_blocks > DL_REQUEST_MAX_BLOCKS)
        return dl_fail(err, "REQUEST for %zu blocks", e->request->n_blocks);
      return 0;
    case DISTILL__ENVELOPE__BODY_BLOCK: return validate_block(e->block, err);
    case DISTILL__ENVELOPE__BODY_HOLD:
      if (e->hold->n_blocks > DL_REQUEST_MAX_BLOCKS) return dl_fail(err, "HOLD for %zu blocks", e->hold->n_blocks);
      return 0;
    case DISTILL__ENVELOPE__BODY_HEARTBEAT:
    case DISTILL__ENVELOPE__BODY_BYE: return 0;
    default: return dl_fail(err, "envelope without a known message");
  }
}

int dl_envelope_decode(const uint8_t *data, size_t n, dl_envelope **out, dl_err *err) {
  *out = NULL;
  if (n > DL_ENVELOPE_MAX_BYTES) return dl_fail(err, "envelope of %zu bytes is too large", n);
  dl_envelope *e = distill__envelope__unpack(NULL, n, data);
  if (!e) return dl_fail(err, "envelope is not a valid protobuf message");
  if (e->checksum != content_checksum(e)) {
    dl_envelope_free(e);
    return dl_fail(err, "envelope checksum mismatch");
  }
  if (e->version != DL_PROTOCOL_VERSION && e->body_case != DISTILL__ENVELOPE__BODY_HELLO) {
    // A HELLO of another version still decodes, so the teacher can REJECT it
    // with the reason instead of staying silent.
    dl_fail(err, "envelope of protocol version %u (this is %d)", e->version, DL_PROTOCOL_VERSION);
    dl_envelope_free(e);
    return -1;
  }
  if (validate_body(e, err) != 0) {
    dl_envelope_free(e);
    return -1;
  }
  *out = e;
  return 0;
}
