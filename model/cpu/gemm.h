// The CPU backend's own float32 matrix multiply for linear layers, in an AVX2
// and an AVX-512 version (the CPU level chosen at start picks one: see
// cpu_features.h and gemm.c): C = epilogue(A W^T) with A [m, k] (activations,
// row-major) and W [n, k] (a PyTorch linear weight). OpenBLAS spends part of its time outside
// its kernel on these tall shapes and needs a separate pass for the bias and
// the activation; this one packs W once per call, splits the rows of A over
// the OpenMP threads (no synchronization inside) and applies the bias, exact
// GELU or the LayerScale residual add while the output tile is in registers.
#ifndef DISTILL_MODEL_CPU_GEMM_H
#define DISTILL_MODEL_CPU_GEMM_H

#include <stdbool.h>
#include <stddef.h>

// What happens to each output value v = sum_p A[i, p] W[j, p] once complete.
typedef struct dl_gemm_epilogue {
  const float *bias;   // v += bias[j] (NULL: none)
  bool gelu;           // v = gelu(v), exact (erf) form, after the bias
  float *residual;     // when set: residual[i, j] += gamma[j] * v and C is
  const float *gamma;  // scratch only (gamma NULL: 1); ld of residual is n
} dl_gemm_epilogue;

// True when this CPU has AVX2 and FMA (x86-64-v3), which every machine that
// gets past cpu_features.c's check at start has.
bool dl_gemm_available(void);

// C [m, n] (row-major, ld n) = epilogue(A W^T). Requires dl_gemm_available().
// Called outside an OpenMP parallel region it uses all OpenMP threads, inside
// one it runs on the calling thread.
void dl_gemm_nt(float *c, const float *a, const float *w, int m, int k, int n,
                const dl_gemm_epilogue *ep);

// The backward's products, same kernels and threading (no epilogue):
//   dl_gemm_nn: C [m, n] (=, or += when accumulate) A B, A [m, k], B [k, n];
//   dl_gemm_tn: C [m, n] (=, or +=) A^T B, A [k, m], B [k, n].
// For a linear layer y = x W^T: dX = dl_gemm_nn(dY, W), dW += dl_gemm_tn(dY, X).
void dl_gemm_nn(float *c, const float *a, const float *b, int m, int k, int n, bool accumulate);
void dl_gemm_tn(float *c, const float *a, const float *b, int m, int k, int n, bool accumulate);

// The floats of the packed copy a product with n output columns and inner
// size k keeps in the calling thread's buffer (it grows to the largest call
// and stays): W for NT, B for NN and TN. For memory plans.
size_t dl_gemm_packed_floats(int n, int k);

#endif
