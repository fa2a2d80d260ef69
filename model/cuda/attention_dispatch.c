// See attention_dispatch.h. The support check runs once per shape and
// direction (building the cuDNN plan is the check); its answer, plan or
// "own kernels", stays in the cache for the life of the process.
#include "model/cuda/attention_dispatch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/cuda/attention_cudnn.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static dl_attn_cache cache;
static int path_set;
static dl_attn_path path = DL_ATTN_AUTO, last_path = DL_ATTN_OWN;

static const char *dtype_name(int dt) { return dt == DL_DTYPE_BF16 ? "bf16" : "fp32"; }

// DISTILL_ATTENTION, read at the first call. Called under the lock.
static dl_attn_path current_path(void) {
  if (!path_set) {
    const char *v = getenv("DISTILL_ATTENTION");
    if (dl_attn_path_parse(v, &path))
      fprintf(stderr, "distill: DISTILL_ATTENTION=%s is not own, cudnn or auto; using auto\n", v);
    path_set = 1;
  }
  return path;
}

void dl_cuda_attn_set_path(dl_attn_path p) {
  pthread_mutex_lock(&lock);
  path = p;
  path_set = 1;
  pthread_mutex_unlock(&lock);
}

dl_attn_path dl_cuda_attn_last_path(void) { return last_path; }

// The cached answer for key, found out (and logged when negative) at the
// first use of the shape. Called under the lock.
static dl_attn_cudnn_plan *resolve(const dl_attn_key *key) {
  dl_attn_cache_entry *e = dl_attn_cache_find(&cache, key);
  if (e) return e->supported ? e->plan : NULL;
  char why[512] = "", shape[160];
  const char *reason = NULL;
  dl_attn_cudnn_plan *plan = NULL;
  if (dl_attn_cudnn_precheck(key, DL_DTYPE_BF16, &reason) == 0) plan = dl_attn_cudnn_build(key, why, sizeof why);
  if (!plan) {
    dl_attn_key_describe(key, dtype_name(key->dtype), shape, sizeof shape);
    fprintf(stderr, "distill: attention %s: cuDNN cannot run it (%s); the own kernels run this shape\n", shape,
            reason ? reason : why);
  }
  if (!dl_attn_cache_insert(&cache, key, plan != NULL, plan) && plan) {
    // More shapes than slots: the own kernels run the rest rather than a plan per call.
    fprintf(stderr, "distill: attention plan cache full (%d shapes); the own kernels run new shapes\n",
            DL_ATTN_CACHE_SLOTS);
    dl_attn_cudnn_free(plan);
    plan = NULL;
  }
  return plan;
}

static dl_attn_key make_key(dl_dtype dt, int batch, int t, int heads, int hd, dl_attn_dir dir) {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) device = -1;  // the build then refuses, and the own kernels run
  const dl_attn_key key = {device, batch, t, heads, hd, (int)dt, dir};
  return key;
}

// The plan for key, or NULL for the own kernels. A training direction needs
// both the forward with statistics and the backward.
static dl_attn_cudnn_plan *choose(dl_attn_key key) {
  if (key.dir == DL_ATTN_FWD_INFER) return resolve(&key);
  dl_attn_key fwd = key, bwd = key;
  fwd.dir = DL_ATTN_FWD_TRAIN;
  bwd.dir = DL_ATTN_BWD;
  dl_attn_cudnn_plan *f = resolve(&fwd), *b = f ? resolve(&bwd) : NULL;
  if (!b) return NULL;
  return key.dir == DL_ATTN_BWD ? b : f;
}

// -1 and one line when cuDNN was forced and cannot run the shape; 0: run the own kernels.
static int refuse_forced(const dl_attn_key *key) {
  char shape[160];
  dl_attn_key_describe(key, dtype_name(key->dtype), shape, sizeof shape);
  fprintf(stderr, "distill: DISTILL_ATTENTION=cudnn, and cuDNN cannot run attention %s\n", shape);
  return -1;
}

int dl_cuda_attn_forward(dl_dtype dt, void *out, float *lse, const void *qkv, int batch, int t, int heads, int hd,
                         cudaStream_t s) {
  const dl_attn_key key = make_key(dt, batch, t, heads, hd, lse ? DL_ATTN_FWD_TRAIN : DL_ATTN_FWD_INFER);
  pthread_mutex_lock(&lock);
  const dl_attn_path want = current_path();
  dl_attn_cudnn_plan *plan = want == DL_ATTN_OWN ? NULL : choose(key);
  int rc = 0;
  if (plan) rc = dl_attn_cudnn_forward(plan, out, lse, qkv, s);
  last_path = plan && rc == 0 ? DL_ATTN_CUDNN : DL_ATTN_OWN;
  pthread_mutex_unlock(&lock);
  if (plan && (rc == 0 || want == DL_ATTN_CUDNN)) return rc;
  if (!plan && want == DL_ATTN_CUDNN) return refuse_forced(&key);
  // No plan, or cuDNN failed at run time (said on stderr): the own kernels.
  return dl_cuda_attention(dt, out, lse, qkv, batch, t, heads, hd, s);
}

int dl_cuda_attn_backward(dl_dtype dt, void *dqkv, const void *dout, const void *qkv, const void *out,
                          const float *lse, int batch, int t, int heads, int hd, float *scratch, cudaStream_t s) {
  const dl_attn_key key = make_key(dt, batch, t, heads, hd, DL_ATTN_BWD);
  pthread_mutex_lock(&lock);
  const dl_attn_path want = current_path();
  dl_attn_cudnn_plan *plan = want == DL_ATTN_OWN ? NULL : choose(key);
  int rc = 0;
  if (plan) rc = dl_attn_cudnn_backward(plan, dqkv, dout, qkv, out, lse, s);
  last_path = plan && rc == 0 ? DL_ATTN_CUDNN : DL_ATTN_OWN;
  pthread_mutex_unlock(&lock);
  if (plan && (rc == 0 || want == DL_ATTN_CUDNN)) return rc;
  if (!plan && want == DL_ATTN_CUDNN) return refuse_forced(&key);
  return dl_cuda_attention_backward(dt, dqkv, dout, qkv, out, lse, batch, t, heads, hd, scratch, s);
}
