// Acceptance (codec fidelity on realistic data): the token features of the
// reference DINOv2 models (tests/ref/dinov2/*_io.safetensors), encoded and
// decoded with every codec: per-token cosine similarity >= 0.99999 for f16,
// >= 0.999 for int8; bytes per value reported (zstd level 3 on top).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file_io.h"
#include "tests/harness.h"
#include "transport/codec.h"

// Just enough safetensors to find one float32 tensor: 8-byte header length,
// JSON header, data. Returns the data and its element count, or NULL.
static const float *find_tensor(const dl_mapped_file *f, const char *name, size_t *count) {
  if (f->size < 8) return NULL;
  uint64_t hlen;
  memcpy(&hlen, f->data, 8);
  if (hlen > f->size - 8) return NULL;
  char *json = malloc(hlen + 1);
  memcpy(json, f->data + 8, hlen);
  json[hlen] = '\0';
  char key[256];
  snprintf(key, sizeof key, "\"%s\":", name);
  const char *p = strstr(json, key);
  const char *offs = p ? strstr(p, "\"data_offsets\":[") : NULL;
  unsigned long long a, b;
  const float *out = NULL;
  if (offs && sscanf(offs, "\"data_offsets\":[%llu,%llu]", &a, &b) == 2 && b >= a &&
      8 + hlen + b <= f->size && (b - a) % 4 == 0) {
    out = (const float *)(f->data + 8 + hlen + a);
    *count = (size_t)(b - a) / 4;
  }
  free(json);
  return out;
}

static int open_ref(const char *file, dl_mapped_file *f) {
  const char *dirs[] = {DISTILL_SOURCE_DIR "/tests/ref/dinov2", DISTILL_SOURCE_DIR "/../shared/ref/dinov2"};
  for (int i = 0; i < 2; i++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dirs[i], file);
    if (access(path, R_OK) == 0 && dl_map_file(path, f, NULL) == 0) {
      printf("reference: %s\n", path);
      return 0;
    }
  }
  return -1;
}

typedef struct stats {
  double min_cos;
  size_t values, wire_bytes, tokens;
} stats;

static void measure(const float *x, size_t count, int cols, dl_codec codec, stats *s) {
  uint32_t rows = (uint32_t)(count / (size_t)cols);
  size_t cap = dl_tensor_encode_bound(codec, rows, (uint32_t)cols);
  uint8_t *buf = malloc(cap);
  float *y = malloc(count * sizeof(float));
  float *xa = malloc(count * sizeof(float));  // aligned copy of the mapped data
  memcpy(xa, x, count * sizeof(float));
  dl_tensor_wire w;
  dl_err err;
  if (dl_tensor_encode(codec, 3, xa, rows, (uint32_t)cols, buf, cap, &w, &err) ||
      dl_tensor_decode(&w, buf, y, &err)) {
    s->min_cos = -2;
  } else {
    for (uint32_t r = 0; r < rows; r++) {
      double dot = 0, na = 0, nb = 0;
      for (int c = 0; c < cols; c++) {
        double a = xa[(size_t)r * cols + c], b = y[(size_t)r * cols + c];
        dot += a * b;
        na += a * a;
        nb += b * b;
      }
      double cs = dot / sqrt(na * nb);
      if (cs < s->min_cos) s->min_cos = cs;
    }
    s->tokens += rows;
    s->values += count;
    s->wire_bytes += w.wire_bytes;
  }
  free(buf);
  free(y);
  free(xa);
}

int main(void) {
  const char *files[] = {"vit_mlp_io.safetensors", "vit_swiglu_reg4_io.safetensors"};
  const char *tensors[] = {"s56.x_norm_patchtokens", "s56.x_norm_clstoken", "s42.x_norm_patchtokens",
                           "s84.x_norm_patchtokens", "s70.x_norm_patchtokens", "s56.x_prenorm",
                           "s56.x_norm_regtokens"};
  const double need[DL_NUM_CODECS] = {1.0, 0.99999, 0.9999, 0.999};
  stats st[DL_NUM_CODECS];
  for (int c = 0; c < DL_NUM_CODECS; c++) st[c] = (stats){.min_cos = 2};
  int found = 0;
  for (int fi = 0; fi < 2; fi++) {
    dl_mapped_file f;
    if (open_ref(files[fi], &f)) continue;
    for (size_t ti = 0; ti < sizeof tensors / sizeof tensors[0]; ti++) {
      size_t count;
      const float *x = find_tensor(&f, tensors[ti], &count);
      if (!x) continue;
      found++;
      for (int c = 0; c < DL_NUM_CODECS; c++) measure(x, count, 128, (dl_codec)c, &st[c]);
    }
    dl_unmap_file(&f);
  }
  CHECK(found >= 8, "%d reference tensors found (embed 128)", found);
  for (int c = 0; c < DL_NUM_CODECS; c++) {
    double bpv = st[c].values ? (double)st[c].wire_bytes / (double)st[c].values : 0;
    // f32 is lossless, so its cosine is 1 up to the rounding of the sums.
    CHECK(st[c].min_cos >= need[c] - (c == 0 ? 1e-12 : 0),
          "%-4s: min per-token cosine %.9f over %zu tokens (need >= %g), %.3f bytes/value with zstd 3",
          dl_codec_name((dl_codec)c), st[c].min_cos, st[c].tokens, need[c], bpv);
  }
  return dl_test_summary("transport_codec_fidelity");
}
