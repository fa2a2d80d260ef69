// Branch-free float exp and erf that the compiler vectorizes inside
// `#pragma omp simd` loops. libm's scalar expf/erff made softmax and exact
// GELU cost as much as the matmuls. Accuracy (checked by tests/model/test_ops):
// exp within 2 ulp over the normal range, erf within 5e-7 absolute.
#ifndef DISTILL_MODEL_CPU_FAST_MATH_H
#define DISTILL_MODEL_CPU_FAST_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#pragma omp declare simd notinbranch
static inline float dl_fast_expf(float x) {
  // e^x = 2^n * e^r with n = round(x / ln 2) and |r| <= ln2 / 2.
  x = x < -87.0f ? -87.0f : x;  // comparisons, not fminf: those stay calls
  x = x > 88.0f ? 88.0f : x;
  // Round to nearest by adding and removing 1.5 * 2^23 (floorf is a libm
  // call here and would stop vectorization).
  const float shifter = 12582912.0f;
  float n = (x * 1.44269504088896341f + shifter) - shifter;
  float r = x - n * 0.693359375f;          // ln2 split in two parts so that
  r = r - n * -2.12194440e-4f;             // n * ln2_hi is exact
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
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

#endif
