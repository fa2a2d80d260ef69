// The CUDA backend's ops: the same set as the CPU ops (model/cpu/ops.h,
// ops_backward.h, the loss and optimizer kernels), on device pointers, queued
// on a stream. Activations and weights are stored in `dtype` (bf16 for
// training and inference, float32 for the parity tests that hold the GPU to
// 1e-5 of the CPU); every kernel accumulates in float32. Parameter gradients,
// Adam moments, master weights, LayerNorm statistics and everything in the
// losses are float32, as in the official code.
//
// Pointers typed `void *` hold `dtype` elements; `float *` ones hold float32.
#ifndef DISTILL_MODEL_CUDA_CUDA_OPS_H
#define DISTILL_MODEL_CUDA_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dl_dtype { DL_DTYPE_F32, DL_DTYPE_BF16 } dl_dtype;
size_t dl_dtype_size(dl_dtype dtype);

// Storage conversions (float32 master weights to their bf16 copies and back).
void dl_cuda_convert(void *dst, dl_dtype dst_type, const void *src, dl_dtype src_type, size_t n, cudaStream_t s);

// y = LayerNorm(x) * g + b per row of d; mean and rstd (float, may be NULL)
// keep the row statistics for the backward pass.
void dl_cuda_layernorm(dl_dtype dt, void *y, float *mean, float *rstd, const void *x, const void *g,
                       const void *b, int rows, int d, float eps, cudaStream_t s);
// dx overwritten; dg, db (float) accumulate.
void dl_cuda_layernorm_backward(dl_dtype dt, void *dx, float *dg, float *db, const void *dy, const void *x,
                                const void *g, const float *mean, const float *rstd, int rows, int d,
                                cudaStream_t s);

// The float32 residual stream (residual_norm.cu). With branch (dtype) given:
// x_out = x_in + gamma * branch in float32 (x_out may be x_in), then y =
// LayerNorm(x_out) * g + b; with branch NULL: y = LayerNorm(x_in) * g + b
// (x_out, gamma unused). y in dtype (the next GEMM's operand); mean, rstd
// (float, may be NULL) keep the statistics for the backward pass.
void dl_cuda_residual_layernorm(dl_dtype dt, float *x_out, void *y, float *mean, float *rstd, const float *x_in,
                                const void *branch, const void *gamma, const void *g, const void *b, int rows,
                                int d, float eps, cudaStream_t s);
// The LayerNorm backward for a float32 input x: its input gradient is ADDED
// to the float32 residual gradient dresid; dg, db (float, may be NULL)
// accumulate, computed in the same pass.
void dl_cuda_layernorm_backward_residual(dl_dtype dt, float *dresid, float *dg, float *db, const void *dy,
                                         const float *x, const void *g, const float *mean, const float *rstd,
                                         int rows, int d, cudaStream_t s);
// The backward of x += gamma * y for a float32 gradient dx, in one pass:
// dy = gamma * dx (dtype, written), dgamma += sum_r dx * y and, when dbias is
// not NULL, the bias gradient of the layer that produced y: dbias += sum_r dy.
void dl_cuda_layerscale_backward(dl_dtype dt, void *dy, float *dgamma, float *dbias, const float *dx, const void *y,
                                 const void *gamma, int rows, int d, cudaStream_t s);

// Exact (erf) GELU, as DINOv2's nn.GELU.
void dl_cuda_gelu(dl_dtype dt, void *y, const void *x, size_t n, cudaStream_t s);
void dl_cuda_gelu_backward(dl_dtype dt, void *dx, const void *dy, const void *pre, size_t n, cudaStream_t s);
// The same on [rows, n] with the bias gradient of the layer that produced
// pre in the same pass: db (float) += column sums of dx.
void dl_cuda_gelu_backward_bias_grad(dl_dtype dt, void *dx, float *db, const void *dy, const void *pre, int rows,
                                     int n, cudaStream_t s);

// out[r, j] = silu(xg[r, j]) * xg[r, h + j].
void dl_cuda_swiglu(dl_dtype dt, void *out, const void *xg, int rows, int h, cudaStream_t s);
void dl_cuda_swiglu_backward(dl_dtype dt, void *dxg, const void *dout, const void *xg, int rows, int h,
                             cudaStream_t s);

// x[r, :] += gamma * y[r, :]; backward: dy = gamma * dx, dgamma (float) += sum_r dx * y.
void dl_cuda_residual_scaled(dl_dtype dt, void *x, const void *y, const void *gamma, int rows, int d,
                             cudaStream_t s);
void dl_cuda_residual_scaled_backward(dl_dtype dt, void *dy, float *dgamma, const void *dx, const void *y,
                                      const void *gamma, int rows, int d, cudaStream_t s);

// Flash attention for head dimension 64 (the only one DINOv2 uses): qkv
// [batch*t, 3*heads*64] as the CPU op, out [batch*t, heads*64]. Never forms
// the t x t matrix; lse (float [batch, heads, t], may be NULL) keeps each
// query's log-sum-exp for the backward pass.
#define DL_CUDA_ATTN_HEAD_DIM 64
int dl_cuda_attention(dl_dtype dt, void *out, float *lse, const void *qkv, int batch, int t, int heads, int hd,
                      cudaStream_t s);
// dqkv [batch*t, 3*heads*64] (overwritten) from dout, the forward's out and lse.
// scratch: dl_cuda_attention_backward_scratch_floats floats.
int dl_cuda_attention_backward(dl_dtype dt, void *dqkv, const void *dout, const void *qkv, const void *out,
                               const float *lse, int batch, int t, int heads, int hd, float *scratch,
                               cudaStream_t s);
size_t dl_cuda_attention_backward_scratch_floats(int batch, int t, int heads);

// Position embeddings: dst [gh*gw, d] = Wy src Wx^T per channel, with the 1-D
// weights of model/pos_embed.h (wy [gh, grid], wx [gw, grid], float).
void dl_cuda_pos_embed_resize(dl_dtype dt, void *dst, const void *src, const float *wy, const float *wx,
                              int grid, int d, int gh, int gw, cudaStream_t s);

// ---- losses (float32) ----
// softmax((logits - center) / temp) per row (center may be NULL).
void dl_cuda_softmax_center(float *probs, const float *logits, const float *center, int b, int k, float temp,
                            cudaStream_t s);
// Per row i of student [m, k] and targets [m, k]:
//   loss_rows[i] = w_i * -sum_k t log softmax(s / temp)
//   d_student[i] (+)= grad_scale * w_i * (softmax(s / temp) * sum_k t - t) / temp
// (weights NULL: 1; d_student NULL: no gradient; accumulate selects += or =).
void dl_cuda_cross_entropy_rows(float *loss_rows, float *d_student, const float *student, const float *target,
                                const float *weights, int m, int k, float temp, float grad_scale, int accumulate,
                                cudaStream_t s);

// The iBOT selection's rows (model/ibot_masks.h; rows: device int indices):
// dst[i] = src[rows[i]] for i < m, rows of row_bytes (even; any storage
// type), and the float32 adjoint dst[rows[i]] = src[i] (other rows of dst
// are left as they are).
void dl_cuda_gather_rows(void *dst, const void *src, const int *rows, int m, size_t row_bytes, cudaStream_t s);
void dl_cuda_scatter_rows(float *dst, const float *src, const int *rows, int m, int d, cudaStream_t s);

// Cross-rank sums and maxima of device buffers (NULL fn: one rank).
typedef struct dl_cuda_reduce {
  void (*fn)(float *device_data, size_t n, int is_max, void *ctx, cudaStream_t s);
  void *ctx;
} dl_cuda_reduce;
// Everything a training step needs from its data-parallel group: the
// losses' reductions, and the flat gradient's average over ranks started on
// a stream of its own after the work queued on `compute` (grads_start, which
// may be called for several ranges) and waited for by `compute`
// (grads_finish). world <= 1: none of it is called.
struct dl_err;  // common/err.h
typedef struct dl_cuda_data_parallel {
  int world;
  dl_cuda_reduce reduce;
  void (*grads_start)(void *ctx, float *grads, size_t n, cudaStream_t compute);
  void (*grads_finish)(void *ctx, cudaStream_t compute);
  // The step's final wait on `s` (instead of cudaStreamSynchronize, which a
  // dead peer would hang): 0, or -1 with the group's failure in err.
  int (*wait)(void *ctx, cudaStream_t s, struct dl_err *err);
  void *ctx;
} dl_cuda_data_parallel;
// Sinkhorn-Knopp exactly as dl_sinkhorn_knopp (global max subtracted).
// scratch: k + 4 floats.
void dl_cuda_sinkhorn_knopp(float *q, const float *logits, int b, int k, float temp, int iters,
                            const dl_cuda_reduce *red, float *scratch, cudaStream_t s);
// center = center * momentum + mean over all ranks' rows * (1 - momentum), as
// dl_center_update. scratch: k + 1 floats.
void dl_cuda_center_update(float *center, const float *logits, int b, int k, float momentum,
                           const dl_cuda_reduce *red, float *scratch, cudaStream_t s);
// DINO cross-entropy as dl_dino_loss: student [ns, b, k] logits, teacher
// [nt, b, k] targets; every (student crop, teacher crop) pair (without (s, s)
// for s < nt when skip_same) through dl_cuda_cross_entropy_rows.
// loss_rows: dl_dino_pairs(ns, nt, skip_same) * b floats, whose sum is the
// loss (already times scale / b); d_student (may be NULL) is overwritten.
void dl_cuda_dino_loss(float *loss_rows, float *d_student, const float *student, const float *teacher, int ns,
                       int nt, int b, int k, float temp, int skip_same, float scale, cudaStream_t s);
// KoLeo as dl_koleo_loss on x [n, d] (n <= 1024); loss (one float on the
// device) = scale * value; d_x (may be NULL) = its gradient.
// scratch: dl_cuda_koleo_scratch_floats(n, d) floats.
void dl_cuda_koleo(float *loss, float *d_x, const float *x, int n, int d, float scale, float *scratch,
                   cudaStream_t s);
size_t dl_cuda_koleo_scratch_floats(int n, int d);

// Feature mode (dl_cosine_loss, dl_smooth_l1_loss; float32, sums in double):
// loss_rows [rows] gets each row's share of scale * the loss (their sum is the
// loss); d_s [rows, d] (may be NULL) is written, or added to when accumulate.
void dl_cuda_cosine_loss_rows(float *loss_rows, float *d_s, const float *s, const float *t, int rows, int d,
                              float scale, int accumulate, cudaStream_t st);
void dl_cuda_smooth_l1_rows(float *loss_rows, float *d_s, const float *s, const float *t, int rows, int d,
                            float beta, float scale, int accumulate, cudaStream_t st);

// ---- projection heads ----
// y_r = gain_r * x_r / max(||x_r||, eps) (gains NULL: 1), norms [rows] (float)
// keep ||x_r||: the bottleneck's L2 normalization (eps 1e-12) and the last
// layer's weight norm (gains = weight_g, x = weight_v, eps 0).
void dl_cuda_row_normalize(dl_dtype y_type, void *y, float *norms, dl_dtype x_type, const void *x,
                           const float *gains, int rows, int d, float eps, cudaStream_t s);
// Its backward from dy and the forward's x and norms: dx (dt, written or
// added to), dgain (float, may be NULL) added to.
void dl_cuda_row_normalize_backward(dl_dtype dt, void *dx, float *dgain, const void *dy, const void *x,
                                    const float *norms, const float *gains, int rows, int d, float eps,
                                    int accumulate, cudaStream_t s);

// ---- optimizer over flat buffers (float32 master weights) ----
// segs: the per-tensor table of model/cuda/adamw_segments.h, in device memory.
struct dl_adamw_segment;
// AdamW over segs[0..count) (a device copy); bf16_copy (may be NULL) receives
// the updated parameters in bf16 for the next forward.
void dl_cuda_adamw(float *params, float *m, float *v, const float *grads, const struct dl_adamw_segment *segs, int count,
                   size_t total, float beta1, float beta2, float eps, float bc2_sqrt, void *bf16_copy,
                   cudaStream_t s);
void dl_cuda_ema(float *ema, const float *params, size_t n, float momentum, cudaStream_t s);
// Global gradient norm into *norm (device float); grads scaled by
// min(1, max_norm / (norm + 1e-6)) when max_norm > 0. scratch: 1 double.
void dl_cuda_clip_grad_norm(float *grads, size_t n, float max_norm, float *norm, double *scratch, cudaStream_t s);

// ---- ViT helpers ----
// images [n, 3, h, w] float -> rows [n * gh * gw, 3 p p] in the conv weight's order.
void dl_cuda_unfold_patches(dl_dtype dt, void *out, const float *images, int n, int h, int w, int p,
                            cudaStream_t s);
// x [n, t, D] (float32: the residual stream) = [cls + pos0, registers,
// patches (or mask token) + pos].
void dl_cuda_assemble_tokens(dl_dtype dt, float *x, const void *patch_tokens, const void *cls, const void *pos0,
                             const void *regs, const void *mask_token, const void *pos, const uint8_t *masks,
                             int n, int np, int registers, int d, cudaStream_t s);
// Column sums of dy [rows, n] added to db (float): the bias gradient.
void dl_cuda_bias_grad(dl_dtype dt, float *db, const void *dy, int rows, int n, cudaStream_t s);

// ---- ViT training helpers ----
void dl_cuda_add(dl_dtype dt, void *a, const void *b, size_t n, cudaStream_t s);  // a += b
// g [n, t, D] (dtype) in token order from d_cls [n, D], d_regs [n, R, D],
// d_patches [n, P, D] (float, each may be NULL: zero).
void dl_cuda_gather_output_grads(dl_dtype dt, void *g, const float *d_cls, const float *d_regs,
                                 const float *d_patches, int n, int np, int registers, int d, cudaStream_t s);
// The reverse for the outputs: x [n, t, D] (dtype) -> cls [n, D] and patches
// [n * np, D] (dtype, each may be NULL); registers are dropped.
void dl_cuda_split_tokens(dl_dtype dt, void *cls, void *patches, const void *x, int n, int np, int registers,
                          int d, cudaStream_t s);
// From dx [n, t, D] (float32), the gradient of the first block's input: cls, its
// position, registers and mask token accumulate (float); dpos [np, D] and
// dtok [n * np, D] (zero where masked) are written.
void dl_cuda_embed_backward(dl_dtype dt, float *g_cls, float *g_pos0, float *g_reg, float *g_mask, float *dpos,
                            void *dtok, const float *dx, const uint8_t *masks, int n, int np, int registers, int d,
                            cudaStream_t s);
// g_src [grid*grid, d] += Wy^T dpos Wx per channel (all float).
void dl_cuda_pos_embed_resize_backward(float *g_src, const float *dpos, const float *wy, const float *wx, int grid,
                                       int d, int gh, int gw, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
