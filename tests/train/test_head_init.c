// DINO head initialization against the official one (dinov2 layers/
// dino_head.py): MLP weights trunc_normal_(std=.02) with torch's default
// absolute bounds a=-2, b=2, so in effect a normal of std 0.02 (the old ±2σ
// truncation gave std 0.0176 and never |w| > 0.04); zero biases; the last
// layer weight_g = 1 and weight_v a Linear's default, uniform within
// 1/sqrt(bottleneck).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/heads.h"
#include "tests/harness.h"

int main(void) {
  const dl_head_config cfg = {.in_dim = 384, .hidden_dim = 2048, .out_dim = 256, .nlayers = 3, .prototypes = 4096};
  dl_head h, h2, h3;
  dl_head_init(&h, &cfg), dl_head_init(&h2, &cfg), dl_head_init(&h3, &cfg);
  dl_head_init_random(&h, 3);
  dl_head_init_random(&h2, 3);
  dl_head_init_random(&h3, 4);
  size_t all_n = 0, all_big = 0;
  double all_ss = 0.0;
  for (int l = 0; l < cfg.nlayers; l++) {
    const dl_param_entry *w = &h.layout.entries[2 * l], *bias = &h.layout.entries[2 * l + 1];
    const float *p = h.params + w->offset, *pb = h.params + bias->offset;
    double s = 0.0, ss = 0.0, mx = 0.0;
    size_t big = 0;
    for (size_t i = 0; i < w->numel; i++) {
      s += p[i], ss += (double)p[i] * p[i];
      mx = fmax(mx, fabs(p[i]));
      big += fabs(p[i]) > 0.04;
    }
    const double mean = s / w->numel, sd = sqrt(ss / w->numel - mean * mean);
    int zero = 1;
    for (size_t i = 0; i < bias->numel; i++) zero &= pb[i] == 0.0f;
    CHECK(fabs(sd / 0.02 - 1.0) < 0.01 && fabs(mean) < 1e-4,
          "%s (%zu values): std %.5f (0.02 within 1%%: %+.2f%%), mean %.2g", w->name, w->numel, sd,
          100.0 * (sd / 0.02 - 1.0), mean);
    // A normal puts 4.55% beyond 2 std.
    CHECK(big > 0 && fabs((double)big / w->numel - 0.0455) < 0.002,
          "%s: %.3f%% of |w| above 0.04 (normal: 4.55%%; the old 2-std truncation: 0), largest %.4f", w->name,
          100.0 * big / w->numel, mx);
    CHECK(zero, "%s: zero", bias->name);
    all_n += w->numel, all_big += big, all_ss += ss;
  }
  CHECK(fabs(sqrt(all_ss / all_n) / 0.02 - 1.0) < 0.01 && all_big > 0,
        "all MLP weights (%zu): rms %.5f, %zu above 0.04", all_n, sqrt(all_ss / all_n), all_big);

  const float *g = dl_head_param(&h, h.last_g), *v = dl_head_param(&h, h.last_v);
  const size_t nv = h.layout.entries[h.last_v].numel;
  const double bound = 1.0 / sqrt(256.0);
  int ones = 1;
  for (int k = 0; k < cfg.prototypes; k++) ones &= g[k] == 1.0f;
  double s = 0.0, ss = 0.0, mx = 0.0;
  for (size_t i = 0; i < nv; i++) s += v[i], ss += (double)v[i] * v[i], mx = fmax(mx, fabs(v[i]));
  const double mean = s / nv, sd = sqrt(ss / nv - mean * mean);
  CHECK(ones, "last_layer.weight_g: all %d are 1", cfg.prototypes);
  CHECK(mx <= bound && mx > 0.999 * bound && fabs(sd / (bound / sqrt(3.0)) - 1.0) < 0.01 && fabs(mean) < 1e-3,
        "last_layer.weight_v (%zu): uniform within 1/sqrt(256) = %.4f: largest %.5f, std %.5f (uniform %.5f), "
        "mean %.2g", nv, bound, mx, sd, bound / sqrt(3.0), mean);

  CHECK(memcmp(h.params, h2.params, h.layout.total * sizeof(float)) == 0, "the same seed gives the same head");
  size_t same = 0;
  for (size_t i = 0; i < h.layout.total; i++) same += h.params[i] == h3.params[i] && h.params[i] != 0.0f;
  CHECK(same == (size_t)cfg.prototypes, "another seed another head (%zu equal nonzero values of %zu: the weight_g, all 1)", same,
        h.layout.total);
  dl_head_free(&h), dl_head_free(&h2), dl_head_free(&h3);
  return dl_test_summary("test_head_init");
}
