// Codec throughput for bench/transport.sh: encode + decode of a 1 MiB float32
// tensor (1024 tokens x 256) on one thread, per codec and zstd level. Prints
// "codec=NAME zstd=L encode_mbps=X decode_mbps=Y roundtrip_mbps=Z bytes_per_value=B"
// in MB (10^6 bytes) of float32 input per second per core, then the rate of
// the two BLOCK payload checksums over the same tensor (the student verifies
// one per block): "checksum=NAME mbps=X".
#include <stdio.h>
#include <stdlib.h>

#include "common/timing.h"
#include "transport/codec.h"
#include "transport/crc32c.h"
#include "transport/synthetic.h"
#include "transport/xxhash64.h"

// MB per second of one checksum over n bytes: the fastest of at least 0.25 s
// of repeats, so that time spent descheduled on a shared machine is left out.
static double checksum_mbps(int crc, const void *data, size_t n) {
  double total = 0, best = 1e9;
  volatile uint64_t sink = 0;
  for (int reps = 0; total < 0.25 || reps < 3; reps++) {
    double t0 = dl_now_seconds();
    sink += crc ? dl_crc32c(0, data, n) : dl_xxhash64(data, n, 0);
    double t = dl_now_seconds() - t0;
    total += t;
    if (t < best) best = t;
  }
  (void)sink;
  return (double)n / best / 1e6;
}

int main(void) {
  enum { R = 1024, C = 256 };
  float *x = malloc((size_t)R * C * sizeof(float)), *y = malloc((size_t)R * C * sizeof(float));
  // Token-like values: a per-token scale times the synthetic noise.
  for (size_t i = 0; i < (size_t)R * C; i++)
    x[i] = dl_synthetic_value(1, 224, 0, i) * (0.5f + (float)(i / C % 7) * 0.25f);
  const double mb = (double)R * C * sizeof(float) / 1e6;
  const int levels[2] = {0, 1};
  for (int c = 0; c < DL_NUM_CODECS; c++)
    for (int li = 0; li < 2; li++) {
      size_t cap = dl_tensor_encode_bound((dl_codec)c, R, C);
      unsigned char *buf = malloc(cap);
      dl_tensor_wire w;
      dl_err err;
      double enc = 0, dec = 0;
      int reps = 0;
      while (enc + dec < 0.5 || reps < 3) {
        double t0 = dl_now_seconds();
        dl_tensor_encode((dl_codec)c, levels[li], x, R, C, buf, cap, &w, &err);
        double t1 = dl_now_seconds();
        if (dl_tensor_decode(&w, buf, y, &err)) {
          fprintf(stderr, "decode failed: %s\n", err.msg);
          return 1;
        }
        dec += dl_now_seconds() - t1;
        enc += t1 - t0;
        reps++;
      }
      printf("codec=%s zstd=%d encode_mbps=%.0f decode_mbps=%.0f roundtrip_mbps=%.0f bytes_per_value=%.3f\n",
             dl_codec_name((dl_codec)c), levels[li], mb * reps / enc, mb * reps / dec,
             mb * reps / (enc + dec), (double)w.wire_bytes / ((double)R * C));
      free(buf);
    }
  const size_t bytes = (size_t)R * C * sizeof(float);
  printf("checksum=crc32c mbps=%.0f implementation=%s\n", checksum_mbps(1, x, bytes), dl_crc32c_implementation());
  printf("checksum=xxhash64 mbps=%.0f\n", checksum_mbps(0, x, bytes));
  free(x);
  free(y);
  return 0;
}
