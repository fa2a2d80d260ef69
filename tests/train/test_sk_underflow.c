// Sinkhorn-Knopp for a sample far below the group's maximum logit. Ours
// subtracts the group-wide maximum of logits / T before exp, so a sample
// whose logits all lie more than about 87-104 T below it underflows to a
// zero (or subnormal) row, where the row step used to divide 0 / 0. The
// reference is the official unshifted algorithm (dinov2 loss/
// dino_clstoken_loss.py sinkhorn_knopp_teacher) in double, where exp of these
// values does not underflow; logits / T is rounded to float first, as the
// official code divides in float32.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/losses.h"
#include "tests/harness.h"
#include "tests/train/ref_util.h"

static void official_sk(double *q, const float *logits, int b, int k, float temp, int iters) {
  const size_t n = (size_t)b * k;
  double total = 0.0;
  for (size_t i = 0; i < n; i++) total += q[i] = exp((double)(logits[i] / temp));
  for (size_t i = 0; i < n; i++) q[i] /= total;
  double *cols = calloc((size_t)k, sizeof(double));
  for (int it = 0; it < iters; it++) {
    for (int j = 0; j < k; j++) cols[j] = 0.0;
    for (int r = 0; r < b; r++)
      for (int j = 0; j < k; j++) cols[j] += q[(size_t)r * k + j];
    for (int r = 0; r < b; r++) {
      double *qr = q + (size_t)r * k, s = 0.0;
      for (int j = 0; j < k; j++) s += qr[j] = qr[j] / cols[j] / k;
      for (int j = 0; j < k; j++) qr[j] = qr[j] / s / b;
    }
  }
  for (size_t i = 0; i < n; i++) q[i] *= b;
  free(cols);
}

// b samples of k logits uniform in [-1, 1); sample `low` shifted by -drop * T.
static void check(const char *label, int b, int k, float temp, int iters, int low, float drop) {
  const size_t n = (size_t)b * k;
  float *logits = malloc(n * sizeof(float)), *q = malloc(n * sizeof(float)), *scratch = malloc((k + 1) * sizeof(float));
  double *ref = malloc(n * sizeof(double));
  unsigned long long st = 1234 + (unsigned long long)b * 7 + k;
  for (size_t i = 0; i < n; i++) logits[i] = ref_rand(&st);
  for (int j = 0; j < k; j++) logits[(size_t)low * k + j] -= drop * temp;
  dl_sinkhorn_knopp(q, logits, b, k, temp, iters, NULL, scratch);
  official_sk(ref, logits, b, k, temp, iters);
  int finite = 1;
  double row_err = 0.0, col_err = 0.0, col_vs_bk = 0.0, num = 0.0, den = 0.0, low_worst = 0.0, low_min = 1e30;
  for (size_t i = 0; i < n; i++) {
    finite &= isfinite(q[i]);
    num += (q[i] - ref[i]) * (q[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  for (int r = 0; r < b; r++) {
    double s = 0.0;
    for (int j = 0; j < k; j++) s += q[(size_t)r * k + j];
    row_err = fmax(row_err, fabs(s - 1.0));
  }
  for (int j = 0; j < k; j++) {
    double s = 0.0, sr = 0.0;
    for (int r = 0; r < b; r++) s += q[(size_t)r * k + j], sr += ref[(size_t)r * k + j];
    col_err = fmax(col_err, fabs(s - sr) / sr);
    col_vs_bk = fmax(col_vs_bk, fabs(s - (double)b / k) / ((double)b / k));
  }
  for (int j = 0; j < k; j++) {
    const double g = q[(size_t)low * k + j], e = ref[(size_t)low * k + j];
    low_worst = fmax(low_worst, fabs(g - e) / e);
    low_min = fmin(low_min, e);
  }
  const double rel = sqrt(num / den);
  printf("%s: b=%d k=%d T=%g iters=%d, sample %d at -%g T\n", label, b, k, temp, iters, low, drop);
  CHECK(finite, "%s: every target finite", label);
  CHECK(row_err < 1e-5, "%s: every sample's target sums to 1 (worst |err| %.2g)", label, row_err);
  CHECK(col_err < 1e-5, "%s: prototype sums equal the official ones (worst rel %.2g; they are B/K within %.2g, "
        "as %d iterations leave them)", label, col_err, col_vs_bk, iters);
  CHECK(rel < 1e-5, "%s: all targets equal the official algorithm in double (rel %.2g)", label, rel);
  CHECK(low_worst < 1e-5, "%s: the low sample's targets, element-wise (worst rel %.2g; smallest %.3g)", label,
        low_worst, low_min);
  free(logits); free(q); free(scratch); free(ref);
}

int main(void) {
  // All of the low sample's shifted exps underflow to 0: 0 / 0 before.
  check("underflowed sample", 8, 64, 0.04f, 3, 3, 200.0f);
  check("underflowed sample, T 0.07, last row", 16, 1000, 0.07f, 3, 15, 200.0f);
  check("underflowed sample, 10 iterations", 8, 64, 0.04f, 10, 0, 200.0f);
  // Subnormal, not zero: finite before, but its entries had lost precision.
  check("subnormal sample", 8, 64, 0.04f, 3, 5, 95.0f);
  // No sample far below: the ordinary path, unchanged.
  check("no low sample", 8, 64, 0.04f, 3, 2, 0.0f);
  return dl_test_summary("test_sk_underflow");
}
