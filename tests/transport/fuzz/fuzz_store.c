// libFuzzer target: the target-store readers. The input is parsed as an
// index of either version (raw, then with its checksum fixed so the identity
// and entry checks run) and as a shard whose first record is located by the
// first 16 bytes (the record format the spill store shares).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/target_store.h"
#include "transport/xxhash64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dl_store_index ix;
  dl_err err;
  if (dl_store_index_parse(data, size, &ix, &err) == 0) dl_store_index_free(&ix);
  if (size >= 8) {
    uint8_t *copy = malloc(size);
    memcpy(copy, data, size);
    uint64_t h = dl_xxhash64(copy, size - 8, 0);
    memcpy(copy + size - 8, &h, 8);
    if (dl_store_index_parse(copy, size, &ix, &err) == 0) dl_store_index_free(&ix);
    free(copy);
  }
  if (size >= 16) {
    uint64_t off, len;
    memcpy(&off, data, 8);
    memcpy(&len, data + 8, 8);
    dl_envelope *env;
    const uint8_t *payload;
    size_t n;
    if (dl_store_record_parse(data + 16, size - 16, off % (size - 15), len % (size - 15), &env,
                              &payload, &n, &err) == 0) {
      dl_target_block b;
      if (dl_decode_block_msg(env->block, payload, n, &b, &err) == 0) dl_target_block_free(&b);
      dl_envelope_free(env);
    }
  }
  return 0;
}
