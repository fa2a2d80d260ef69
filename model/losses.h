// The DINOv2 training losses with their gradients, and the teacher's targets
// (DINOv2 loss/dino_clstoken_loss.py, ibot_patch_loss.py, koleo_loss.py), plus
// the feature-mode losses. Every loss returns its value and writes the
// gradient of (scale * value) with respect to the student's input when the
// gradient pointer is not NULL. float32, as the official code.
#ifndef DISTILL_MODEL_LOSSES_H
#define DISTILL_MODEL_LOSSES_H

#include <stdbool.h>
#include <stddef.h>

// Sums (and one maximum) that span data-parallel ranks go through this
// callback: it replaces data[0..n) with the element-wise sum or maximum over
// ranks. fn NULL (or a NULL dl_reduce) means one rank: the identity.
typedef enum dl_reduce_op { DL_REDUCE_SUM, DL_REDUCE_MAX } dl_reduce_op;
typedef struct dl_reduce {
  void (*fn)(float *data, size_t n, dl_reduce_op op, void *ctx);
  void *ctx;
} dl_reduce;
void dl_reduce_all(const dl_reduce *r, float *data, size_t n, dl_reduce_op op);

// Weights of the terms of the training loss.
typedef struct dl_loss_weights {
  float dino;         // DINO cross-entropy on the CLS head outputs (1)
  float ibot;         // iBOT cross-entropy on the patch head outputs (1)
  float koleo;        // KoLeo on the backbone CLS of the global crops (0.1)
  float feat_cls;     // feature mode: 1 - cos on CLS (1)
  float feat_cos;     // feature mode: patch 1 - cos (0.9)
  float feat_l1;      // feature mode: patch smooth-L1 (0.1)
} dl_loss_weights;
dl_loss_weights dl_loss_weights_default(void);

// Sinkhorn-Knopp targets from teacher logits [b, k] at temperature temp:
// exp(logits / temp), normalized to total 1, then `iters` rounds of
// prototype (column) then sample (row) normalization; sums over samples and
// the sample count go through `red`. q [b, k]; scratch: k floats.
// Unlike the official code, the global maximum of logits / temp is
// subtracted before exp: the same result (the first normalization cancels
// any common factor) where the official code is finite, and finite where
// its float32 exp overflows (logits above 88 * temp, e.g. 3.5 at 0.04).
// A sample lying so far below the maximum (some 70 * temp) that its shifted
// exps underflow or turn subnormal has its first row step recomputed from its
// own logits (the shift cancels there), so it stays finite and equals the
// official result. Each row's division by its sum is applied lazily (as a
// factor the next pass uses), and the column sums are taken in row order in
// column blocks: three passes over q per round, and the same targets
// whatever the thread count.
void dl_sinkhorn_knopp(float *q, const float *logits, int b, int k, float temp, int iters,
                       const dl_reduce *red, float *scratch);
// softmax((logits - center) / temp) per row.
void dl_softmax_center(float *probs, const float *logits, const float *center, int b, int k, float temp);
// center = center * momentum + mean over all ranks' rows * (1 - momentum).
// scratch: k + 1 floats.
void dl_center_update(float *center, const float *logits, int b, int k, float momentum, const dl_reduce *red,
                      float *scratch);

// DINO cross-entropy: student [ns, b, k] logits, teacher [nt, b, k] targets.
// Sum over (student crop s, teacher crop t) pairs of the batch mean of
// -sum_k t log softmax(s / temp); with skip_same, pair (s, s) is left out for
// s < nt (the student's global crop s and the teacher's are the same view).
// The caller divides by dl_dino_pairs through `scale` to get DINOv2's mean.
float dl_dino_loss(const float *student, const float *teacher, int ns, int nt, int b, int k, float temp,
                   bool skip_same, float scale, float *d_student);
int dl_dino_pairs(int ns, int nt, bool skip_same);

// iBOT patch cross-entropy over m selected patches: student, teacher [m, k];
// weights [m] (1 / patches used in the patch's crop, dl_ibot_weights);
// value = -sum_i w_i sum_k t log softmax(s / temp) / n_crops.
float dl_ibot_loss(const float *student, const float *teacher, const float *weights, int m, int k, int n_crops,
                   float temp, float scale, float *d_student);
// Weights in mask order from masks [n_crops, p] (NULL: every patch used);
// returns the number of selected patches.
int dl_ibot_weights(float *weights, const bool *masks, int n_crops, int p);

// KoLeo on x [n, d]: rows L2-normalized (eps 1e-8), each row's nearest
// neighbour by the largest dot product, -mean log(||x_i - x_nn + 1e-8|| + 1e-8).
// scratch: n * d + 2 * n floats (and the index array idx [n]).
float dl_koleo_loss(const float *x, int n, int d, float scale, float *d_x, float *scratch, int *idx);

// Feature losses per token: mean over rows of 1 - cos(s, t) (eps 1e-8), and
// smooth-L1 (beta) averaged over all elements. Gradients go to s only.
float dl_cosine_loss(const float *s, const float *t, int rows, int d, float scale, float *d_s);
float dl_smooth_l1_loss(const float *s, const float *t, size_t n, float beta, float scale, float *d_s);

#endif
