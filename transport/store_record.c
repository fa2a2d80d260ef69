#include "transport/store_record.h"

#include <stdlib.h>
#include <string.h>

#define RECORD_MAGIC "DLTR"

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

void dl_store_record_prepare(const dl_encoded_block *e, dl_store_record *rec) {
  rec->envelope = dl_encoded_block_pack_envelope(e, &rec->envelope_bytes);
  rec->payload = e->payload;
  rec->payload_bytes = e->payload_bytes;
  uint32_t env_len = (uint32_t)rec->envelope_bytes;
  uint64_t pay_len = e->payload_bytes;
  memcpy(rec->header, RECORD_MAGIC, 4);
  memcpy(rec->header + 4, &env_len, 4);
  memcpy(rec->header + 8, &pay_len, 8);
}

uint64_t dl_store_record_bytes(const dl_store_record *rec) {
  return DL_STORE_RECORD_HEADER + (uint64_t)rec->envelope_bytes + rec->payload_bytes;
}

void dl_store_record_copy_to(const dl_store_record *rec, uint8_t *dst) {
  memcpy(dst, rec->header, DL_STORE_RECORD_HEADER);
  memcpy(dst + DL_STORE_RECORD_HEADER, rec->envelope, rec->envelope_bytes);
  memcpy(dst + DL_STORE_RECORD_HEADER + rec->envelope_bytes, rec->payload, rec->payload_bytes);
}

void dl_store_record_release(dl_store_record *rec) {
  free(rec->envelope);
  rec->envelope = NULL;
}

int dl_store_record_parse(const uint8_t *bytes, size_t size, uint64_t offset, uint64_t length,
                          dl_envelope **env, const uint8_t **payload, size_t *payload_bytes,
                          dl_err *err) {
  *env = NULL;
  if (offset > size || length > size - offset || length < DL_STORE_RECORD_HEADER)
    return dl_fail(err, "record [%llu, +%llu) outside the %zu bytes that hold it",
                   (unsigned long long)offset, (unsigned long long)length, size);
  const uint8_t *p = bytes + offset;
  if (memcmp(p, RECORD_MAGIC, 4) != 0)
    return dl_fail(err, "no record at offset %llu", (unsigned long long)offset);
  uint64_t env_len = rd32(p + 4), pay_len = rd64(p + 8);
  if (pay_len > length || env_len != length - DL_STORE_RECORD_HEADER - pay_len)
    return dl_fail(err, "record sizes do not add up");
  if (dl_envelope_decode(p + DL_STORE_RECORD_HEADER, env_len, env, err)) return -1;
  if ((*env)->body_case != DISTILL__ENVELOPE__BODY_BLOCK) {
    dl_envelope_free(*env);
    *env = NULL;
    return dl_fail(err, "record holds no BLOCK");
  }
  *payload = p + DL_STORE_RECORD_HEADER + env_len;
  *payload_bytes = (size_t)pay_len;
  return 0;
}

int dl_store_record_open(const uint8_t *bytes, size_t size, uint64_t offset, uint64_t length,
                         uint64_t block, uint32_t resolution, dl_envelope **env,
                         const uint8_t **payload, size_t *payload_bytes, dl_err *err) {
  if (dl_store_record_parse(bytes, size, offset, length, env, payload, payload_bytes, err))
    return -1;
  const Distill__Block *b = (*env)->block;
  if (b->block == block && b->resolution == resolution) return 0;
  unsigned long long held = b->block;
  unsigned held_res = b->resolution;
  dl_envelope_free(*env);
  *env = NULL;
  return dl_fail(err, "the record for block %llu at %u holds block %llu at %u",
                 (unsigned long long)block, resolution, held, held_res);
}

int dl_store_record_load(const uint8_t *bytes, size_t size, uint64_t offset, uint64_t length,
                         uint64_t block, uint32_t resolution, dl_encoded_block **out,
                         dl_err *err) {
  dl_envelope *env;
  const uint8_t *payload = NULL;
  size_t n = 0;
  *out = NULL;
  if (dl_store_record_open(bytes, size, offset, length, block, resolution, &env, &payload, &n,
                           err))
    return -1;
  *out = dl_encoded_block_from_msg(env->block, payload, n, err);
  dl_envelope_free(env);
  return *out ? 0 : -1;
}
