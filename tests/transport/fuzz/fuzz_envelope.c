// libFuzzer target: the envelope decoder and the BLOCK path behind it. Input:
// [u16 envelope length][envelope][payload]. Besides the raw bytes, a copy
// with a correct envelope checksum (and a correct block checksum) is decoded
// too, so the fuzzer reaches the validation and codec code past the gates.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/encoded_block.h"
#include "transport/envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t env_len = (size_t)data[0] | ((size_t)data[1] << 8);
  if (env_len > size - 2) env_len = size - 2;
  const uint8_t *env = data + 2, *payload = env + env_len;
  size_t payload_len = size - 2 - env_len;
  dl_envelope *e;
  dl_err err;
  if (dl_envelope_decode(env, env_len, &e, &err) == 0) dl_envelope_free(e);

  Distill__Envelope *raw = distill__envelope__unpack(NULL, env_len, env);
  if (!raw) return 0;
  size_t n;
  uint8_t *sealed = dl_envelope_pack(raw, &n);
  if (raw->body_case == DISTILL__ENVELOPE__BODY_BLOCK) {
    raw->block->checksum = dl_block_checksum(raw->block, payload, payload_len);
    raw->block->payload_bytes = payload_len;
    free(sealed);
    sealed = dl_envelope_pack(raw, &n);
  }
  distill__envelope__free_unpacked(raw, NULL);
  if (dl_envelope_decode(sealed, n, &e, &err) == 0) {
    if (e->body_case == DISTILL__ENVELOPE__BODY_BLOCK) {
      dl_target_block b;
      if (dl_decode_block_msg(e->block, payload, payload_len, &b, &err) == 0) dl_target_block_free(&b);
    }
    dl_envelope_free(e);
  }
  free(sealed);
  return 0;
}
