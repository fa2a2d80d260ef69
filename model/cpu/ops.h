// The CPU backend's ops: float32, the own sgemm (gemm.h) for large
// linear layers and OpenBLAS sgemm for every other matmul, OpenMP for the
// rest. Matrices are row-major; a linear layer's weight is [out, in] as in
// PyTorch, so y = x W^T + b.
#ifndef DISTILL_MODEL_CPU_OPS_H
#define DISTILL_MODEL_CPU_OPS_H

#include <stddef.h>

// y[m, n] = x[m, k] @ w[n, k]^T (+ bias[n] when bias is not NULL).
void dl_linear(float *y, const float *x, const float *w, const float *bias, int m, int k, int n);

// y = gelu(x w^T + bias), exact GELU; the activation is applied while the
// output tile is in cache when the own sgemm runs.
void dl_linear_gelu(float *y, const float *x, const float *w, const float *bias, int m, int k, int n);

// res[m, n] += gamma[n] * (x w^T + bias) (gamma NULL: 1): a linear layer, its
// LayerScale and the residual add in one pass over the output. scratch:
// [m, n] floats that the call may overwrite.
void dl_linear_residual(float *res, float *scratch, const float *x, const float *w, const float *bias,
                        const float *gamma, int m, int k, int n);

// Row-wise LayerNorm over d features: y = (x - mean) / sqrt(var + eps) * g + b.
void dl_layernorm(float *y, const float *x, const float *g, const float *b, int rows, int d, float eps);

// x = 0.5 x (1 + erf(x / sqrt 2)) in place (exact GELU).
void dl_gelu_inplace(float *x, size_t n);

// For each row of xg [rows, 2h]: out[r, j] = silu(xg[r, j]) * xg[r, h + j].
void dl_swiglu(float *out, const float *xg, int rows, int h);

// x[r, :] += gamma * y[r, :] (LayerScale and the residual add in one pass).
void dl_residual_scaled(float *x, const float *y, const float *gamma, int rows, int d);

// Multi-head self-attention for `batch` sequences of t tokens:
// qkv [batch*t, 3*heads*hd] (q, k, v blocks, head-major inside each), out
// [batch*t, heads*hd]. scratch: dl_attention_scratch_floats(t) floats for each
// OpenMP thread.
void dl_attention(float *out, const float *qkv, int batch, int t, int heads, int hd, float *scratch);
size_t dl_attention_scratch_floats(int t);

// Row-wise softmax in place, single-threaded (callers parallelize over rows
// or heads).
void dl_softmax_rows(float *s, int rows, int cols);

// Images [n, 3, h, w] to patch rows [n * (h/p) * (w/p), 3 * p * p] in the
// conv weight's (c, ky, kx) order, so the patch embedding is one matmul.
void dl_unfold_patches(float *out, const float *img, int n, int h, int w, int p);

#endif
