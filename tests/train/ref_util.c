#include "tests/train/ref_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

float *ref_read(const dl_safetensors *st, const char *name, size_t *numel) {
  const dl_st_tensor *t = dl_st_find(st, name);
  if (!t) return NULL;
  float *x = malloc((size_t)t->numel * sizeof(float) + 1);
  dl_err err;
  if (t->dtype == DL_ST_BOOL || t->dtype == DL_ST_U8) {
    for (int64_t i = 0; i < t->numel; i++) x[i] = t->data[i] ? 1.0f : 0.0f;
  } else if (dl_st_read_f32(t, x, &err)) {
    free(x);
    return NULL;
  }
  if (numel) *numel = (size_t)t->numel;
  return x;
}

double ref_compare(const dl_safetensors *st, const char *name, const float *got, size_t n, double tol) {
  size_t m = 0;
  float *ref = ref_read(st, name, &m);
  CHECK(ref && m == n, "%s: reference present with %zu values (has %zu)", name, n, m);
  if (!ref || m != n) {
    free(ref);
    return 1e30;
  }
  double e = dl_rel_err(got, ref, n);
  CHECK(e <= tol, "%s: relative error %.3g <= %.0e", name, e, tol);
  free(ref);
  return e;
}

int ref_load_layout(const dl_safetensors *st, const char *prefix, const dl_vit_layout *l, float *dst) {
  int n = 0;
  char name[160];
  for (int i = 0; i < l->count; i++) {
    const dl_param_entry *e = &l->entries[i];
    if (e->numel == 0) continue;  // an absent tensor (no registers, no mask token)
    snprintf(name, sizeof name, "%s.%s", prefix, e->name);
    size_t got = 0;
    float *v = ref_read(st, name, &got);
    if (v && got == e->numel) memcpy(dst + e->offset, v, got * sizeof(float)), n++;
    free(v);
  }
  return n;
}

float ref_rand(unsigned long long *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return (float)((*s >> 40) * (1.0 / 8388608.0)) - 1.0f;
}
