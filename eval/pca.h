// Principal components of patch features, for `distill pca`: the DINOv2
// paper's figure 1 (first three components as RGB, background removed by a
// threshold on the first). The math only; decoding, the backbone and the PNG
// are the command's (cli/cmd_pca.c).
#ifndef DISTILL_EVAL_PCA_H
#define DISTILL_EVAL_PCA_H

#include <stdint.h>

#include "common/err.h"

typedef struct dl_pca {
  int dim, k;
  double *mean;        // [dim]
  double *components;  // [k, dim]: unit rows, by decreasing variance
  double *variance;    // [k]: eigenvalues of the covariance (divided by n - 1)
} dl_pca;

// Fits the first k components of the rows x[i] (i < n, x is [n, dim]) whose
// keep[i] is nonzero (keep NULL: every row): the top eigenvectors of their
// covariance, by LAPACK's dsyevr. Each component's sign is fixed so that its
// largest-magnitude entry is positive (eigenvectors have no sign of their own;
// this makes the colours repeatable). Needs more than k kept rows.
int dl_pca_fit(const float *x, int n, int dim, const uint8_t *keep, int k, dl_pca *out, dl_err *err);
// Projections [n, k] of the rows x [n, dim] on the fitted components.
void dl_pca_project(const dl_pca *p, const float *x, int n, float *out);
void dl_pca_free(dl_pca *p);

// Foreground of `images` patch grids (gh x gw each) from their projections
// pc0 [images * gh * gw] on the first component fitted on all of them (so
// centred): as in the DINOv2 paper, the patches whose first component is
// positive are foreground, in units of its standard deviation, above
// `threshold` (0: the paper's). The component's sign is chosen so that the
// patches on the grids' border (mostly background in a photograph of an
// object) score below the average patch. Returns how many are foreground.
int dl_pca_foreground(const float *pc0, int images, int gh, int gw, double threshold, uint8_t *fg);

// RGB8 colours [n, 3] of projections proj [n, 3]: each component min-max
// scaled over the foreground rows to 0..255; background rows are black.
void dl_pca_colours(const float *proj, int n, const uint8_t *fg, uint8_t *rgb);

#endif
