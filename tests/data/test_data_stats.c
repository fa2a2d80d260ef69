// The augmentation draws over 10,000 samples match the specification within
// 3 standard errors: per crop kind, the frequencies of flip, colour jitter,
// grayscale, blur and solarize, the jitter factors' means, and the crop-area
// distribution (histograms against the exact law, computed by quadrature).
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "data/augment.h"
#include "data/rng.h"
#include "tests/harness.h"

enum { kSamples = 10000, kImage = 1000, kBins = 8 };

static const char *kKindNames[3] = {"global crop 1", "global crop 2", "local crops"};

// |observed - p| / SE for a Bernoulli frequency over n trials (SE from p;
// a p of 0 or 1 must be hit exactly).
static double z_bernoulli(long hits, long n, double p) {
  double f = (double)hits / n;
  if (p == 0 || p == 1) return f == p ? 0 : INFINITY;
  return fabs(f - p) / sqrt(p * (1 - p) / n);
}

static void check_frequency(const char *what, int kind, long hits, long n, double p) {
  double z = z_bernoulli(hits, n, p);
  CHECK(z <= 3.0, "%-13s %-10s %.4f over %ld crops, spec %.2f, z = %.2f", kKindNames[kind], what, (double)hits / n, n, p, z);
}

// P(final box area fraction in each bin) for a square image, from the spec:
// up to 10 tries of (a ~ U[lo, hi], log r ~ U[log 3/4, log 4/3]), accepted
// when a*r <= 1 and a/r <= 1; else the whole image (fraction 1).
static void expected_area_law(double lo, double hi, double *bins) {
  enum { kGrid = 2000 };
  double accept = 0, lr_lo = log(0.75), lr_hi = log(4.0 / 3.0);
  double first_try[kBins] = {0};
  for (int i = 0; i < kGrid; i++) {
    double a = lo + (hi - lo) * (i + 0.5) / kGrid;
    for (int j = 0; j < kGrid; j++) {
      double r = exp(lr_lo + (lr_hi - lr_lo) * (j + 0.5) / kGrid);
      if (a * r <= 1 && a / r <= 1) {
        double w = 1.0 / ((double)kGrid * kGrid);
        accept += w;
        int b = (int)((a - lo) / (hi - lo) * kBins);
        first_try[b < kBins ? b : kBins - 1] += w;
      }
    }
  }
  double fail10 = pow(1 - accept, 10);
  for (int b = 0; b < kBins; b++) bins[b] = first_try[b] / accept * (1 - fail10);
  bins[kBins - 1] += fail10;
}

static void check_area(int kind, const long *hist, long n, double lo, double hi) {
  double want[kBins];
  expected_area_law(lo, hi, want);
  double worst = 0;
  int worst_bin = 0;
  for (int b = 0; b < kBins; b++) {
    double z = z_bernoulli(hist[b], n, want[b]);
    if (z > worst) worst = z, worst_bin = b;
  }
  CHECK(worst <= 3.0, "%-13s area fraction in %d bins over [%.2f, %.2f]: worst bin %d at %.4f vs %.4f, z = %.2f",
        kKindNames[kind], kBins, lo, hi, worst_bin, (double)hist[worst_bin] / n, want[worst_bin], worst);
}

int main(void) {
  dl_crop_spec spec = dl_crop_spec_dinov2();
  long n[3] = {0}, flip[3] = {0}, jitter[3] = {0}, gray[3] = {0}, blur[3] = {0}, solar[3] = {0};
  long hist[3][kBins] = {{0}};
  double sum_b = 0, sum_c = 0, sum_s = 0, sum_h = 0, sum_logr = 0;
  long first_pos[4] = {0};
  long n_jit = 0;
  for (long s = 0; s < kSamples; s++) {
    uint64_t seed = dl_key_derive(99, (uint64_t)s);
    for (int k = 0; k < spec.global_count + spec.local_count; k++) {
      dl_crop_draw d;
      dl_crop_draw_params(&spec, seed, k, kImage, kImage, &d);
      int kind = d.kind;
      n[kind]++, flip[kind] += d.flip, jitter[kind] += d.jitter, gray[kind] += d.grayscale;
      blur[kind] += d.blur, solar[kind] += d.solarize;
      int local = kind == DL_CROP_LOCAL;
      double lo = local ? spec.local_scale_lo : spec.global_scale_lo, hi = local ? spec.local_scale_hi : spec.global_scale_hi;
      double a = (double)d.box.width * d.box.height / ((double)kImage * kImage);
      int b = (int)floor((a - lo) / (hi - lo) * kBins);
      hist[kind][b < 0 ? 0 : b >= kBins ? kBins - 1 : b]++;
      if (d.jitter) {
        n_jit++;
        sum_b += d.brightness, sum_c += d.contrast, sum_s += d.saturation, sum_h += d.hue;
        first_pos[d.jitter_order[0]]++;
      }
      if (local) sum_logr += log((double)d.box.width / d.box.height);
    }
  }
  static const double kBlur[3] = {0.0, 0.9, 0.5}, kSolar[3] = {0.0, 0.2, 0.0};
  for (int kind = 0; kind < 3; kind++) {
    check_frequency("flip", kind, flip[kind], n[kind], 0.5);
    check_frequency("jitter", kind, jitter[kind], n[kind], 0.8);
    check_frequency("grayscale", kind, gray[kind], n[kind], 0.2);
    check_frequency("blur", kind, blur[kind], n[kind], kBlur[kind]);
    check_frequency("solarize", kind, solar[kind], n[kind], kSolar[kind]);
  }
  check_area(0, hist[0], n[0], spec.global_scale_lo, spec.global_scale_hi);
  check_area(1, hist[1], n[1], spec.global_scale_lo, spec.global_scale_hi);
  check_area(2, hist[2], n[2], spec.local_scale_lo, spec.local_scale_hi);
  // Uniform factors: mean (lo+hi)/2, SE = (hi-lo)/sqrt(12 n).
  struct { const char *name; double sum, lo, hi; } f[4] = {
      {"brightness", sum_b, 0.6, 1.4}, {"contrast", sum_c, 0.6, 1.4}, {"saturation", sum_s, 0.8, 1.2}, {"hue", sum_h, -0.1, 0.1}};
  for (int i = 0; i < 4; i++) {
    double mean = f[i].sum / n_jit, se = (f[i].hi - f[i].lo) / sqrt(12.0 * n_jit);
    double z = fabs(mean - (f[i].lo + f[i].hi) / 2) / se;
    CHECK(z <= 3.0, "jitter %-10s mean %.5f over %ld crops, spec %.2f, z = %.2f", f[i].name, mean, n_jit, (f[i].lo + f[i].hi) / 2, z);
  }
  static const char *kOps[4] = {"brightness", "contrast", "saturation", "hue"};
  for (int i = 0; i < 4; i++) {
    double zf = z_bernoulli(first_pos[i], n_jit, 0.25);
    CHECK(zf <= 3.0, "jitter order: %-10s first in %.4f of %ld jittered crops, spec 0.25, z = %.2f", kOps[i],
          (double)first_pos[i] / n_jit, n_jit, zf);
  }
  // Local crops are always accepted on a square image: log(w/h) ~ U[log 3/4, log 4/3], mean 0.
  double se = (log(4.0 / 3.0) - log(0.75)) / sqrt(12.0 * n[2]);
  double z = fabs(sum_logr / n[2]) / se;
  CHECK(z <= 3.0, "local crops: mean log aspect %.5f, spec 0, z = %.2f", sum_logr / n[2], z);
  return dl_test_summary("test_data_stats");
}
