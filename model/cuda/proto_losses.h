// The prototype losses over chunks of rows (issue 15, point 3): the
// teacher's targets are never written out. They stay as the teacher's one
// copy of logits l [rows, k] (dtype) plus a row and a column offset, in the
// log domain:
//   target[r, j] = exp(l[r, j] / temp + row_off[r] + col_off[j]),
// which holds Sinkhorn-Knopp's iterates exactly (each iteration scales the
// columns, then the rows) and centering's softmax((l - center) / temp)
// (col_off = -center / temp, row_off = -logsumexp). Each iteration reads
// the logits twice and writes only k + rows floats, where the in-place
// algorithm reads and writes the [rows, k] matrix (review item 11).
// The cross-entropy builds each target on the fly while it reads a chunk of
// the student's logits, and writes the gradient over those logits.
#ifndef DISTILL_MODEL_CUDA_PROTO_LOSSES_H
#define DISTILL_MODEL_CUDA_PROTO_LOSSES_H

#include "model/cuda/cuda_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

// At most this many teacher crops per student row (the DINO pairs).
#define DL_PROTO_MAX_TEACHER_CROPS 4

typedef struct dl_cuda_targets {
  const void *logits;  // [rows, k] in dtype: the teacher's last layer on its bottlenecks
  dl_dtype dtype;
  float *row_off;      // [rows]
  float *col_off;      // [k]
  int rows, k;
  float inv_t;         // 1 / the teacher's temperature
} dl_cuda_targets;

// Sinkhorn-Knopp as dl_sinkhorn_knopp (global maximum, sums over every
// rank through red), into tg's offsets. scratch: k + 4 floats. A sample
// whose exps underflowed needs no special case: its row offset is its own
// logsumexp, the value the CPU's sk_underflowed_row computes.
void dl_cuda_targets_sinkhorn(const dl_cuda_targets *tg, int iters, const dl_cuda_reduce *red, float *scratch,
                              cudaStream_t s);
// Centering as dl_softmax_center with the current center, then
// dl_center_update (the mean of every rank's logits). scratch: k + 1 floats.
void dl_cuda_targets_center(const dl_cuda_targets *tg, float *center, float momentum, const dl_cuda_reduce *red,
                            float *scratch, cudaStream_t s);

// sums[j] = sum over rows of x[r, j] (float32, row-major): blocks over tiles
// of rows, added with atomics (what centering uses).
void dl_cuda_column_sums(float *sums, const float *x, int rows, int k, cudaStream_t s);

// The cross-entropy of student rows [row0, row0 + n) against the targets,
// fused with its gradient: `logits` holds those n rows of the student's
// logits (dtype, [n, k]) and is overwritten with
//   d = grad_scale * w_r / temp * (softmax(s / temp) * sum(t) - t),
// summed over the row's targets. Each row of logits and targets is read twice.
//   DINO (dino != 0): student row r is crop r / batch, image r % batch; its
//     targets are teacher rows ti * batch + r % batch for every ti < nt but
//     its own crop; loss_rows[pair * batch + image] = -dot * loss_scale, pairs
//     ordered as dl_cuda_dino_loss.
//   Rows (dino == 0): target row r; loss_rows[r] = -w_r * dot * loss_scale.
// weights: per student row (may be NULL: 1).
typedef struct dl_cuda_ce_chunk {
  float *loss_rows;
  const float *weights;
  int dino, nt, batch;
  float inv_temp, loss_scale, grad_scale;
} dl_cuda_ce_chunk;
void dl_cuda_cross_entropy_chunk(const dl_cuda_ce_chunk *c, void *logits, const dl_cuda_targets *tg, int row0,
                                 int n, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
