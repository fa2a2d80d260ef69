// The bf16 GEMM (model/cpu/gemm_bf16.h) against double-precision references,
// on shapes with ragged edges everywhere: rows not a multiple of the 12-row
// panel or of a thread's share, columns not a multiple of the 32-column
// panel, odd inner sizes and inner sizes past one 512-wide block.
//
// The bound: bf16 keeps 8 significant bits, so rounding (to nearest even)
// moves each operand by at most u = 2^-8 of itself and each product a'w' lies
// within (2u + u^2)|aw| of aw; VDPBF16PS forms a'w' exactly and accumulates
// in float32, at most one rounding (2^-24) per inner index and per block, so
//   |C - A W^T| <= (2u + u^2 + (k + k/512 + 2) 2^-24) sum_p |a_p w_p|
// element by element. The test asserts that, and the tighter
//   |C - A' W'^T| <= (k + k/512 + 2) 2^-24 sum_p |a'_p w'_p|
// against the product of the inputs rounded by dl_f32_to_bf16, which holds
// only if the kernel rounds A to nearest even as the packer rounds W (a
// truncating conversion misses it by up to 2^-8). The epilogues (bias,
// exact GELU, LayerScale residual) get float32 slack on top. On a CPU
// without AVX-512 BF16 (or at DISTILL_CPU_KERNELS=avx2) only the
// conversions are checked and the test exits 77 (skipped) with the reason.
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu/gemm_bf16.h"
#include "tests/harness.h"

#define U_BF16 (1.0 / 256.0)  // 2^-8
#define U_F32 (1.0 / 16777216.0)

static uint64_t g_state = 11;
static float *rand_vec(size_t n) { return dl_test_rand_vec(n, &g_state); }
static float bf16_round(float x) { return dl_bf16_to_f32(dl_f32_to_bf16(x)); }
static float from_bits(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

static void check_conversions(void) {
  const float one_half_ulp = 1.0f + 1.0f / 256.0f;          // halfway between 1 and 1 + 2^-7
  const float three_half_ulp = 1.0f + 3.0f / 256.0f;        // halfway between 1 + 2^-7 and 1 + 2^-6
  const float past_half = 1.0f + 1.0f / 256.0f + 1.0f / 1048576.0f;
  CHECK(dl_f32_to_bf16(one_half_ulp) == 0x3f80, "tie 1 + 2^-8 rounds to even 1.0 (0x%04x)", dl_f32_to_bf16(one_half_ulp));
  CHECK(dl_f32_to_bf16(three_half_ulp) == 0x3f82, "tie 1 + 3*2^-8 rounds to even 1 + 2^-6 (0x%04x)",
        dl_f32_to_bf16(three_half_ulp));
  CHECK(dl_f32_to_bf16(past_half) == 0x3f81, "just past a tie rounds up (0x%04x)", dl_f32_to_bf16(past_half));
  CHECK(dl_f32_to_bf16(-2.5f) == 0xc020 && dl_bf16_to_f32(0xc020) == -2.5f, "-2.5 is exact in bf16");
  CHECK(dl_f32_to_bf16(from_bits(0x7f7fffffu)) == 0x7f80, "FLT_MAX rounds to +inf, as round-to-nearest does");
  const uint16_t nan = dl_f32_to_bf16(from_bits(0x7f800001u));
  CHECK((nan & 0x7f80) == 0x7f80 && (nan & 0x7f), "a NaN whose payload sits in the low bits stays a NaN (0x%04x)", nan);
}

typedef struct shape { int m, k, n; } shape;

// What each output should be in double, and its error budget.
static void reference(double *ref, double *slack, double *ref16, double *scale16, const float *a, const float *w,
                      shape s) {
  for (int i = 0; i < s.m; i++)
    for (int j = 0; j < s.n; j++) {
      double v = 0, mag = 0, v16 = 0, mag16 = 0;
      for (int p = 0; p < s.k; p++) {
        const float x = a[(size_t)i * s.k + p], y = w[(size_t)j * s.k + p];
        v += (double)x * y;
        mag += fabs((double)x * y);
        const double x16 = bf16_round(x), y16 = bf16_round(y);
        v16 += x16 * y16;
        mag16 += fabs(x16 * y16);
      }
      const double rounds = s.k + s.k / 512 + 2;
      const size_t o = (size_t)i * s.n + j;
      ref[o] = v;
      slack[o] = (2 * U_BF16 + U_BF16 * U_BF16 + rounds * U_F32) * mag;
      ref16[o] = v16;
      scale16[o] = rounds * U_F32 * mag16;
    }
}

static const char *epilogue_name(int e) {
  static const char *names[] = {"none", "bias", "bias+gelu", "bias+layerscale residual"};
  return names[e];
}

static void check_shape(shape s, bool in_parallel) {
  const size_t mn = (size_t)s.m * s.n;
  float *a = rand_vec((size_t)s.m * s.k), *w = rand_vec((size_t)s.n * s.k), *bias = rand_vec(s.n);
  float *gamma = rand_vec(s.n), *res0 = rand_vec(mn), *res = malloc(mn * sizeof *res), *c = malloc(mn * sizeof *c);
  double *ref = malloc(mn * sizeof *ref), *slack = malloc(mn * sizeof *slack);
  double *ref16 = malloc(mn * sizeof *ref16), *scale16 = malloc(mn * sizeof *scale16);
  reference(ref, slack, ref16, scale16, a, w, s);
  dl_bf16_matrix wp;
  dl_bf16_matrix_pack(&wp, w, s.n, s.k);
  for (int e = 0; e < 4; e++) {
    dl_gemm_epilogue ep = {.bias = e >= 1 ? bias : NULL, .gelu = e == 2, .residual = e == 3 ? res : NULL,
                           .gamma = e == 3 ? gamma : NULL};
    memcpy(res, res0, mn * sizeof *res);
    if (in_parallel) {
#pragma omp parallel num_threads(2)
#pragma omp single
      dl_gemm_bf16_nt(c, a, &wp, s.m, &ep);
    } else {
      dl_gemm_bf16_nt(c, a, &wp, s.m, &ep);
    }
    const float *out = e == 3 ? res : c;
    double worst = 0, worst_ratio = 0, worst16 = 0;  // error / allowed, measured error / sum|aw|
    for (size_t o = 0; o < mn; o++) {
      const int j = (int)(o % s.n);
      double v = ref[o], tol = slack[o];
      if (e >= 1) {
        v += bias[j];
        tol += 2 * U_F32 * (fabs(ref[o]) + fabs(bias[j]));
      }
      if (e == 2) {  // GELU's slope is at most 1.13; fast erf adds up to 5e-7 absolute
        v = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
        tol = 1.13 * tol + 1e-6 * (1 + fabs(v));
      }
      if (e == 3) {
        v = res0[o] + gamma[j] * v;
        tol = fabs(gamma[j]) * tol + 2 * U_F32 * (fabs(res0[o]) + fabs(v));
      }
      const double err = fabs(out[o] - v);
      if (!(err <= worst * tol)) worst = tol > 0 ? err / tol : INFINITY;
      if (e == 0) {
        const double mag = slack[o] / (2 * U_BF16 + U_BF16 * U_BF16 + (s.k + s.k / 512 + 2) * U_F32);
        if (mag > 0 && err / mag > worst_ratio) worst_ratio = err / mag;
        const double err16 = fabs(c[o] - ref16[o]) / (scale16[o] + 1e-30);
        if (!(err16 <= worst16)) worst16 = err16;
      }
    }
    CHECK(worst <= 1.0, "m=%d k=%d n=%d %s%s: worst error is %.3f of the bound", s.m, s.k, s.n, epilogue_name(e),
          in_parallel ? " (inside a parallel region)" : "", worst);
    if (e == 0) {
      printf("     measured: max |C - A W^T| / sum|aw| = %.2e (bound %.2e)\n", worst_ratio,
             2 * U_BF16 + U_BF16 * U_BF16 + (s.k + s.k / 512 + 2) * U_F32);
      CHECK(worst16 <= 1.0, "m=%d k=%d n=%d: against A' W'^T (inputs rounded to nearest even) worst error is %.3f of "
            "the float32-accumulation bound", s.m, s.k, s.n, worst16);
    }
  }
  dl_bf16_matrix_free(&wp);
  free(a), free(w), free(bias), free(gamma), free(res0), free(res), free(c);
  free(ref), free(slack), free(ref16), free(scale16);
}

int main(void) {
  check_conversions();
  if (!dl_gemm_bf16_available()) {
    printf("skipped: the bf16 GEMM needs AVX-512 BF16 at the avx512 kernel level; this process has neither "
           "(conversions checked)\n");
    dl_test_summary("test_gemm_bf16");
    return dl_test_failures ? 1 : 77;
  }
  const shape shapes[] = {{1, 1, 1}, {13, 7, 33}, {37, 65, 31}, {12, 32, 32}, {100, 513, 47},
                          {250, 200, 65}, {25, 1031, 70}, {129, 384, 96}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) check_shape(shapes[i], false);
  check_shape((shape){61, 97, 45}, true);
  return dl_test_summary("test_gemm_bf16");
}
