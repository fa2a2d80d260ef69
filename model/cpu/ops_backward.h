// Backward passes of the CPU ops in model/cpu/ops.h (float32, sgemm and
// OpenMP, no allocation). Every parameter gradient is ACCUMULATED (+=) into
// what the caller passes, so gradients from several calls (crops of two
// resolutions, shared heads) add up in one buffer. Input gradients are
// overwritten unless a function says otherwise.
#ifndef DISTILL_MODEL_CPU_OPS_BACKWARD_H
#define DISTILL_MODEL_CPU_OPS_BACKWARD_H

#include <stddef.h>

// y = x w^T + b with x [m, k], w [n, k]. dx [m, k] (overwritten, or added to
// when accumulate_dx is non-zero; may be NULL), dw [n, k] += dy^T x,
// db [n] += column sums of dy (db may be NULL). ones: m floats equal to 1.
void dl_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int m, int k, int n, const float *ones, int accumulate_dx);

// LayerNorm with the saved per-row mean and 1/std (dl_layernorm_stats).
// dx is overwritten; dg, db accumulate. scratch: 2 * d * omp_get_max_threads() floats.
void dl_layernorm_stats(float *mean, float *rstd, const float *x, int rows, int d, float eps);
void dl_layernorm_backward(float *dx, float *dg, float *db, const float *dy, const float *x,
                           const float *g, const float *mean, const float *rstd, int rows, int d,
                           float *scratch);
size_t dl_layernorm_backward_scratch_floats(int d);

// Exact GELU: dx = dy * gelu'(pre) where pre is the input of the GELU.
void dl_gelu_backward(float *dx, const float *dy, const float *pre, size_t n);

// out = silu(a) * b over xg = [a | b] rows of width 2h: dxg [rows, 2h].
void dl_swiglu_backward(float *dxg, const float *dout, const float *xg, int rows, int h);

// x += gamma * y: dy = gamma * dx (overwritten), dgamma += sum_rows dx * y.
// scratch: d * omp_get_max_threads() floats.
void dl_residual_scaled_backward(float *dy, float *dgamma, const float *dx, const float *y,
                                 const float *gamma, int rows, int d, float *scratch);

// Attention that keeps its probabilities: probs [batch, heads, t, t].
void dl_attention_train(float *out, float *probs, const float *qkv, int batch, int t, int heads, int hd);
// dqkv [batch*t, 3*heads*hd] from dout [batch*t, heads*hd]; scratch as
// dl_attention_backward_scratch_floats(t) per OpenMP thread.
void dl_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *probs,
                           int batch, int t, int heads, int hd, float *scratch);
size_t dl_attention_backward_scratch_floats(int t);

#endif
