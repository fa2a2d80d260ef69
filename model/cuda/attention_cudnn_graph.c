// See attention_cudnn_graph.h. Names follow cudnn-frontend's sdpa_backward
// nodes (mul_dO_O, matmul_Q_KT, ...) so the two can be read side by side.
#include "model/cuda/attention_cudnn_graph.h"

#include <stdbool.h>
#include <stdio.h>

#define TRY(call)                                                                              \
  do {                                                                                         \
    st = (call);                                                                               \
    if (st != CUDNN_STATUS_SUCCESS) {                                                          \
      char msg_[256] = "";                                                                     \
      cudnnGetLastErrorString(msg_, sizeof msg_);                                              \
      snprintf(why, why_size, "%s: %s %s", #call, cudnnGetErrorString(st), msg_);             \
      return st;                                                                               \
    }                                                                                          \
  } while (0)

static cudnnStatus_t set(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
                         cudnnBackendAttributeType_t type, int64_t count, const void *value) {
  return cudnnBackendSetAttribute(d, name, type, count, value);
}

static cudnnStatus_t set_desc(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
                              cudnnBackendDescriptor_t value) {
  return set(d, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &value);
}

static cudnnStatus_t create(dl_attn_descs *d, cudnnBackendDescriptorType_t type, cudnnBackendDescriptor_t *out) {
  if (d->count == DL_ATTN_MAX_DESCS) return CUDNN_STATUS_INTERNAL_ERROR;
  const cudnnStatus_t st = cudnnBackendCreateDescriptor(type, out);
  if (st == CUDNN_STATUS_SUCCESS) d->all[d->count++] = *out;
  return st;
}

typedef enum { REAL, VIRTUAL, BY_VALUE } tensor_kind;

static cudnnStatus_t tensor(dl_attn_descs *d, int64_t uid, const dl_attn_tensor *x, cudnnDataType_t type,
                            tensor_kind kind, cudnnBackendDescriptor_t *out) {
  const int64_t alignment = 16;
  const bool yes = true;
  if (kind == VIRTUAL) uid = d->next_uid++;
  cudnnStatus_t st = create(d, CUDNN_BACKEND_TENSOR_DESCRIPTOR, out);
  if (st == CUDNN_STATUS_SUCCESS) st = set(*out, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
  if (st == CUDNN_STATUS_SUCCESS) st = set(*out, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, x->dims);
  if (st == CUDNN_STATUS_SUCCESS) st = set(*out, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, x->strides);
  if (st == CUDNN_STATUS_SUCCESS) st = set(*out, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
  if (st == CUDNN_STATUS_SUCCESS) st = set(*out, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
  if (st == CUDNN_STATUS_SUCCESS && kind == VIRTUAL)
    st = set(*out, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &yes);
  if (st == CUDNN_STATUS_SUCCESS && kind == BY_VALUE)
    st = set(*out, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &yes);
  return st == CUDNN_STATUS_SUCCESS ? cudnnBackendFinalize(*out) : st;
}

static const dl_attn_tensor scalar = {{1, 1, 1, 1}, {1, 1, 1, 1}, 0};

// An operation made, finalized and appended to the graph's list.
static cudnnStatus_t add_op(dl_attn_descs *d, cudnnBackendDescriptor_t op) {
  const cudnnStatus_t st = cudnnBackendFinalize(op);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  if (d->nops == DL_ATTN_MAX_OPS) return CUDNN_STATUS_INTERNAL_ERROR;
  d->ops[d->nops++] = op;
  return st;
}

// y = mode(x, b) (b NULL for unary modes), computed in fp32.
static cudnnStatus_t pointwise(dl_attn_descs *d, cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x,
                               cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t y) {
  const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
  cudnnBackendDescriptor_t pw, op;
  cudnnStatus_t st = create(d, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, &pw);
  if (st == CUDNN_STATUS_SUCCESS) st = set(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
  if (st == CUDNN_STATUS_SUCCESS) st = set(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &f32);
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendFinalize(pw);
  if (st == CUDNN_STATUS_SUCCESS) st = create(d, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, &op);
  if (st == CUDNN_STATUS_SUCCESS) st = set_desc(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw);
  if (st == CUDNN_STATUS_SUCCESS) st = set_desc(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
  if (st == CUDNN_STATUS_SUCCESS && b) st = set_desc(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b);
  if (st == CUDNN_STATUS_SUCCESS) st = set_desc(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y);
  return st == CUDNN_STATUS_SUCCESS ? add_op(d, op) : st;
}

// c = a b over the last two dimensions, batched over the first two, fp32 accumulation.
static cudnnStatus_t matmul(dl_attn_descs *d, cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b,
                            cudnnBackendDescriptor_t c) {
  const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
  cudnnBackendDescriptor_t mm, op;
  cudnnStatus_t st = create(d, CUDNN_BACKEND_MATMUL_DESCRIPTOR, &mm);
  if (st == CUDNN_STATUS_SUCCESS) st = set(mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32);
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendFinalize(mm);
  if (st == CUDNN_STATUS_SUCCESS) st = create(d, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, &op);
  if (st == CUDNN_STATUS_SUCCESS) st = set_desc(op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, a);
  if (st == CUDNN_STATUS_SUCCESS) st = set_desc(op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, b);
  if (st == CUDNN_STATUS_SUCCESS) st = set_desc(op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, c);
  if (st == CUDNN_STATUS_SUCCESS) st = set_desc(op, CUDNN_ATTR_OPERATION_MATMUL_DESC, mm);
  return st == CUDNN_STATUS_SUCCESS ? add_op(d, op) : st;
}

// y = the sum (or maximum) of x over the dimensions where y has size 1.
static cudnnStatus_t reduce(dl_attn_descs *d, cudnnReduceTensorOp_t mode, cudnnBackendDescriptor_t x,
                            cudnnBackendDescriptor_t y) {
  const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
  cudnnBackendDescriptor_t red, op;
  cudnnStatus_t st = create(d, CUDNN_BACKEND_REDUCTION_DESCRIPTOR, &red);
  if (st == CUDNN_STATUS_SUCCESS)
    st = set(red, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode);
  if (st == CUDNN_STATUS_SUCCESS) st = set(red, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32);
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendFinalize(red);
  if (st == CUDNN_STATUS_SUCCESS) st = create(d, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, &op);
  if (st == CUDNN_STATUS_SUCCESS) st = set_desc(op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x);
  if (st == CUDNN_STATUS_SUCCESS) st = set_desc(op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y);
  if (st == CUDNN_STATUS_SUCCESS) st = set_desc(op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, red);
  return st == CUDNN_STATUS_SUCCESS ? add_op(d, op) : st;
}

// y = x seen through y's dimensions and strides (a transpose here).
static cudnnStatus_t reshape(dl_attn_descs *d, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
  cudnnBackendDescriptor_t op;
  cudnnStatus_t st = create(d, CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, &op);
  if (st == CUDNN_STATUS_SUCCESS) st = set_desc(op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x);
  if (st == CUDNN_STATUS_SUCCESS) st = set_desc(op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y);
  return st == CUDNN_STATUS_SUCCESS ? add_op(d, op) : st;
}

// The forward as cudnn-frontend's composite node builds it (its choice before
// cuDNN 9.13.1): S = scale Q K^T, the softmax with its statistics
// max + log(sum exp), O = P V.
static cudnnStatus_t composite_forward_ops(dl_attn_descs *d, const dl_attn_key *key, const dl_attn_layout *l,
                                           char *why, size_t why_size) {
  const cudnnDataType_t bf16 = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT;
  const int64_t n = key->n, h = key->heads, t = key->t;
  const dl_attn_tensor kt = dl_attn_transposed(&l->k), rows = dl_attn_packed(n, h, t, 1);
  const dl_attn_tensor scores = dl_attn_packed(n, h, t, t);
  cudnnBackendDescriptor_t q, k_t, v, o, stats, scale, s, s_scaled, max, centered, e, sum, log_sum, p;
  cudnnStatus_t st;
  TRY(tensor(d, DL_ATTN_UID_Q, &l->q, bf16, REAL, &q));
  TRY(tensor(d, DL_ATTN_UID_K, &kt, bf16, REAL, &k_t));
  TRY(tensor(d, DL_ATTN_UID_V, &l->v, bf16, REAL, &v));
  TRY(tensor(d, DL_ATTN_UID_O, &l->o, bf16, REAL, &o));
  TRY(tensor(d, DL_ATTN_UID_SCALE, &scalar, f32, BY_VALUE, &scale));
  // Inference: the statistics stay inside the graph, as the frontend does.
  TRY(tensor(d, DL_ATTN_UID_STATS, &l->stats, f32, key->dir == DL_ATTN_FWD_TRAIN ? REAL : VIRTUAL, &stats));
  TRY(tensor(d, 0, &scores, f32, VIRTUAL, &s));
  TRY(tensor(d, 0, &scores, f32, VIRTUAL, &s_scaled));
  TRY(tensor(d, 0, &rows, f32, VIRTUAL, &max));
  TRY(tensor(d, 0, &scores, f32, VIRTUAL, &centered));
  TRY(tensor(d, 0, &scores, f32, VIRTUAL, &e));
  TRY(tensor(d, 0, &rows, f32, VIRTUAL, &sum));
  TRY(tensor(d, 0, &rows, f32, VIRTUAL, &log_sum));
  TRY(tensor(d, 0, &scores, bf16, VIRTUAL, &p));
  TRY(matmul(d, q, k_t, s));                                          // bmm1
  TRY(pointwise(d, CUDNN_POINTWISE_MUL, s, scale, s_scaled));         // attn_scale
  TRY(reduce(d, CUDNN_REDUCE_TENSOR_MAX, s_scaled, max));             // softmax: Max
  TRY(pointwise(d, CUDNN_POINTWISE_SUB, s_scaled, max, centered));    // sub
  TRY(pointwise(d, CUDNN_POINTWISE_EXP, centered, NULL, e));          // exp
  TRY(reduce(d, CUDNN_REDUCE_TENSOR_ADD, e, sum));                    // sum
  TRY(pointwise(d, CUDNN_POINTWISE_LOG, sum, NULL, log_sum));         // log
  TRY(pointwise(d, CUDNN_POINTWISE_ADD, max, log_sum, stats));        // add: Stats
  TRY(pointwise(d, CUDNN_POINTWISE_DIV, e, sum, p));                  // div
  TRY(matmul(d, p, v, o));                                            // bmm2
  return st;
}

static cudnnStatus_t forward_ops(dl_attn_descs *d, const dl_attn_key *key, const dl_attn_layout *l, char *why,
                                 size_t why_size) {
  const cudnnDataType_t bf16 = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT;
  cudnnBackendDescriptor_t q, k, v, o, stats, scale, op;
  cudnnStatus_t st;
  TRY(tensor(d, DL_ATTN_UID_Q, &l->q, bf16, REAL, &q));
  TRY(tensor(d, DL_ATTN_UID_K, &l->k, bf16, REAL, &k));
  TRY(tensor(d, DL_ATTN_UID_V, &l->v, bf16, REAL, &v));
  TRY(tensor(d, DL_ATTN_UID_O, &l->o, bf16, REAL, &o));
  TRY(tensor(d, DL_ATTN_UID_SCALE, &scalar, f32, BY_VALUE, &scale));
  TRY(create(d, CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR, &op));
  TRY(set_desc(op, CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, q));
  TRY(set_desc(op, CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, k));
  TRY(set_desc(op, CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, v));
  TRY(set_desc(op, CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, o));
  TRY(set_desc(op, CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, scale));
  if (key->dir == DL_ATTN_FWD_TRAIN) {
    TRY(tensor(d, DL_ATTN_UID_STATS, &l->stats, f32, REAL, &stats));
    TRY(set_desc(op, CUDNN_ATTR_OPERATION_SDPA_FWD_STATSDESC, stats));
  }
  TRY(add_op(d, op));
  return st;
}

// dV = P^T dO, dS = P (dP - rowsum(dO o O)) scale with dP = dO V^T,
// dK = dS^T Q, dQ = dS K, where P = exp(scale Q K^T - stats).
static cudnnStatus_t backward_ops(dl_attn_descs *d, const dl_attn_key *key, const dl_attn_layout *l, char *why,
                                  size_t why_size) {
  const cudnnDataType_t bf16 = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT;
  const int64_t n = key->n, h = key->heads, t = key->t, hd = key->head_dim;
  const dl_attn_tensor kt = dl_attn_transposed(&l->k), vt = dl_attn_transposed(&l->v);
  const dl_attn_tensor rows = dl_attn_packed(n, h, t, 1), rows_hd = dl_attn_packed(n, h, t, hd);
  const dl_attn_tensor scores = dl_attn_packed(n, h, t, t), scores_t = dl_attn_transposed(&scores);
  cudnnBackendDescriptor_t q, k_t, v_t, o, dout, stats, scale, one, dq, dk, dv, sum, dq_accum;
  cudnnBackendDescriptor_t od, rowsum, s, s_scaled, s_centered, p, p_t, dp, dp_centered, ds_unscaled, ds, ds_t, k;
  cudnnStatus_t st;
  TRY(tensor(d, DL_ATTN_UID_Q, &l->q, bf16, REAL, &q));
  TRY(tensor(d, DL_ATTN_UID_K, &kt, bf16, REAL, &k_t));
  TRY(tensor(d, DL_ATTN_UID_V, &vt, bf16, REAL, &v_t));
  TRY(tensor(d, DL_ATTN_UID_O, &l->o, bf16, REAL, &o));
  TRY(tensor(d, DL_ATTN_UID_DO, &l->o, bf16, REAL, &dout));
  TRY(tensor(d, DL_ATTN_UID_STATS, &l->stats, f32, REAL, &stats));
  TRY(tensor(d, DL_ATTN_UID_SCALE, &scalar, f32, BY_VALUE, &scale));
  TRY(tensor(d, DL_ATTN_UID_ONE, &scalar, f32, BY_VALUE, &one));
  TRY(tensor(d, DL_ATTN_UID_DQ, &l->q, bf16, REAL, &dq));
  TRY(tensor(d, DL_ATTN_UID_DK, &l->k, bf16, REAL, &dk));
  TRY(tensor(d, DL_ATTN_UID_DV, &l->v, bf16, REAL, &dv));
  TRY(tensor(d, DL_ATTN_UID_SOFTMAX_SUM, &rows, f32, REAL, &sum));
  TRY(tensor(d, DL_ATTN_UID_DQ_ACCUM, &rows_hd, f32, REAL, &dq_accum));
  TRY(tensor(d, 0, &rows_hd, f32, VIRTUAL, &od));
  TRY(tensor(d, 0, &rows, f32, VIRTUAL, &rowsum));
  TRY(tensor(d, 0, &scores, f32, VIRTUAL, &s));
  TRY(tensor(d, 0, &scores, f32, VIRTUAL, &s_scaled));
  TRY(tensor(d, 0, &scores, f32, VIRTUAL, &s_centered));
  TRY(tensor(d, 0, &scores, f32, VIRTUAL, &p));
  TRY(tensor(d, 0, &scores_t, bf16, VIRTUAL, &p_t));
  TRY(tensor(d, 0, &scores, f32, VIRTUAL, &dp));
  TRY(tensor(d, 0, &scores, f32, VIRTUAL, &dp_centered));
  TRY(tensor(d, 0, &scores, f32, VIRTUAL, &ds_unscaled));
  TRY(tensor(d, 0, &scores, f32, VIRTUAL, &ds));
  TRY(tensor(d, 0, &scores_t, bf16, VIRTUAL, &ds_t));
  TRY(tensor(d, 0, &l->k, bf16, VIRTUAL, &k));
  TRY(pointwise(d, CUDNN_POINTWISE_MUL, dout, o, od));             // mul_dO_O
  TRY(reduce(d, CUDNN_REDUCE_TENSOR_ADD, od, rowsum));            // reduce_dO_o
  TRY(pointwise(d, CUDNN_POINTWISE_MUL, rowsum, one, sum));        // scale_dropout_inv (1: no dropout)
  TRY(matmul(d, q, k_t, s));                                       // matmul_Q_KT
  TRY(pointwise(d, CUDNN_POINTWISE_MUL, s, scale, s_scaled));      // mul_s_attn_scale
  TRY(pointwise(d, CUDNN_POINTWISE_SUB, s_scaled, stats, s_centered));  // sub_s_m
  TRY(pointwise(d, CUDNN_POINTWISE_EXP, s_centered, NULL, p));     // exp_s
  TRY(reshape(d, p, p_t));                                         // reshape_p
  TRY(matmul(d, p_t, dout, dv));                                   // matmul_pT_dO
  TRY(matmul(d, dout, v_t, dp));                                   // matmul_dO_VT
  TRY(pointwise(d, CUDNN_POINTWISE_SUB, dp, sum, dp_centered));    // sub_dP_softmax_sum
  TRY(pointwise(d, CUDNN_POINTWISE_MUL, dp_centered, p, ds_unscaled));  // mul_dP_exp_s
  TRY(pointwise(d, CUDNN_POINTWISE_MUL, ds_unscaled, scale, ds));  // mul_dS_attn_scale
  TRY(reshape(d, ds, ds_t));                                       // reshape_dS
  TRY(matmul(d, ds_t, q, dk));                                     // matmul_dST_Q
  TRY(reshape(d, k_t, k));                                         // reshape_k
  TRY(matmul(d, ds, k, dq_accum));                                 // matmul_dS_K
  TRY(pointwise(d, CUDNN_POINTWISE_IDENTITY, dq_accum, NULL, dq)); // identity_dQ
  return st;
}

int dl_attn_graph_variants(const dl_attn_key *key) { return key->dir == DL_ATTN_BWD ? 1 : 2; }

cudnnStatus_t dl_attn_graph_ops(dl_attn_descs *d, const dl_attn_key *key, int variant, char *why, size_t why_size) {
  dl_attn_layout l;
  dl_attn_layout_make(&l, key->n, key->t, key->heads, key->head_dim);
  d->next_uid = DL_ATTN_UID_VIRTUAL;
  if (key->dir == DL_ATTN_BWD) return backward_ops(d, key, &l, why, why_size);
  return variant == 0 ? forward_ops(d, key, &l, why, why_size) : composite_forward_ops(d, key, &l, why, why_size);
}

void dl_attn_descs_free(dl_attn_descs *d) {
  for (int i = d->count - 1; i >= 0; i--) cudnnBackendDestroyDescriptor(d->all[i]);
  d->count = d->nops = 0;
}
