// libFuzzer target: the safetensors parser and the float conversion of every
// tensor it accepts. Any crash, sanitizer report or leak is a finding.
#include <stdint.h>
#include <stdlib.h>

#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dl_safetensors st;
  dl_err err;
  if (dl_st_parse(data, size, &st, &err) != 0) return 0;
  for (int i = 0; i < st.count; i++) {
    const dl_st_tensor *t = &st.tensors[i];
    if (t->numel > (1 << 20)) continue;
    float *out = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
    dl_st_read_f32(t, out, &err);
    free(out);
  }
  dl_st_meta_get(&st, "format");
  dl_st_close(&st);
  return 0;
}
