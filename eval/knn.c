#include "eval/knn.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

#define KNN_MAX_K 100
#define KNN_CHUNK 256  // test rows per similarity block: 256 x train floats at a time

void dl_l2_normalize_rows(float *x, int n, int d) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; i++) {
    float *r = x + (size_t)i * d;
    double s = 0.0;
    for (int j = 0; j < d; j++) s += (double)r[j] * r[j];
    const float inv = s > 0.0 ? (float)(1.0 / sqrt(s)) : 0.0f;
    for (int j = 0; j < d; j++) r[j] *= inv;
  }
}

// The k largest of sims[0..n) in decreasing order (ties: the lower index
// first, as a stable sort would give), by insertion into a sorted list.
static int top_k(const float *sims, int n, int k, float *best, int *idx) {
  int m = 0;
  for (int j = 0; j < n; j++) {
    const float s = sims[j];
    if (m == k && s <= best[k - 1]) continue;
    int p = m < k ? m++ : k - 1;
    while (p > 0 && best[p - 1] < s) {
      best[p] = best[p - 1], idx[p] = idx[p - 1];
      p--;
    }
    best[p] = s, idx[p] = j;
  }
  return m;
}

static int vote(const float *best, const int *idx, int k, const int *labels, int classes, float temperature,
                double *votes) {
  memset(votes, 0, (size_t)classes * sizeof(double));
  for (int j = 0; j < k; j++) votes[labels[idx[j]]] += exp((double)best[j] / temperature);
  int arg = 0;
  for (int c = 1; c < classes; c++)
    if (votes[c] > votes[arg]) arg = c;
  return arg;
}

void dl_knn_eval(dl_eval_set *train, dl_eval_set *test, const int *ks, int nk, float temperature, double *top1,
                 int *predictions) {
  DL_ASSERT(train->dim == test->dim && train->n > 0);
  const int D = train->dim, N = train->n;
  int kmax = 0;
  for (int i = 0; i < nk; i++) kmax = ks[i] > kmax ? ks[i] : kmax;
  DL_ASSERT(kmax >= 1 && kmax <= KNN_MAX_K && kmax <= N && nk <= 16);
  const int classes = train->classes > test->classes ? train->classes : test->classes;
  dl_l2_normalize_rows(train->feats, N, D);
  dl_l2_normalize_rows(test->feats, test->n, D);
  long *correct = dl_calloc((size_t)nk, sizeof(long));
  float *sims = dl_malloc((size_t)KNN_CHUNK * N * sizeof(float));
  for (int t0 = 0; t0 < test->n; t0 += KNN_CHUNK) {
    const int m = test->n - t0 < KNN_CHUNK ? test->n - t0 : KNN_CHUNK;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, N, D, 1.0f, test->feats + (size_t)t0 * D, D,
                train->feats, D, 0.0f, sims, N);
#pragma omp parallel
    {
      float best[KNN_MAX_K];
      int idx[KNN_MAX_K];
      double *votes = dl_malloc((size_t)classes * sizeof(double));
      long local[16] = {0};
#pragma omp for schedule(static)
      for (int i = 0; i < m; i++) {
        top_k(sims + (size_t)i * N, N, kmax, best, idx);
        for (int q = 0; q < nk; q++) {
          const int pred = vote(best, idx, ks[q], train->labels, classes, temperature, votes);
          if (predictions) predictions[(size_t)q * test->n + t0 + i] = pred;
          local[q] += pred == test->labels[t0 + i];
        }
      }
#pragma omp critical
      for (int q = 0; q < nk; q++) correct[q] += local[q];
      free(votes);
    }
  }
  for (int q = 0; q < nk; q++) top1[q] = 100.0 * (double)correct[q] / test->n;
  free(sims);
  free(correct);
}
