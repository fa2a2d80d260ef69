// libFuzzer target: the tensor decoders. Input: [codec][zstd flag][u16 rows]
// [u16 cols][encoded bytes]; tensors are capped at 2^16 values to keep runs fast.
#include <stdint.h>
#include <stdlib.h>

#include "transport/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 6) return 0;
  dl_tensor_wire w = {.codec = (dl_codec)data[0], .zstd = data[1] & 1,
                      .rows = (uint32_t)(data[2] | data[3] << 8), .cols = (uint32_t)(data[4] | data[5] << 8),
                      .wire_bytes = size - 6};
  if ((uint64_t)w.rows * w.cols > (1u << 16)) return 0;
  float *out = malloc(((size_t)w.rows * w.cols + 1) * sizeof(float));
  dl_err err;
  dl_tensor_decode(&w, data + 6, out, &err);
  free(out);
  return 0;
}
