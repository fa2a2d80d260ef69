// Throughput of the data pipeline: decoded and augmented samples per second
// (DINOv2 crops: 2 global of 224 + 8 local of 98, normalized floats) from a
// folder of JPEGs, through the threaded loader. Prints one figure per repeat
// and the median.
//   bench_data DIR THREADS SAMPLES REPEATS
#include <stdio.h>
#include <stdlib.h>

#include "common/timing.h"
#include "data/loader.h"
#include "data/sample_stream.h"

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: bench_data DIR THREADS SAMPLES REPEATS\n");
    return 2;
  }
  char spec[4096];
  snprintf(spec, sizeof spec, "folder:%s", argv[1]);
  int threads = atoi(argv[2]), samples = atoi(argv[3]), repeats = atoi(argv[4]);
  if (threads < 1 || samples < 1 || repeats < 1 || repeats > 100) {
    fprintf(stderr, "bench_data: THREADS, SAMPLES and REPEATS must be positive\n");
    return 2;
  }
  dl_dataset *ds;
  dl_err err;
  if (dl_dataset_open(spec, &ds, &err) != 0) {
    fprintf(stderr, "bench_data: %s\n", err.msg);
    return 2;
  }
  // Blocks of 8 samples: several blocks in flight keep both threads busy.
  dl_sample_stream st = {ds, 0, 8, dl_crop_spec_dinov2(), 0};
  int blocks = (samples + st.block_size - 1) / st.block_size;
  double rates[100];
  for (int r = 0; r < repeats; r++) {
    double t0 = dl_now_seconds();
    dl_loader *ld = dl_loader_start(&st, (int64_t)r * blocks, 1, blocks, st.crops.global_size, threads, 2 * threads);
    dl_block b;
    while (dl_loader_next(ld, &b)) dl_block_free(&b);
    dl_loader_stop(ld);
    rates[r] = blocks * st.block_size / (dl_now_seconds() - t0);
    printf("distill repeat %d: %d samples, %.1f samples/s\n", r + 1, blocks * st.block_size, rates[r]);
  }
  qsort(rates, (size_t)repeats, sizeof(double), compare_doubles);
  printf("distill median: %.1f samples/s\n", rates[repeats / 2]);
  dl_dataset_close(ds);
  return 0;
}
