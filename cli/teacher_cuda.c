#include "cli/teacher_cuda.h"

#include <stdio.h>
#include <stdlib.h>

#include "model/cuda/cuda_check.h"
#include "model/cuda/heads_cuda.h"
#include "model/cuda/vit_cuda.h"

#define DTYPE DL_DTYPE_BF16

typedef struct teacher_cuda {
  int device;  // the engine's compute thread makes it current before each call
  dl_cuda_vit vit;
  dl_cuda_head heads[2];  // DINO, iBOT (prototypes and both); on the backbone's stream and handle
  dl_cuda_head_ws head_ws;
  bool have_heads;
  // The heads' staging, grown on demand: host float32 rows in and out, in dtype for the GEMMs.
  float *rows_f32;
  void *rows_in, *rows_out;
  size_t f32_cap, in_cap, out_cap;  // bytes
} teacher_cuda;

static int chosen_gpu = -1;  // dl_teacher_cuda_use_gpu; -1: the current device

void dl_teacher_cuda_use_gpu(int device) { chosen_gpu = device; }

static bool start_failed;  // the last start() failed in CUDA or cuBLAS
bool dl_teacher_cuda_start_failed(void) { return start_failed; }

static void *start(const dl_vit *vit, const dl_head *dino, const dl_head *ibot, dl_err *err) {
  const dl_vit_config *c = &vit->cfg;
  if (c->dim / c->heads != DL_CUDA_ATTN_HEAD_DIM) {
    dl_fail(err, "--device cuda: the CUDA attention needs head dimension %d, this teacher has %d (dim %d, %d heads)",
            DL_CUDA_ATTN_HEAD_DIM, c->dim / c->heads, c->dim, c->heads);
    return NULL;
  }
  int device = chosen_gpu;
  start_failed = true;
  if (device < 0 && dl_cuda_failed_call(cudaGetDevice(&device), "cudaGetDevice", __FILE__, __LINE__)) {
    dl_cuda_take_error(err);
    return NULL;
  }
  if (dl_cuda_failed_call(cudaSetDevice(device), "cudaSetDevice", __FILE__, __LINE__)) {
    dl_cuda_take_error(err);
    return NULL;
  }
  teacher_cuda *t = dl_calloc(1, sizeof *t);
  t->device = device;
  dl_cuda_vit_init(&t->vit, vit, DTYPE);
  t->have_heads = dino && ibot;
  if (t->have_heads) {
    dl_cuda_head_init(&t->heads[0], dino, DTYPE, &t->vit.blas, t->vit.stream);
    dl_cuda_head_init(&t->heads[1], ibot, DTYPE, &t->vit.blas, t->vit.stream);
  }
  // The process ends on this error (exit status 1): the device memory goes with it.
  if (dl_cuda_take_error(err)) {
    free(t);
    return NULL;
  }
  start_failed = false;
  return t;
}

static int forward(void *ctx, const float *images, int n, int res, dl_vit_outputs *out, dl_err *err) {
  teacher_cuda *t = ctx;
  cudaCheckOr(cudaSetDevice(t->device), dl_cuda_take_error(err));
  return dl_cuda_vit_forward(&t->vit, images, n, res, res, NULL, out, err);
}

// Grows a device buffer to at least `need` bytes (contents not kept).
static void *grow(void **p, size_t *cap, size_t need) {
  if (*cap < need) {
    if (*p) cudaCheckOr(cudaFree(*p), NULL);
    *p = NULL;
    *cap = 0;
    cudaCheckOr(cudaMalloc(p, need), NULL);
    *cap = need;
  }
  return *p;
}

// x [m, in] host float32 -> the head's L2-normalized bottleneck [m, B] host float32.
static int bottleneck(void *ctx, int head, const float *x, int m, float *out, dl_err *err) {
  teacher_cuda *t = ctx;
  if (!t->have_heads || head < 0 || head > 1) return dl_fail(err, "--device cuda: no head %d on the GPU", head);
  cudaCheckOr(cudaSetDevice(t->device), dl_cuda_take_error(err));
  dl_cuda_head *h = &t->heads[head];
  const size_t in = (size_t)m * h->cfg.in_dim, B = (size_t)m * h->cfg.out_dim, e = dl_dtype_size(DTYPE);
  const cudaStream_t s = t->vit.stream;
  float *f32 = grow((void **)&t->rows_f32, &t->f32_cap, (in > B ? in : B) * sizeof(float));
  void *x_dt = grow(&t->rows_in, &t->in_cap, in * e), *out_dt = grow(&t->rows_out, &t->out_cap, B * e);
  if (dl_cuda_take_error(err)) return -1;
  cudaCheckOr(cudaMemcpyAsync(f32, x, in * sizeof(float), cudaMemcpyHostToDevice, s), dl_cuda_take_error(err));
  dl_cuda_convert(x_dt, DTYPE, f32, DL_DTYPE_F32, in, s);
  dl_cuda_head_forward(h, DL_HEAD_BOTTLENECK, x_dt, m, out_dt, &t->head_ws);
  dl_cuda_convert(f32, DL_DTYPE_F32, out_dt, DTYPE, B, s);
  cudaCheckOr(cudaMemcpyAsync(out, f32, B * sizeof(float), cudaMemcpyDeviceToHost, s), dl_cuda_take_error(err));
  cudaCheckOr(cudaStreamSynchronize(s), dl_cuda_take_error(err));  // out is the caller's from here on
  return dl_cuda_take_error(err);  // a failure the conversions or the head recorded, else 0
}

static void release(teacher_cuda *t) {
  cudaCheck(cudaSetDevice(t->device));
  cudaCheck(cudaStreamSynchronize(t->vit.stream));
  void *bufs[] = {t->rows_f32, t->rows_in, t->rows_out};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    if (bufs[i]) cudaCheck(cudaFree(bufs[i]));
  dl_cuda_head_ws_free(&t->head_ws);
  for (int k = 0; t->have_heads && k < 2; k++) dl_cuda_head_free(&t->heads[k]);
  dl_cuda_vit_free(&t->vit);
}

// Nothing to return to: a failure while freeing is one line on stderr.
static void stop(void *ctx) {
  teacher_cuda *t = ctx;
  release(t);
  free(t);
  dl_err err;
  if (dl_cuda_take_error(&err)) fprintf(stderr, "teacher: --device cuda: stopping: %s\n", err.msg);
}

const dl_forward_backend dl_teacher_cuda_backend = {
    .name = "cuda", .start = start, .forward = forward, .bottleneck = bottleneck, .stop = stop};
