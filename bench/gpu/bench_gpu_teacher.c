// Teacher throughput on the GPU: DINOv2 ViT-g/14 with random weights, bf16,
// the CUDA forward from host images to host outputs (what the teacher
// service does per batch). Prints each repeat, the median images/s, the
// FLOPs per image and the model-FLOP utilization against the card's dense
// bf16 peak (bench/gpu/gpu_bench_util.c; BENCH_PEAK_TFLOPS overrides it).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/gpu/gpu_bench_util.h"
#include "common/timing.h"
#include "model/cuda/cuda_check_fatal.h"
#include "model/cuda/vit_cuda.h"
#include "model/cuda/vit_cuda_layout.h"

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: bench_gpu_teacher RES BATCH REPEATS\n");
    return 2;
  }
  const int res = atoi(argv[1]), n = atoi(argv[2]), repeats = atoi(argv[3]);
  if (res <= 0 || res % 14 || n <= 0 || repeats <= 0) {
    fprintf(stderr, "bench_gpu_teacher: RES a positive multiple of 14, BATCH and REPEATS positive\n");
    return 2;
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    fprintf(stderr, "bench_gpu_teacher: no CUDA device\n");
    return 3;
  }
  struct cudaDeviceProp prop;
  cudaCheckFatal(cudaGetDeviceProperties(&prop, 0));
  const dl_vit_config cfg = {.patch = 14, .dim = 1536, .depth = 40, .heads = 24, .ffn_hidden = 4096,
                             .registers = 0, .pos_grid = 37, .ffn = DL_FFN_SWIGLU, .interp = DL_INTERP_LEGACY};
  dl_vit vit;
  dl_vit_init_empty(&vit, &cfg);
  uint64_t s = 1;
  for (size_t i = 0; i < vit.layout.total; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    vit.params[i] = 0.02f * ((float)((s >> 40) & 0xFFFFFF) / 16777216.0f - 0.5f);
  }
  const int np = (res / 14) * (res / 14), D = cfg.dim;
  float *images = malloc((size_t)n * 3 * res * res * sizeof(float));
  for (size_t i = 0; i < (size_t)n * 3 * res * res; i++) images[i] = (float)(i % 251) / 251.0f - 0.5f;
  dl_vit_outputs out = {malloc((size_t)n * D * sizeof(float)), NULL, malloc((size_t)n * np * D * sizeof(float)),
                        NULL};
  dl_cuda_vit gpu;
  dl_cuda_vit_init(&gpu, &vit, DL_DTYPE_BF16);
  dl_err err;
  for (int i = 0; i < 2; i++)  // warm-up: buffers grown, cuBLASLt heuristics cached by the driver
    if (dl_cuda_vit_forward(&gpu, images, n, res, res, NULL, &out, &err)) {
      fprintf(stderr, "bench_gpu_teacher: %s\n", err.msg);
      return 1;
    }
  double *rates = malloc((size_t)repeats * sizeof(double));
  for (int r = 0; r < repeats; r++) {
    const double t0 = dl_now_seconds();
    dl_cuda_vit_forward(&gpu, images, n, res, res, NULL, &out, &err);
    rates[r] = n / (dl_now_seconds() - t0);
    printf("distill vitg14 %dpx batch %d repeat %d: %.2f images/s\n", res, n, r, rates[r]);
  }
  const double median = dl_bench_median(rates, repeats), flops = dl_vit_forward_flops(&cfg, res, res);
  const double peak = dl_bench_peak_tflops(prop.name);
  printf("distill_images_per_s=%.4f flops_per_image=%.6g peak_tflops=%.1f device=", median, flops, peak);
  dl_bench_print_word(prop.name);
  putchar('\n');
  dl_cuda_vit_free(&gpu);
  dl_vit_free(&vit);
  free(images); free(out.cls); free(out.patches); free(rates);
  return 0;
}
