#include "model/losses.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "model/cpu/fast_math.h"

void dl_reduce_all(const dl_reduce *r, float *data, size_t n, dl_reduce_op op) {
  if (r && r->fn) r->fn(data, n, op, r->ctx);
}

dl_loss_weights dl_loss_weights_default(void) {
  return (dl_loss_weights){.dino = 1.0f, .ibot = 1.0f, .koleo = 0.1f, .feat_cls = 1.0f, .feat_cos = 0.9f,
                           .feat_l1 = 0.1f};
}

// The column passes split the columns into blocks that the threads share out;
// each block walks every row, so a column's sum is taken in row order
// whatever the thread count (the same targets on 1 or 16 threads).
#define COL_BLOCK 2048

// out[j] = sum over rows of x[r, j] (times scale[r] when scale is set).
static void column_sums(float *out, const float *x, const float *scale, int rows, int cols) {
  const int nblk = (cols + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static)
  for (int bi = 0; bi < nblk; bi++) {
    const int j0 = bi * COL_BLOCK, j1 = j0 + COL_BLOCK < cols ? j0 + COL_BLOCK : cols;
    for (int j = j0; j < j1; j++) out[j] = 0.0f;
    for (int r = 0; r < rows; r++) {
      const float *xr = x + (size_t)r * cols, f = scale ? scale[r] : 1.0f;
#pragma omp simd
      for (int j = j0; j < j1; j++) out[j] += xr[j] * f;
    }
  }
}

// Below this a row's largest value, its entries within 2^-24 of it are
// subnormal: they have lost bits (and all are 0 a little lower).
#define SK_ROW_FLOOR 0x1p-102f

// The row step for a sample whose shifted exps underflowed, wholly or so far
// that its entries lost precision (its largest below SK_ROW_FLOOR; only the
// first step can see such a row, later ones hold 1 / B per row): q[r, j] is the sample's
// own exp(logits / temp) times a common factor f_r that underflowed, so
//   q[r, j] / cols[j] / K / (sum_j' q[r, j'] / cols[j'] / K) / B
//     = (e_j / cols[j]) / (sum_j' e_j' / cols[j']) / B,  e_j = exp(x_j - max_j' x_j'),
// with f_r and K cancelled: the official (unshifted) code's value. The row's
// own share of cols[j] is below float32 resolution there, as it is in the
// official code. In double, where 1 / cols[j] cannot overflow; a prototype
// whose column sum is 0 keeps 0, as in the ordinary step.
static void sk_underflowed_row(float *qr, const float *lr, const float *cols, int k, float temp, float B) {
  float mx = lr[0] / temp;
  for (int j = 1; j < k; j++) mx = lr[j] / temp > mx ? lr[j] / temp : mx;
  double s = 0.0;
  for (int j = 0; j < k; j++) s += cols[j] > 0.0f ? exp((double)(lr[j] / temp) - mx) / cols[j] : 0.0;
  for (int j = 0; j < k; j++) {
    const double w = cols[j] > 0.0f ? exp((double)(lr[j] / temp) - mx) / cols[j] : 0.0;
    // No prototype left (every column holding this sample's mass is 0): uniform.
    qr[j] = s > 0.0 ? (float)(w / s / B) : 1.0f / (float)k / B;
  }
}

// q = exp(logits / temp - mx) and cols[j] = the sum of column j, in one
// column-blocked pass (q may be logits).
static void sk_exp_pass(float *q, const float *logits, int b, int k, float temp, float mx, float *cols) {
  const int nblk = (k + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static)
  for (int bi = 0; bi < nblk; bi++) {
    const int j0 = bi * COL_BLOCK, j1 = j0 + COL_BLOCK < k ? j0 + COL_BLOCK : k;
    for (int j = j0; j < j1; j++) cols[j] = 0.0f;
    for (int r = 0; r < b; r++) {
      const float *lr = logits + (size_t)r * k;
      float *qr = q + (size_t)r * k;
#pragma omp simd
      for (int j = j0; j < j1; j++) {
        qr[j] = dl_fast_expf_subnormal(lr[j] / temp - mx);
        cols[j] += qr[j];
      }
    }
  }
}

// One sample's step. The row's values are its stored ones times `scale`
// (the previous step's normalization, applied lazily: one pass over the
// 65536-wide rows fewer per step). They are divided by each prototype's
// column sum and by K and stored; the return value is the new scale, 1 / (s B)
// for the row's sum s, so that the row holds 1 / B in all. With `last`, the
// final targets (times B: 1 per row) are stored instead and 1 is returned.
// Every loop is a SIMD loop; a prototype whose every exp underflowed keeps 0
// through a selected denominator of 1, not a branch.
static float sk_row_step(float *qr, const float *lr, const float *cols, int k, float temp, float B, float scale,
                         bool last) {
  float row_max = 0.0f, s = 0.0f;
#pragma omp simd reduction(max : row_max) reduction(+ : s)
  for (int j = 0; j < k; j++) {
    const float x = qr[j] * scale, c = cols[j] > 0.0f ? cols[j] : 1.0f;
    row_max = x > row_max ? x : row_max;
    qr[j] = cols[j] > 0.0f ? x / c / (float)k : 0.0f;
    s += qr[j];
  }
  // A sample some 70 * temp or more below the group's maximum.
  if (row_max < SK_ROW_FLOOR || s < FLT_MIN) {
    sk_underflowed_row(qr, lr, cols, k, temp, B);
    if (!last) return 1.0f;
#pragma omp simd
    for (int j = 0; j < k; j++) qr[j] *= B;
    return 1.0f;
  }
  if (!last) return 1.0f / s / B;
#pragma omp simd
  for (int j = 0; j < k; j++) qr[j] = qr[j] / s;  // (q / s / B) * B; the row is still in cache
  return 1.0f;
}

void dl_sinkhorn_knopp(float *q, const float *logits, int b, int k, float temp, int iters,
                       const dl_reduce *red, float *scratch) {
  const size_t n = (size_t)b * k;
  float mx = logits[0] / temp;
#pragma omp parallel for simd reduction(max : mx) schedule(static)
  for (size_t i = 1; i < n; i++) mx = logits[i] / temp > mx ? logits[i] / temp : mx;
  dl_reduce_all(red, &mx, 1, DL_REDUCE_MAX);
  float *cols = scratch, *scale = dl_aligned_alloc((size_t)(b ? b : 1) * sizeof(float));
  sk_exp_pass(q, logits, b, k, temp, mx, cols);
  double total = 0.0;
  for (int j = 0; j < k; j++) total += cols[j];
  float counts[2] = {(float)total, (float)b};
  dl_reduce_all(red, counts, 2, DL_REDUCE_SUM);
  const float sum_q = counts[0], B = counts[1];
  // Normalized to total 1 lazily: every row's scale, and the column sums.
  for (int r = 0; r < b; r++) scale[r] = 1.0f / sum_q;
  for (int j = 0; j < k; j++) cols[j] /= sum_q;
  for (int it = 0; it < iters; it++) {
    // Per prototype: the sum over every rank's samples.
    if (it > 0) column_sums(cols, q, scale, b, k);
    dl_reduce_all(red, cols, (size_t)k, DL_REDUCE_SUM);
    const bool last = it + 1 == iters;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < b; r++)
      scale[r] = sk_row_step(q + (size_t)r * k, logits + (size_t)r * k, cols, k, temp, B, scale[r], last);
  }
  if (iters == 0) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < b; r++) {
      float *qr = q + (size_t)r * k;
      for (int j = 0; j < k; j++) qr[j] = qr[j] * scale[r] * B;
    }
  }
  free(scale);
}

static void softmax_row(float *out, const float *in, int k, float inv_t) {
  float mx = in[0] * inv_t, sum = 0.0f;
  for (int j = 1; j < k; j++) mx = in[j] * inv_t > mx ? in[j] * inv_t : mx;
#pragma omp simd reduction(+ : sum)
  for (int j = 0; j < k; j++) {
    out[j] = dl_fast_expf(in[j] * inv_t - mx);
    sum += out[j];
  }
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int j = 0; j < k; j++) out[j] *= inv;
}

void dl_softmax_center(float *probs, const float *logits, const float *center, int b, int k, float temp) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < b; r++) {
    float *pr = probs + (size_t)r * k;
    const float *lr = logits + (size_t)r * k;
    for (int j = 0; j < k; j++) pr[j] = (lr[j] - center[j]) / temp;
    softmax_row(pr, pr, k, 1.0f);
  }
}

void dl_center_update(float *center, const float *logits, int b, int k, float momentum, const dl_reduce *red,
                      float *scratch) {
  column_sums(scratch, logits, NULL, b, k);
  scratch[k] = (float)b;
  dl_reduce_all(red, scratch, (size_t)k + 1, DL_REDUCE_SUM);
  for (int j = 0; j < k; j++) center[j] = center[j] * momentum + scratch[j] / scratch[k] * (1.0f - momentum);
}

// log sum_j exp(s_j / T), stable (the row maximum first).
static float log_sum_exp(const float *s, int k, float inv_t) {
  float mx = s[0] * inv_t, sum = 0.0f;
#pragma omp simd reduction(max : mx)
  for (int j = 1; j < k; j++) mx = s[j] * inv_t > mx ? s[j] * inv_t : mx;
#pragma omp simd reduction(+ : sum)
  for (int j = 0; j < k; j++) sum += dl_fast_expf(s[j] * inv_t - mx);
  return mx + logf(sum);
}

int dl_dino_pairs(int ns, int nt, bool skip_same) {
  int pairs = ns * nt;
  if (skip_same) pairs -= ns < nt ? ns : nt;
  return pairs;
}

float dl_dino_loss(const float *student, const float *teacher, int ns, int nt, int b, int k, float temp,
                   bool skip_same, float scale, float *d_student) {
  const float inv_t = 1.0f / temp;
  double total = 0.0;
  // One task per (student crop, sample) row: the row's softmax is shared by
  // its pairs, and the row's gradient is owned by the task.
#pragma omp parallel for reduction(+ : total) schedule(static)
  for (int row = 0; row < ns * b; row++) {
    const int s = row / b, i = row % b;
    const float *sr = student + (size_t)row * k;
    float *g = d_student ? d_student + (size_t)row * k : NULL;
    // The loss needs log-sum-exp and a dot product per pair; the gradient
    // row first collects -sum_t t, then gets the softmax term.
    const float lse = log_sum_exp(sr, k, inv_t);
    if (g)
      for (int j = 0; j < k; j++) g[j] = 0.0f;
    float tsum_all = 0.0f;
    for (int t = 0; t < nt; t++) {
      if (skip_same && s == t) continue;
      const float *tr = teacher + ((size_t)t * b + i) * k;
      float dot = 0.0f, tsum = 0.0f;
#pragma omp simd reduction(+ : dot, tsum)
      for (int j = 0; j < k; j++) {
        dot += tr[j] * (sr[j] * inv_t - lse);
        tsum += tr[j];
      }
      total -= (double)dot / b;
      tsum_all += tsum;
      if (g)
#pragma omp simd
        for (int j = 0; j < k; j++) g[j] -= tr[j];
    }
    if (g) {
      // d/ds of -sum_t t . log_softmax(s / T) = (softmax * sum(t) - t) / T.
      const float c = scale * inv_t / (float)b;
#pragma omp simd
      for (int j = 0; j < k; j++) {
        const float p = dl_fast_expf(sr[j] * inv_t - lse);
        g[j] = c * (p * tsum_all + g[j]);
      }
    }
  }
  return (float)total * scale;
}

int dl_ibot_weights(float *weights, const bool *masks, int n_crops, int p) {
  int m = 0;
  for (int c = 0; c < n_crops; c++) {
    int used = 0;
    for (int j = 0; j < p; j++) used += masks ? masks[(size_t)c * p + j] : 1;
    const float w = 1.0f / (float)(used > 1 ? used : 1);
    for (int j = 0; j < p; j++)
      if (!masks || masks[(size_t)c * p + j]) weights[m++] = w;
  }
  return m;
}

float dl_ibot_loss(const float *student, const float *teacher, const float *weights, int m, int k, int n_crops,
                   float temp, float scale, float *d_student) {
  const float inv_t = 1.0f / temp;
  double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static)
  for (int r = 0; r < m; r++) {
    const float *sr = student + (size_t)r * k, *tr = teacher + (size_t)r * k;
    const float lse = log_sum_exp(sr, k, inv_t);
    float dot = 0.0f, tsum = 0.0f;
#pragma omp simd reduction(+ : dot, tsum)
    for (int j = 0; j < k; j++) {
      dot += tr[j] * (sr[j] * inv_t - lse);
      tsum += tr[j];
    }
    total -= (double)weights[r] * dot;
    if (d_student) {
      float *g = d_student + (size_t)r * k;
      const float c = scale * weights[r] * inv_t / (float)n_crops;
#pragma omp simd
      for (int j = 0; j < k; j++) g[j] = c * (dl_fast_expf(sr[j] * inv_t - lse) * tsum - tr[j]);
    }
  }
  return (float)(total / n_crops) * scale;
}

float dl_koleo_loss(const float *x, int n, int d, float scale, float *d_x, float *scratch, int *idx) {
  const float eps = 1e-8f;
  float *y = scratch, *norms = scratch + (size_t)n * d, *dist = norms + n;
  for (int i = 0; i < n; i++) {
    float ss = 0.0f;
    for (int j = 0; j < d; j++) ss += x[(size_t)i * d + j] * x[(size_t)i * d + j];
    norms[i] = sqrtf(ss);
    const float den = norms[i] > eps ? norms[i] : eps;
    for (int j = 0; j < d; j++) y[(size_t)i * d + j] = x[(size_t)i * d + j] / den;
  }
  // Nearest neighbour: the largest dot product, the diagonal excluded (first
  // index on ties, as torch.max on the CPU).
  double total = 0.0;
  for (int i = 0; i < n; i++) {
    int best = -1;
    float best_dot = 0.0f;
    for (int k = 0; k < n; k++) {
      float dot = 0.0f;
      for (int j = 0; j < d; j++) dot += y[(size_t)i * d + j] * y[(size_t)k * d + j];
      if (k == i) dot = -1.0f;
      if (best < 0 || dot > best_dot) best = k, best_dot = dot;
    }
    idx[i] = best;
    float ss = 0.0f;
    for (int j = 0; j < d; j++) {
      const float diff = y[(size_t)i * d + j] - y[(size_t)best * d + j] + eps;
      ss += diff * diff;
    }
    dist[i] = sqrtf(ss);
    total -= log((double)dist[i] + eps);
  }
  if (d_x) {
    // dL/dy: each pair (i, nn(i)) pulls on both rows; then through the
    // normalization dx = (dy - y (y . dy)) / ||x||.
    float *dy = d_x;
    memset(dy, 0, (size_t)n * d * sizeof(float));
    for (int i = 0; i < n; i++) {
      if (dist[i] == 0.0f) continue;
      const float c = -scale / ((float)n * (dist[i] + eps) * dist[i]);
      for (int j = 0; j < d; j++) {
        const float diff = y[(size_t)i * d + j] - y[(size_t)idx[i] * d + j] + eps;
        dy[(size_t)i * d + j] += c * diff;
        dy[(size_t)idx[i] * d + j] -= c * diff;
      }
    }
    for (int i = 0; i < n; i++) {
      float *g = dy + (size_t)i * d;
      const float *yi = y + (size_t)i * d;
      if (norms[i] <= eps) {
        for (int j = 0; j < d; j++) g[j] /= eps;
        continue;
      }
      float dot = 0.0f;
      for (int j = 0; j < d; j++) dot += yi[j] * g[j];
      for (int j = 0; j < d; j++) g[j] = (g[j] - yi[j] * dot) / norms[i];
    }
  }
  return (float)(total / n) * scale;
}

float dl_cosine_loss(const float *s, const float *t, int rows, int d, float scale, float *d_s) {
  const double eps = 1e-8;
  double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static)
  for (int r = 0; r < rows; r++) {
    const float *a = s + (size_t)r * d, *b = t + (size_t)r * d;
    double w12 = 0.0, w1 = 0.0, w2 = 0.0;
    for (int j = 0; j < d; j++) {
      w12 += (double)a[j] * b[j];
      w1 += (double)a[j] * a[j];
      w2 += (double)b[j] * b[j];
    }
    const double prod = w1 * w2, n12 = sqrt(prod > eps * eps ? prod : eps * eps), cos = w12 / n12;
    total += 1.0 - cos;
    if (d_s) {
      // d(1 - cos)/da = -(b / n12 - cos a / w1) (unclamped), -b / n12 (clamped).
      const double c = scale / (double)rows;
      const double ca = prod > eps * eps ? cos / w1 : 0.0;
      for (int j = 0; j < d; j++) d_s[(size_t)r * d + j] = (float)(-c * (b[j] / n12 - ca * a[j]));
    }
  }
  return (float)(total / rows) * scale;
}

float dl_smooth_l1_loss(const float *s, const float *t, size_t n, float beta, float scale, float *d_s) {
  double total = 0.0;
  const double c = scale / (double)n;
#pragma omp parallel for reduction(+ : total) schedule(static)
  for (size_t i = 0; i < n; i++) {
    const double diff = (double)s[i] - t[i], ad = fabs(diff);
    total += ad < beta ? 0.5 * diff * diff / beta : ad - 0.5 * beta;
    if (d_s) d_s[i] = (float)(c * (ad < beta ? diff / beta : (diff > 0 ? 1.0 : -1.0)));
  }
  return (float)(total / n) * scale;
}
