// Heads and losses against the official DINOv2 code
// (tests/ref/dinov2/heads_losses.safetensors): the DINO head's output
// (<= 1e-4) and gradients (<= 1e-3), Sinkhorn-Knopp at two temperatures,
// softmax centering and the center update, the DINO, iBOT and KoLeo losses
// and their gradients.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <omp.h>

#include "model/heads.h"
#include "model/losses.h"
#include "tests/harness.h"
#include "tests/train/ref_util.h"

static void check_head(const dl_safetensors *st) {
  dl_head_config cfg = {.in_dim = 128, .hidden_dim = 256, .out_dim = 64, .nlayers = 3, .prototypes = 1000};
  dl_head h;
  dl_head_init(&h, &cfg);
  char name[128];
  int loaded = 0;
  for (int i = 0; i < h.layout.count; i++) {
    snprintf(name, sizeof name, "dino_head.%s", h.layout.entries[i].name);
    size_t n = 0;
    float *w = ref_read(st, name, &n);
    if (w && n == h.layout.entries[i].numel) {
      memcpy(dl_head_param(&h, i), w, n * sizeof(float));
      loaded++;
    }
    free(w);
  }
  CHECK(loaded == h.layout.count, "DINO head: %d of %d weights loaded in the official names", loaded, h.layout.count);
  const int m = 8, K = 1000;
  float *x = ref_read(st, "head.input", NULL), *R = ref_read(st, "head.R", NULL);
  float *out = malloc((size_t)m * K * sizeof(float)), *dx = malloc((size_t)m * 128 * sizeof(float));
  float *grads = calloc(h.layout.total, sizeof(float));
  dl_head_ws ws = {0};
  dl_head_forward(&h, DL_HEAD_FULL, x, m, out, &ws);
  ref_compare(st, "head.output", out, (size_t)m * K, 1e-4);
  dl_head_backward(&h, &ws, R, grads, dx);
  ref_compare(st, "head.grad.input", dx, (size_t)m * 128, 1e-3);
  for (int i = 0; i < h.layout.count; i++) {
    snprintf(name, sizeof name, "head.grad.%s", h.layout.entries[i].name);
    ref_compare(st, name, grads + h.layout.entries[i].offset, h.layout.entries[i].numel, 1e-3);
  }
  // The split a distillation step uses: the bottleneck, then the last layer alone.
  float *zn = malloc((size_t)m * 64 * sizeof(float)), *out2 = malloc((size_t)m * K * sizeof(float));
  dl_head_forward(&h, DL_HEAD_BOTTLENECK, x, m, zn, &ws);
  dl_head_ws ws2 = {0};
  dl_head_forward(&h, DL_HEAD_LAST_LAYER, zn, m, out2, &ws2);
  ref_compare(st, "head.output", out2, (size_t)m * K, 1e-4);
  double nrm = 0.0;
  for (int j = 0; j < 64; j++) nrm += (double)zn[j] * zn[j];
  CHECK(nrm > 0.999999 && nrm < 1.000001, "bottleneck rows have unit norm (row 0: %.7f)", nrm);
  free(zn); free(out2);
  dl_head_ws_free(&ws2);
  dl_head_ws_free(&ws);
  free(x); free(R); free(out); free(dx); free(grads);
  dl_head_free(&h);
}

// Sinkhorn-Knopp against the regenerated finite references (gen): the
// official file's own are NaN (float32 exp overflow on its logits).
static void check_targets(const dl_safetensors *st, const dl_safetensors *gen) {
  const int b = 16, K = 1000;
  float *logits = ref_read(st, "sk.teacher_logits", NULL), *scaled = ref_read(gen, "sk.scaled_logits", NULL);
  float *q = malloc((size_t)b * K * sizeof(float)), *scratch = malloc((size_t)(K + 1) * sizeof(float));
  dl_sinkhorn_knopp(q, scaled, b, K, 0.04f, 3, NULL, scratch);
  ref_compare(gen, "sk.t004.probs", q, (size_t)b * K, 1e-4);
  dl_sinkhorn_knopp(q, scaled, b, K, 0.07f, 3, NULL, scratch);
  ref_compare(gen, "sk.t007.probs", q, (size_t)b * K, 1e-4);
  // The official file's logits, where the official float32 code overflows
  // to NaN: ours stays finite and every sample's target sums to 1.
  dl_sinkhorn_knopp(q, logits, b, K, 0.04f, 3, NULL, scratch);
  int finite = 1;
  double worst = 0.0;
  for (int r = 0; r < b; r++) {
    double sum = 0.0;
    for (int j = 0; j < K; j++) {
      finite &= isfinite(q[(size_t)r * K + j]);
      sum += q[(size_t)r * K + j];
    }
    worst = fabs(sum - 1.0) > worst ? fabs(sum - 1.0) : worst;
  }
  CHECK(finite && worst < 1e-5, "Sinkhorn-Knopp on logits up to 11.5 at 0.04: finite, rows sum to 1 (|err| %.2g)", worst);
  free(scaled);
  float *center = ref_read(st, "softmax_center.center", NULL);
  dl_softmax_center(q, logits, center, b, K, 0.04f);
  ref_compare(st, "softmax_center.t004.probs", q, (size_t)b * K, 1e-4);
  dl_center_update(center, logits, b, K, 0.9f, NULL, scratch);
  ref_compare(st, "softmax_center.center_after_update", center, (size_t)K, 1e-4);
  free(center); free(q); free(scratch); free(logits);
}

// Two ranks holding the same rows: every cross-rank sum doubles, the
// maximum stays. Sinkhorn-Knopp must then equal one rank holding the rows
// twice, and the center update (a mean) must not change.
static void twin_ranks(float *data, size_t n, dl_reduce_op op, void *ctx) {
  (void)ctx;
  if (op == DL_REDUCE_SUM)
    for (size_t i = 0; i < n; i++) data[i] *= 2.0f;
}

static void check_reduction(const dl_safetensors *gen) {
  const int b = 16, K = 1000;
  float *logits = ref_read(gen, "sk.scaled_logits", NULL);
  float *twice = malloc((size_t)2 * b * K * sizeof(float)), *q2 = malloc((size_t)2 * b * K * sizeof(float));
  float *q = malloc((size_t)b * K * sizeof(float)), *scratch = malloc((size_t)(K + 1) * sizeof(float));
  memcpy(twice, logits, (size_t)b * K * sizeof(float));
  memcpy(twice + (size_t)b * K, logits, (size_t)b * K * sizeof(float));
  dl_reduce red = {twin_ranks, NULL};
  dl_sinkhorn_knopp(q, logits, b, K, 0.04f, 3, &red, scratch);
  dl_sinkhorn_knopp(q2, twice, 2 * b, K, 0.04f, 3, NULL, scratch);
  double e = dl_rel_err(q, q2, (size_t)b * K);
  CHECK(e < 1e-5, "Sinkhorn-Knopp through a 2-rank reduction equals one rank with the rows twice (%.2g)", e);
  float c1[1000] = {0}, c2[1000] = {0};
  dl_center_update(c1, logits, b, K, 0.9f, &red, scratch);
  dl_center_update(c2, logits, b, K, 0.9f, NULL, scratch);
  e = dl_rel_err(c1, c2, (size_t)K);
  CHECK(e < 1e-6, "center update through a 2-rank reduction: same mean (%.2g)", e);
  free(logits); free(twice); free(q2); free(q); free(scratch);
}

static float ref_scalar(const dl_safetensors *st, const char *name) {
  float *v = ref_read(st, name, NULL), r = v ? v[0] : 0.0f;
  free(v);
  return r;
}

// DINO and iBOT: the official file's student logits and masks with the
// regenerated (finite) teachers; KoLeo entirely from the official file.
static void check_losses(const dl_safetensors *st, const dl_safetensors *gen) {
  const int K = 1000;
  float *s = ref_read(st, "dino.student_logits", NULL), *t = ref_read(gen, "dino.teacher_probs", NULL);
  float *g = malloc((size_t)10 * 8 * K * sizeof(float));
  float loss = dl_dino_loss(s, t, 10, 2, 8, K, 0.1f, false, 1.0f, g);
  ref_compare(gen, "dino.loss", &loss, 1, 1e-4);
  ref_compare(gen, "dino.grad.student_logits", g, (size_t)80 * K, 1e-3);
  CHECK(dl_dino_pairs(10, 2, true) == 18 && dl_dino_pairs(2, 2, true) == 2,
        "DINOv2 pair counts: 10 student crops x 2 teacher crops without self pairs = %d", dl_dino_pairs(10, 2, true));
  free(s); free(t); free(g);

  size_t nm = 0;
  float *maskf = ref_read(st, "ibot.masks", &nm);
  bool masks[256];
  for (size_t i = 0; i < nm && i < 256; i++) masks[i] = maskf[i] != 0.0f;
  float w[256];
  const int m = dl_ibot_weights(w, masks, 16, 16);
  CHECK(m == 113 && nm == 256, "iBOT: %d masked patches in 16 crops", m);
  s = ref_read(st, "ibot.student_logits", NULL);
  t = ref_read(gen, "ibot.teacher_probs", NULL);
  g = malloc((size_t)m * K * sizeof(float));
  loss = dl_ibot_loss(s, t, w, m, K, 16, 0.1f, 1.0f, g);
  ref_compare(gen, "ibot.loss", &loss, 1, 1e-4);
  ref_compare(gen, "ibot.grad.student_logits", g, (size_t)m * K, 1e-3);
  free(s); free(t); free(g); free(maskf);

  float *x = ref_read(st, "koleo.input", NULL), *dx = malloc(8 * 128 * sizeof(float));
  float *scratch = malloc((8 * 128 + 16) * sizeof(float));
  int idx[8];
  loss = dl_koleo_loss(x, 8, 128, 1.0f, dx, scratch, idx);
  ref_compare(st, "koleo.loss", &loss, 1, 1e-4);
  ref_compare(st, "koleo.grad.input", dx, 8 * 128, 1e-3);
  CHECK(idx[2] == 3 && idx[3] == 2, "KoLeo: the near-duplicate rows 2 and 3 are each other's neighbours");
  printf("info reference losses: dino %.6f ibot %.6f koleo %.6f\n", ref_scalar(gen, "dino.loss"),
         ref_scalar(gen, "ibot.loss"), ref_scalar(st, "koleo.loss"));
  free(x); free(dx); free(scratch);
}

// Sinkhorn-Knopp's column sums run in row order whatever the thread count:
// 1, 2 and 3 threads give the same bits, on rows of 5000 prototypes (three
// column blocks) including a sample far below the others (its first row
// step recomputed from its logits).
static void check_thread_invariance(void) {
  const int b = 7, K = 5000;
  float *logits = malloc((size_t)b * K * sizeof(float)), *scratch = malloc((size_t)K * sizeof(float));
  float *q[3];
  uint64_t st = 11;
  for (size_t i = 0; i < (size_t)b * K; i++) logits[i] = dl_test_urand(&st) - 0.5f;
  for (int j = 0; j < K; j++) logits[(size_t)3 * K + j] -= 10.0f;  // 250 x temp below the rest
  const int saved = omp_get_max_threads();
  for (int t = 0; t < 3; t++) {
    q[t] = malloc((size_t)b * K * sizeof(float));
    omp_set_num_threads(t + 1);
    dl_sinkhorn_knopp(q[t], logits, b, K, 0.04f, 3, NULL, scratch);
  }
  omp_set_num_threads(saved);
  const bool same = !memcmp(q[0], q[1], (size_t)b * K * sizeof(float)) &&
                    !memcmp(q[0], q[2], (size_t)b * K * sizeof(float));
  CHECK(same, "Sinkhorn-Knopp on %d x %d: 1, 2 and 3 threads give identical targets", b, K);
  for (int t = 0; t < 3; t++) free(q[t]);
  free(logits); free(scratch);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s heads_losses.safetensors losses_finite.safetensors\n", argv[0]);
    return 2;
  }
  dl_safetensors st, gen;
  dl_err err;
  int rc = dl_st_open(argv[1], &st, &err);
  CHECK(rc == 0, "open %s%s%s", argv[1], rc ? ": " : "", rc ? err.msg : "");
  if (rc) return dl_test_summary("test_heads_losses");
  rc = dl_st_open(argv[2], &gen, &err);
  CHECK(rc == 0, "open %s%s%s", argv[2], rc ? ": " : "", rc ? err.msg : "");
  if (rc) return dl_test_summary("test_heads_losses");
  check_head(&st);
  check_targets(&st, &gen);
  check_losses(&st, &gen);
  check_reduction(&gen);
  check_thread_invariance();
  dl_st_close(&gen);
  dl_st_close(&st);
  return dl_test_summary("test_heads_losses");
}
