#include "model/cuda/grad_buckets.h"

#include <stdbool.h>
#include <stdlib.h>

int dl_grad_bucket_bytes_parse(const char *text, size_t *bytes, dl_err *err) {
  if (!text || !*text) {
    *bytes = (size_t)DL_GRAD_BUCKET_DEFAULT_MB << 20;
    return 0;
  }
  char *end;
  const long v = strtol(text, &end, 10);
  if (end == text || *end || v < 0 || v > DL_GRAD_BUCKET_MAX_MB)
    return dl_fail(err, "DISTILL_NCCL_BUCKET_MB='%s' is not a whole number of MiB in [0, %d] (0: one all-reduce "
                   "after the backward pass)", text, DL_GRAD_BUCKET_MAX_MB);
  *bytes = (size_t)v << 20;
  return 0;
}

// Walks the entries from the buffer's end (the first stage to finish)
// towards its start; a layer's range begins at its first entry, and the
// embedding's at 0, so the stages tile the buffer with any padding included.
int dl_grad_buckets_plan(const dl_vit_layout *l, size_t target_bytes, dl_grad_bucket *out) {
  DL_ASSERT(l->count > 0);
  const int depth = l->entries[l->count - 1].layer_id - 1;
  int n = 0;
  size_t hi = l->total;  // the open bucket ends here
  for (int i = l->count - 1; i >= 0; i--) {
    const dl_param_entry *e = &l->entries[i];
    const bool layer_starts_here = i == 0 || l->entries[i - 1].layer_id != e->layer_id;
    if (!layer_starts_here) continue;
    DL_ASSERT(i == 0 || l->entries[i - 1].layer_id == e->layer_id - 1);
    const size_t lo = i == 0 ? 0 : e->offset;
    if (i == 0 || (hi - lo) * sizeof(float) >= target_bytes) {
      DL_ASSERT(n < dl_grad_stage_count(depth));
      out[n++] = (dl_grad_bucket){lo, hi - lo, depth + 1 - e->layer_id};
      hi = lo;
    }
  }
  return n;
}
