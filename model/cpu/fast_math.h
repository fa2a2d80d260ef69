// Branch-free float exp and erf that the compiler vectorizes inside
// `#pragma omp simd` loops. libm's scalar expf/erff made softmax and exact
// GELU cost as much as the matmuls. Accuracy (checked by tests/model/test_ops):
// exp within 2 ulp over the normal range, erf within 5e-7 absolute.
#ifndef DISTILL_MODEL_CPU_FAST_MATH_H
#define DISTILL_MODEL_CPU_FAST_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

// n = round(x / ln 2), and e^r for r = x - n ln 2 (|r| <= ln2 / 2): e^x is
// 2^n times the second. Round to nearest by adding and removing 1.5 * 2^23
// (floorf is a libm call here and would stop vectorization).
#pragma omp declare simd notinbranch
static inline float dl_exp_reduce_n(float x) {
  const float shifter = 12582912.0f;
  return (x * 1.44269504088896341f + shifter) - shifter;
}
#pragma omp declare simd notinbranch
static inline float dl_exp_reduced(float x, float n) {
  float r = x - n * 0.693359375f;  // ln2 split in two parts so that
  r = r - n * -2.12194440e-4f;     // n * ln2_hi is exact
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  return p * r + 1.0f;
}
// 2^n for integral n in [-126, 127], built from its exponent bits.
#pragma omp declare simd notinbranch
static inline float dl_exp2_int(int32_t n) {
  const int32_t bits = (n + 127) << 23;
  float v;
  memcpy(&v, &bits, sizeof v);
  return v;
}

#pragma omp declare simd notinbranch
static inline float dl_fast_expf(float x) {
  x = x < -87.0f ? -87.0f : x;  // comparisons, not fminf: those stay calls
  x = x > 88.0f ? 88.0f : x;
  const float n = dl_exp_reduce_n(x);
  return dl_exp_reduced(x, n) * dl_exp2_int((int32_t)n);
}

// dl_fast_expf's polynomial down to float32's subnormals, and 0 below them,
// as libm's expf: 2^n is applied in two normal halves so that the product
// rounds once into the subnormal range. For Sinkhorn-Knopp, where a prototype
// whose every exp underflowed must sum to exactly 0 (dl_fast_expf stops at
// e^-87). Accuracy (tests/model/test_ops): 4 ulp over [-87, 0], 2^-149
// absolute below.
#pragma omp declare simd notinbranch
static inline float dl_fast_expf_subnormal(float x) {
  x = x < -104.0f ? -104.0f : x;  // e^-104 rounds to 0
  x = x > 88.0f ? 88.0f : x;
  const float n = dl_exp_reduce_n(x);
  const int32_t ni = (int32_t)n, n1 = ni / 2, n2 = ni - n1;  // each within [-75, 64]
  return dl_exp_reduced(x, n) * dl_exp2_int(n1) * dl_exp2_int(n2);
}

#pragma omp declare simd notinbranch
static inline float dl_fast_erff(float x) {
  // A rational minimax fit x * P(x^2) / Q(x^2) on [-4, 4]; erf is +-1 to
  // float precision beyond.
  x = x < -4.0f ? -4.0f : x;
  x = x > 4.0f ? 4.0f : x;
  float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 + -2.10102402082508e-06f;
  p = p * x2 + -5.69250639462346e-05f;
  p = p * x2 + -7.34990630326855e-04f;
  p = p * x2 + -2.95459980854025e-03f;
  p = p * x2 + -1.60960333262415e-02f;
  float q = -1.45660718464996e-05f;
  q = q * x2 + -2.13374055278905e-04f;
  q = q * x2 + -1.68282697438203e-03f;
  q = q * x2 + -7.37332916720468e-03f;
  q = q * x2 + -1.42647390514189e-02f;
  return x * p / q;
}

// Exact (erf) GELU, x Phi(x): the row kernel's, and the sgemms' epilogues'.
#pragma omp declare simd notinbranch
static inline float dl_gelu_exact(float x) { return 0.5f * x * (1.0f + dl_fast_erff(x * 0.70710678118654752f)); }

#endif
