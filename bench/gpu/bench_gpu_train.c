// Student training-step throughput on the GPU: one full distillation step
// (model/cuda/train_step_cuda.h) of a DINOv2 ViT-S/14, B/14 or L/14 with
// random weights, bf16, per image 2 global crops at 224 and 8 local crops at
// 98; both target kinds:
//   prototypes: DINO and iBOT heads (384|768|1024 -> 2048 -> 2048 -> 256,
//               65536 prototypes), the ViT-g teacher's frozen last layers
//               on its bottlenecks, Sinkhorn-Knopp, DINO + iBOT + KoLeo;
//   features:   CLS and patch adaptors to the ViT-g teacher's 1536 features,
//               cosine + smooth-L1.
// Clipping (3.0), AdamW with layer decay and the EMA are part of the step,
// as in bench/gpu/torch_train_gpu.py, which runs the same steps in PyTorch.
// The host batch is pinned (cudaHostRegister), as PyTorch's is.
//   usage: bench_gpu_train SIZE BATCH REPEATS [prototypes|features ...]
// Prints each step and, per kind, one line
//   distill_train kind=K images_per_s=X flops_per_image=F peak_tflops=P device=NAME
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_setup.h"
#include "bench/gpu/gpu_bench_util.h"
#include "common/timing.h"
#include "eval/knn.h"
#include "model/cuda/cuda_check_fatal.h"
#include "model/cuda/train_flops.h"
#include "model/cuda/train_step_cuda.h"

#define G 2
#define L 8

static int student_config(const char *size, dl_vit_config *c) {
  const struct { const char *name; int dim, depth; } sizes[] = {{"vits14", 384, 12}, {"vitb14", 768, 12},
                                                                 {"vitl14", 1024, 24}};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    if (strcmp(size, sizes[i].name) == 0) {
      const int d = sizes[i].dim;
      *c = (dl_vit_config){.patch = 14, .dim = d, .depth = sizes[i].depth, .heads = d / 64, .ffn_hidden = 4 * d,
                           .registers = 0, .pos_grid = 224 / 14, .ffn = DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
      return 0;
    }
  return -1;
}

// Pinned host memory with uniform values in [-scale/2, scale/2).
static float *pinned_random(size_t n, float scale, uint64_t *s) {
  float *x = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) x[i] = scale * dl_bench_uniform(s);
  cudaCheckFatal(cudaHostRegister(x, n * sizeof(float), cudaHostRegisterDefault));
  return x;
}

static void unpin_free(float *x) {
  cudaCheckFatal(cudaHostUnregister(x));
  free(x);
}

static int run_kind(const char *size, dl_train_mode mode, int batch, int repeats, const char *device) {
  const char *kind = mode == DL_TRAIN_PROTOTYPES ? "prototypes" : "features";
  dl_vit_config vc;
  student_config(size, &vc);
  dl_vit vit;
  uint64_t seed = 1;
  dl_bench_random_student(&vit, &vc, &seed);
  const dl_train_config cfg = dl_bench_train_config(mode, batch, vc.dim);
  dl_head tdino, tibot;
  dl_bench_teacher_heads(&tdino, &tibot, &cfg);
  const int W = mode == DL_TRAIN_PROTOTYPES ? DL_BENCH_BOTTLENECK : DL_BENCH_TEACHER_DIM, P = 16 * 16;
  float *gimg = pinned_random((size_t)G * batch * 3 * 224 * 224, 2.0f, &seed);
  float *limg = pinned_random((size_t)L * batch * 3 * 98 * 98, 2.0f, &seed);
  float *tcls = pinned_random((size_t)G * batch * W, 1.0f, &seed);
  float *tpatch = pinned_random((size_t)G * batch * P * W, 1.0f, &seed);
  if (mode == DL_TRAIN_PROTOTYPES) {
    dl_l2_normalize_rows(tcls, G * batch, W);
    dl_l2_normalize_rows(tpatch, G * batch * P, W);
  }
  const dl_train_batch b = {gimg, limg, tcls, tpatch};
  dl_cuda_trainer t;
  dl_err err;
  int rc = dl_cuda_trainer_init(&t, &vit, &cfg, &tdino, &tibot, 7, DL_DTYPE_BF16, NULL, &err);
  double *times = malloc((size_t)repeats * sizeof(double));
  for (int i = -2; i < repeats && rc == 0; i++) {  // two warm-up steps: buffers grown, algorithms chosen
    dl_step_report r;
    const double t0 = dl_now_seconds();
    rc = dl_cuda_trainer_step(&t, &b, &r, &err);
    const double dt = dl_now_seconds() - t0;
    printf("distill %s %s step %d: %.4f s  loss %.4f (dino %.4f ibot %.4f koleo %.4f feat %.4f %.4f %.4f)\n", size,
           kind, i + 2, dt, r.total, r.dino, r.ibot, r.koleo, r.feat_cls, r.feat_cos, r.feat_l1);
    fflush(stdout);
    if (i >= 0) times[i] = dt;
  }
  if (rc == 0) {
    const double per_s = batch / dl_bench_median(times, repeats);
    printf("distill_train kind=%s images_per_s=%.4f flops_per_image=%.6g peak_tflops=%.1f device=", kind, per_s,
           dl_train_step_flops(&vc, &cfg, DL_BENCH_BOTTLENECK), dl_bench_peak_tflops(device));
    dl_bench_print_word(device);
    putchar('\n');
    dl_cuda_trainer_free(&t);
  } else {
    fprintf(stderr, "bench_gpu_train: %s\n", err.msg);
  }
  free(times);
  unpin_free(gimg); unpin_free(limg); unpin_free(tcls); unpin_free(tpatch);
  dl_head_free(&tdino);
  dl_head_free(&tibot);
  dl_vit_free(&vit);
  return rc;
}

int main(int argc, char **argv) {
  dl_vit_config probe;
  if (argc < 4 || student_config(argv[1], &probe)) {
    fprintf(stderr, "usage: bench_gpu_train vits14|vitb14|vitl14 BATCH REPEATS [prototypes|features ...]\n");
    return 2;
  }
  const int batch = atoi(argv[2]), repeats = atoi(argv[3]);
  if (batch <= 0 || repeats <= 0) {
    fprintf(stderr, "bench_gpu_train: BATCH and REPEATS must be positive\n");
    return 2;
  }
  for (int a = 4; a < argc; a++)
    if (strcmp(argv[a], "prototypes") && strcmp(argv[a], "features")) {
      fprintf(stderr, "bench_gpu_train: unknown target kind '%s' (prototypes or features)\n", argv[a]);
      return 2;
    }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    fprintf(stderr, "bench_gpu_train: no CUDA device\n");
    return 3;
  }
  struct cudaDeviceProp prop;
  cudaCheckFatal(cudaGetDeviceProperties(&prop, 0));
  int rc = 0;
  for (int k = 0; k < 2; k++) {
    const char *kind = k == 0 ? "prototypes" : "features";
    bool wanted = argc == 4;
    for (int a = 4; a < argc; a++) wanted |= strcmp(argv[a], kind) == 0;
    if (wanted && run_kind(argv[1], k == 0 ? DL_TRAIN_PROTOTYPES : DL_TRAIN_FEATURES, batch, repeats, prop.name))
      rc = 1;
  }
  return rc;
}
