// The sgemm's entry (see gemm.h): the kernel level chosen at start
// (cpu_features.h) picks one of the drivers in gemm_avx2.c / gemm_avx512.c
// (gemm_driver.inc, one copy per instruction set); the per-thread packed-W
// buffer they share lives here.
#include "model/cpu/gemm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "model/cpu/cpu_features.h"
#include "model/cpu/gemm_levels.h"

// Every machine this build starts on has AVX2 and FMA: cpu_features.c's
// constructor ends the program before main() otherwise.
bool dl_gemm_available(void) { return dl_cpu_features_get()->x86_64_v3; }

// The packed copy of W lives on between calls (grown when a larger one is
// needed), one per calling thread, so that no call allocates in steady state;
// a thread's copy is freed when the thread ends.
typedef struct w_pack_buf {
  float *data;
  size_t cap;  // floats
} w_pack_buf;

static pthread_key_t w_pack_key;
static pthread_once_t w_pack_once = PTHREAD_ONCE_INIT;

static void w_pack_free(void *p) {
  w_pack_buf *b = p;
  free(b->data);
  free(b);
}
static void w_pack_key_init(void) { pthread_key_create(&w_pack_key, w_pack_free); }

float *dl_gemm_w_pack_buffer(size_t floats) {
  pthread_once(&w_pack_once, w_pack_key_init);
  w_pack_buf *b = pthread_getspecific(w_pack_key);
  if (!b) {
    b = dl_calloc(1, sizeof *b);
    pthread_setspecific(w_pack_key, b);
  }
  if (b->cap < floats) {
    free(b->data);
    b->data = dl_aligned_alloc(floats * sizeof(float));
    b->cap = floats;
  }
  return b->data;
}

typedef void (*gemm_fn)(const dl_gemm_args *);
static const gemm_fn kGemmByLevel[DL_CPU_LEVELS] = {
    [DL_CPU_AVX2] = dl_gemm_avx2,
    [DL_CPU_AVX512] = dl_gemm_avx512,
};

static void run(const dl_gemm_args *g) {
  if (g->m <= 0 || g->n <= 0) return;
  if (g->k <= 0) {  // an empty sum: C = 0, or unchanged when accumulating
    if (!g->accumulate)
      for (int i = 0; i < g->m; i++) memset(g->c + (size_t)i * g->n, 0, (size_t)g->n * sizeof(float));
    return;
  }
  kGemmByLevel[dl_cpu_kernel_level()](g);
}

typedef size_t (*packed_fn)(int, int);
static const packed_fn kPackedByLevel[DL_CPU_LEVELS] = {
    [DL_CPU_AVX2] = dl_gemm_packed_floats_avx2,
    [DL_CPU_AVX512] = dl_gemm_packed_floats_avx512,
};

size_t dl_gemm_packed_floats(int n, int k) { return kPackedByLevel[dl_cpu_kernel_level()](n, k); }

static const dl_gemm_epilogue kNone = {0};

void dl_gemm_nt(float *c, const float *a, const float *w, int m, int k, int n, const dl_gemm_epilogue *ep) {
  run(&(dl_gemm_args){.c = c, .a = a, .w = w, .m = m, .k = k, .n = n, .ep = ep ? ep : &kNone});
}

void dl_gemm_nn(float *c, const float *a, const float *b, int m, int k, int n, bool accumulate) {
  run(&(dl_gemm_args){.c = c, .a = a, .w = b, .m = m, .k = k, .n = n, .w_kn = true, .accumulate = accumulate,
                      .ep = &kNone});
}

void dl_gemm_tn(float *c, const float *a, const float *b, int m, int k, int n, bool accumulate) {
  run(&(dl_gemm_args){.c = c, .a = a, .w = b, .m = m, .k = k, .n = n, .a_km = true, .w_kn = true,
                      .accumulate = accumulate, .ep = &kNone});
}
