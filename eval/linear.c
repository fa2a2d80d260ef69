#include "eval/linear.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "data/rng.h"

dl_linear_config dl_linear_config_default(void) {
  return (dl_linear_config){.epochs = 20, .batch = 256, .lr = 0.1f, .weight_decay = 0.0f, .seed = 0};
}

// Standardizing with the training statistics makes one learning rate fit
// every backbone (a LayerNorm output's scale differs per dimension).
static void standardize(dl_eval_set *train, dl_eval_set *test) {
  const int D = train->dim;
  double *mean = dl_calloc((size_t)D, sizeof(double)), *var = dl_calloc((size_t)D, sizeof(double));
  for (int i = 0; i < train->n; i++)
    for (int j = 0; j < D; j++) mean[j] += train->feats[(size_t)i * D + j];
  for (int j = 0; j < D; j++) mean[j] /= train->n;
  for (int i = 0; i < train->n; i++)
    for (int j = 0; j < D; j++) {
      const double d = train->feats[(size_t)i * D + j] - mean[j];
      var[j] += d * d;
    }
  dl_eval_set *sets[2] = {train, test};
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < sets[s]->n; i++)
      for (int j = 0; j < D; j++) {
        float *x = &sets[s]->feats[(size_t)i * D + j];
        *x = (float)((*x - mean[j]) / sqrt(var[j] / train->n + 1e-6));
      }
  free(mean);
  free(var);
}

// Softmax cross-entropy of logits [m, C] in place: logits become the gradient
// (softmax - onehot) / m; returns the mean loss.
static double softmax_xent(float *logits, const int *labels, int m, int C) {
  double loss = 0.0;
  for (int i = 0; i < m; i++) {
    float *z = logits + (size_t)i * C, mx = z[0];
    for (int c = 1; c < C; c++) mx = z[c] > mx ? z[c] : mx;
    double s = 0.0;
    for (int c = 0; c < C; c++) s += exp((double)(z[c] - mx));
    loss += log(s) - (z[labels[i]] - mx);
    for (int c = 0; c < C; c++) z[c] = (float)(exp((double)(z[c] - mx)) / s / m);
    z[labels[i]] -= 1.0f / m;
  }
  return loss / m;
}

static int argmax(const float *z, int C) {
  int a = 0;
  for (int c = 1; c < C; c++)
    if (z[c] > z[a]) a = c;
  return a;
}

double dl_linear_probe(dl_eval_set *train, dl_eval_set *test, const dl_linear_config *cfg, double *train_loss) {
  DL_ASSERT(train->dim == test->dim && train->n > 0 && cfg->batch > 0);
  standardize(train, test);
  const int D = train->dim, C = train->classes > test->classes ? train->classes : test->classes, B = cfg->batch;
  float *W = dl_calloc((size_t)C * D + C, sizeof(float)), *bias = W + (size_t)C * D;  // zero init: convex problem
  float *gW = dl_calloc((size_t)C * D + C, sizeof(float)), *mom = dl_calloc((size_t)C * D + C, sizeof(float));
  float *xb = dl_malloc((size_t)B * D * sizeof(float)), *logits = dl_malloc((size_t)B * C * sizeof(float));
  int *yb = dl_malloc((size_t)B * sizeof(int)), *order = dl_malloc((size_t)train->n * sizeof(int));
  for (int i = 0; i < train->n; i++) order[i] = i;
  const long steps_per_epoch = (train->n + B - 1) / B, total = steps_per_epoch * cfg->epochs;
  dl_rng r = dl_rng_make(dl_mix64(cfg->seed + 0x11e4ull));
  double last_loss = 0.0;
  long step = 0;
  for (int e = 0; e < cfg->epochs; e++) {
    for (int i = train->n - 1; i > 0; i--) {
      int j = (int)dl_rng_below(&r, i + 1), t = order[i];
      order[i] = order[j], order[j] = t;
    }
    double epoch_loss = 0.0;
    for (int s = 0; s < train->n; s += B, step++) {
      const int m = train->n - s < B ? train->n - s : B;
      for (int i = 0; i < m; i++) {
        memcpy(xb + (size_t)i * D, train->feats + (size_t)order[s + i] * D, (size_t)D * sizeof(float));
        yb[i] = train->labels[order[s + i]];
      }
      for (int i = 0; i < m; i++) memcpy(logits + (size_t)i * C, bias, (size_t)C * sizeof(float));
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, C, D, 1.0f, xb, D, W, D, 1.0f, logits, C);
      epoch_loss += softmax_xent(logits, yb, m, C) * m;
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, D, m, 1.0f, logits, C, xb, D, 0.0f, gW, D);
      for (int c = 0; c < C; c++) {
        float g = 0.0f;
        for (int i = 0; i < m; i++) g += logits[(size_t)i * C + c];
        gW[(size_t)C * D + c] = g;
      }
      const float lr = (float)(0.5 * cfg->lr * (1.0 + cos(M_PI * (double)step / (double)total)));
      for (size_t k = 0; k < (size_t)C * D + C; k++) {
        const float g = gW[k] + (k < (size_t)C * D ? cfg->weight_decay * W[k] : 0.0f);
        mom[k] = 0.9f * mom[k] + g;
        W[k] -= lr * mom[k];
      }
    }
    last_loss = epoch_loss / train->n;
  }
  long correct = 0;
  for (int i = 0; i < test->n; i++) {
    float *z = logits;
    memcpy(z, bias, (size_t)C * sizeof(float));
    cblas_sgemv(CblasRowMajor, CblasNoTrans, C, D, 1.0f, W, D, test->feats + (size_t)i * D, 1, 1.0f, z, 1);
    correct += argmax(z, C) == test->labels[i];
  }
  if (train_loss) *train_loss = last_loss;
  free(W), free(gW), free(mom), free(xb), free(logits), free(yb), free(order);
  return 100.0 * (double)correct / test->n;
}
