// The DINO k-NN evaluation (dinov2/eval/knn.py): test and train features
// L2-normalized, cosine similarity, the k most similar training samples vote
// for their label with weight exp(similarity / T), T = 0.07; the class with
// the largest vote is the prediction.
#ifndef DISTILL_EVAL_KNN_H
#define DISTILL_EVAL_KNN_H

#include "eval/features.h"

#define DL_KNN_TEMPERATURE 0.07f

// Top-1 accuracy in percent for each of nk values of k (each at most
// min(100, train->n)), test set against train set. Normalizes both sets'
// features in place. predictions: NULL, or [nk][test->n] predicted labels.
void dl_knn_eval(dl_eval_set *train, dl_eval_set *test, const int *ks, int nk, float temperature, double *top1,
                 int *predictions);

// Rows scaled to unit L2 norm (a zero row stays zero).
void dl_l2_normalize_rows(float *x, int n, int d);

#endif
