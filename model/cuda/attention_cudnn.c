// See attention_cudnn.h: the graph of attention_cudnn_graph.c, the first
// engine configuration cuDNN's heuristic offers that finalizes, and one
// device allocation per plan for cuDNN's workspace and the backward's own
// buffers, made at the build so nothing is allocated per step.
#include "model/cuda/attention_cudnn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/cuda/attention_cudnn_graph.h"
#include "model/cuda/device_arena.h"

#define MAX_CONFIGS 8
#define MAX_DEVICES 64

struct dl_attn_cudnn_plan {
  dl_attn_key key;
  dl_attn_layout layout;
  cudnnHandle_t handle;
  dl_attn_descs descs;
  cudnnBackendDescriptor_t graph, plan;
  void *device;                            // one allocation: the three below
  void *workspace, *softmax_sum, *dq_accum;  // the last two: backward only
  float scale, one;  // by-value tensors, read from the host at every execute
};

// One handle per device, made at its first plan. The dispatch calls
// everything here under its lock, so no two threads use a handle at once.
static cudnnHandle_t handles[MAX_DEVICES];

#define TRY(call)                                                                              \
  do {                                                                                         \
    const cudnnStatus_t st_ = (call);                                                          \
    if (st_ != CUDNN_STATUS_SUCCESS) {                                                         \
      char msg_[256] = "";                                                                     \
      cudnnGetLastErrorString(msg_, sizeof msg_);                                              \
      snprintf(why, why_size, "%s: %s %s", #call, cudnnGetErrorString(st_), msg_);            \
      goto fail;                                                                               \
    }                                                                                          \
  } while (0)

static cudnnStatus_t set(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
                         cudnnBackendAttributeType_t type, int64_t count, const void *value) {
  return cudnnBackendSetAttribute(d, name, type, count, value);
}

// The first engine configuration of heuristic `mode` that finalizes into an
// execution plan, or NULL with the reason in why.
static cudnnBackendDescriptor_t first_plan(dl_attn_cudnn_plan *p, cudnnBackendHeurMode_t mode, char *why,
                                           size_t why_size) {
  cudnnBackendDescriptor_t heur = NULL, configs[MAX_CONFIGS] = {0}, plan = NULL;
  int64_t count = 0;
  int made = 0;
  TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur));
  TRY(set(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &p->graph));
  TRY(set(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode));
  TRY(cudnnBackendFinalize(heur));
  // The results are copied into configurations made beforehand.
  for (; made < MAX_CONFIGS; made++)
    TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &configs[made]));
  TRY(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, MAX_CONFIGS, &count,
                               configs));
  if (count > MAX_CONFIGS) count = MAX_CONFIGS;
  if (count == 0) snprintf(why, why_size, "cuDNN's heuristic offers no engine");
  for (int64_t i = 0; i < count && !plan; i++) {
    TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan));
    cudnnStatus_t st = set(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &p->handle);
    if (st == CUDNN_STATUS_SUCCESS)
      st = set(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &configs[i]);
    if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendFinalize(plan);
    if (st != CUDNN_STATUS_SUCCESS) {
      snprintf(why, why_size, "none of %lld engine configurations finalizes (last: %s)", (long long)count,
               cudnnGetErrorString(st));
      cudnnBackendDestroyDescriptor(plan);
      plan = NULL;
    }
  }
fail:
  // The plan keeps what it needs of its configuration.
  for (int i = 0; i < made; i++) cudnnBackendDestroyDescriptor(configs[i]);
  if (heur) cudnnBackendDestroyDescriptor(heur);
  return plan;
}

void dl_attn_cudnn_free(dl_attn_cudnn_plan *p) {
  if (p->plan) cudnnBackendDestroyDescriptor(p->plan);
  if (p->graph) cudnnBackendDestroyDescriptor(p->graph);
  dl_attn_descs_free(&p->descs);
  if (p->device) cudaFree(p->device);
  free(p);
}

// cuDNN's workspace, then for the backward the row sums of dO o O and the
// fp32 dQ accumulator: measured with a NULL base, then handed out.
static size_t carve(dl_attn_cudnn_plan *p, unsigned char *base, size_t workspace) {
  const size_t rows = (size_t)p->key.n * p->key.heads * p->key.t;
  dl_device_arena a = {base, 0};
  p->workspace = workspace ? dl_arena_take(&a, workspace) : NULL;
  if (p->key.dir == DL_ATTN_BWD) {
    p->softmax_sum = dl_arena_take(&a, rows * sizeof(float));
    p->dq_accum = dl_arena_take(&a, rows * p->key.head_dim * sizeof(float));
  }
  return a.off;
}

// Graph `variant` of p->key and its execution plan; on failure everything
// it made is freed again and the reason is in why.
static int build_variant(dl_attn_cudnn_plan *p, int variant, char *why, size_t why_size) {
  TRY(dl_attn_graph_ops(&p->descs, &p->key, variant, why, why_size));
  TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &p->graph));
  TRY(set(p->graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &p->handle));
  TRY(set(p->graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, p->descs.nops, p->descs.ops));
  TRY(cudnnBackendFinalize(p->graph));
  p->plan = first_plan(p, CUDNN_HEUR_MODE_A, why, why_size);
  if (!p->plan) p->plan = first_plan(p, CUDNN_HEUR_MODE_FALLBACK, why, why_size);
  if (p->plan) return 0;
fail:
  if (p->graph) cudnnBackendDestroyDescriptor(p->graph);
  p->graph = NULL;
  dl_attn_descs_free(&p->descs);
  return -1;
}

dl_attn_cudnn_plan *dl_attn_cudnn_build(const dl_attn_key *key, char *why, size_t why_size) {
  if (key->device < 0 || key->device >= MAX_DEVICES) {
    snprintf(why, why_size, "device %d out of range", key->device);
    return NULL;
  }
  dl_attn_cudnn_plan *p = calloc(1, sizeof *p);
  int64_t workspace = 0, got = 0;
  p->key = *key;
  p->scale = 1.0f / sqrtf((float)key->head_dim);
  p->one = 1.0f;
  dl_attn_layout_make(&p->layout, key->n, key->t, key->heads, key->head_dim);
  if (!handles[key->device]) TRY(cudnnCreate(&handles[key->device]));
  p->handle = handles[key->device];
  // Each variant's reason, one after the other, when none builds.
  size_t used = 0;
  int built = -1;
  for (int v = 0; v < dl_attn_graph_variants(key) && built != 0; v++) {
    char reason[512] = "";
    built = build_variant(p, v, reason, sizeof reason);
    if (built != 0 && used < why_size)
      used += (size_t)snprintf(why + used, why_size - used, "%sgraph %d: %s", v ? "; " : "", v, reason);
  }
  if (built != 0) goto fail;
  TRY(cudnnBackendGetAttribute(p->plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &got,
                               &workspace));
  const size_t bytes = carve(p, NULL, (size_t)workspace);
  if (bytes && cudaMalloc(&p->device, bytes) != cudaSuccess) {
    cudaGetLastError();  // clear it: the own kernels run instead
    snprintf(why, why_size, "cannot allocate %zu bytes for cuDNN's workspace", bytes);
    goto fail;
  }
  carve(p, p->device, (size_t)workspace);
  return p;
fail:
  dl_attn_cudnn_free(p);
  return NULL;
}

static int execute(dl_attn_cudnn_plan *p, int n, const int64_t *uids, void **pointers, cudaStream_t s) {
  char why[512] = "";
  const size_t why_size = sizeof why;
  cudnnBackendDescriptor_t pack = NULL;
  int rc = -1;
  TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack));
  TRY(set(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids));
  TRY(set(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, pointers));
  TRY(set(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &p->workspace));
  TRY(cudnnBackendFinalize(pack));
  TRY(cudnnSetStream(p->handle, s));
  TRY(cudnnBackendExecute(p->handle, p->plan, pack));
  rc = 0;
fail:
  if (rc) {
    char shape[160];
    dl_attn_key_describe(&p->key, "bf16", shape, sizeof shape);
    fprintf(stderr, "distill: cuDNN attention %s failed: %s\n", shape, why);
  }
  if (pack) cudnnBackendDestroyDescriptor(pack);
  return rc;
}

// The element at a view's offset (bf16: 2 bytes each).
static void *at(const void *base, const dl_attn_tensor *x) { return (char *)base + x->offset * 2; }

int dl_attn_cudnn_forward(dl_attn_cudnn_plan *p, void *out, float *lse, const void *qkv, cudaStream_t s) {
  const dl_attn_layout *l = &p->layout;
  int64_t uids[6] = {DL_ATTN_UID_Q, DL_ATTN_UID_K, DL_ATTN_UID_V, DL_ATTN_UID_O, DL_ATTN_UID_SCALE, DL_ATTN_UID_STATS};
  void *pointers[6] = {at(qkv, &l->q), at(qkv, &l->k), at(qkv, &l->v), out, &p->scale, lse};
  const int train = p->key.dir == DL_ATTN_FWD_TRAIN;
  if (p->key.dir == DL_ATTN_BWD || train != (lse != NULL)) return -1;  // a plan of another direction
  return execute(p, train ? 6 : 5, uids, pointers, s);
}

int dl_attn_cudnn_backward(dl_attn_cudnn_plan *p, void *dqkv, const void *dout, const void *qkv, const void *out,
                           const float *lse, cudaStream_t s) {
  const dl_attn_layout *l = &p->layout;
  // K and V: the graph reads them transposed, through the same memory.
  int64_t uids[13] = {DL_ATTN_UID_Q,  DL_ATTN_UID_K,     DL_ATTN_UID_V,           DL_ATTN_UID_O,
                      DL_ATTN_UID_DO, DL_ATTN_UID_STATS, DL_ATTN_UID_SCALE,       DL_ATTN_UID_ONE,
                      DL_ATTN_UID_DQ, DL_ATTN_UID_DK,    DL_ATTN_UID_DV,          DL_ATTN_UID_SOFTMAX_SUM,
                      DL_ATTN_UID_DQ_ACCUM};
  void *pointers[13] = {at(qkv, &l->q),  at(qkv, &l->k),  at(qkv, &l->v),  (void *)out,    (void *)dout,
                        (void *)lse,     &p->scale,       &p->one,         at(dqkv, &l->q), at(dqkv, &l->k),
                        at(dqkv, &l->v), p->softmax_sum,  p->dq_accum};
  if (p->key.dir != DL_ATTN_BWD) return -1;
  return execute(p, 13, uids, pointers, s);
}
