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
uint64_t dl_block_checksum(const Distill__Block *msg, const uint8_t *payload, size_t n) {
  uint64_t meta[5] = {msg->block, msg->resolution, msg->first_sample, msg->num_samples,
                      msg->payload_bytes};
  uint64_t seed = dl_xxhash64(meta, sizeof meta, msg->n_tensors);
  for (size_t i = 0; i < msg->n_tensors; i++) {
    const Distill__TensorInfo *t = msg->tensors[i];
    uint64_t f[6] = {(uint64_t)t->codec, t->rows, t->cols, t->offset, t->wire_bytes, t->zstd};
    seed = dl_xxhash64(f, sizeof f, seed);
    seed = dl_xxhash64(t->name, strlen(t->name), seed);
  }
  if (msg->checksum_kind == DISTILL__CHECKSUM_KIND__CHECKSUM_CRC32C)
    return dl_crc32c((uint32_t)(seed ^ (seed >> 32)), payload, n);
  return dl_xxhash64(payload, n, seed);
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
  for (int i = 0; i < b->ntensors; i++) {
    const dl_tensor *t = &b->tensors[i];
    dl_encoded_tensor *et = &e->tensors[i];
    snprintf(et->name, sizeof et->name, "%s", t->name);
    et->offset = off;
    if (dl_tensor_encode(dl_codec_spec_for(spec, t->name), zstd_level, t->data, t->rows, t->cols,
                         e->payload + off, bound - off, &et->wire, err)) {
      dl_encoded_block_unref(e);
      return NULL;
    }
    off += et->wire.wire_bytes;
    e->raw_bytes += (size_t)t->rows * t->cols * sizeof(float);
  }
  e->payload_bytes = off;
  seal(e);
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

dl_encoded_block *dl_encoded_block_from_msg(const Distill__Block *msg, const uint8_t *payload,
                                            size_t n, dl_err *err) {
  if (check_payload(msg, payload, n, err)) return NULL;
  dl_encoded_block *e = new_encoded(msg->block, msg->resolution, msg->first_sample, msg->num_samples,
                                    (int)msg->n_tensors, (int)msg->checksum_kind);
  e->checksum = msg->checksum;
  for (size_t i = 0; i < msg->n_tensors; i++) {
    snprintf(e->tensors[i].name, DL_TENSOR_NAME_MAX, "%s", msg->tensors[i]->name);
    e->tensors[i].wire = wire_of(msg->tensors[i]);
    e->tensors[i].offset = msg->tensors[i]->offset;
    e->raw_bytes += (size_t)msg->tensors[i]->rows * msg->tensors[i]->cols * sizeof(float);
  }
  e->payload = dl_malloc(n ? n : 1);
  memcpy(e->payload, payload, n);
  e->payload_bytes = n;
  return e;
}

static int decode_block(const Distill__Block *msg, const uint8_t *payload, size_t n,
                        dl_target_block *out, int borrow, dl_err *err) {
  memset(out, 0, sizeof *out);
  int borrowed = 0;
  if (check_payload(msg, payload, n, err)) return -1;
  out->block = msg->block;
  out->resolution = msg->resolution;
  out->first_sample = msg->first_sample;
  out->num_samples = msg->num_samples;
  for (size_t i = 0; i < msg->n_tensors; i++) {
    const Distill__TensorInfo *t = msg->tensors[i];
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
      borrowed++;
      continue;
    }
    float *dst = dl_target_block_add_uninitialized(out, t->name, t->rows, t->cols);
    if (!dst || dl_tensor_decode(&w, src, dst, err)) {
      if (!dst) dl_fail(err, "block %llu: too many tensors", (unsigned long long)msg->block);
      dl_fail_prefix(err, t->name);
      dl_target_block_free(out);
      return -1;
    }
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
