#include "eval/pca.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// LAPACK's symmetric eigensolver, from OpenBLAS (which carries LAPACK); no
// LAPACKE header is needed for one call. Trailing: the lengths of the three
// character arguments, as gfortran passes them.
extern void dsyevr_(const char *jobz, const char *range, const char *uplo, const int *n, double *a,
                    const int *lda, const double *vl, const double *vu, const int *il, const int *iu,
                    const double *abstol, int *m, double *w, double *z, const int *ldz, int *isuppz,
                    double *work, const int *lwork, int *iwork, const int *liwork, int *info, size_t,
                    size_t, size_t);

void dl_pca_free(dl_pca *p) {
  free(p->mean);
  free(p->components);
  free(p->variance);
  memset(p, 0, sizeof *p);
}

// The k largest eigenpairs of the symmetric cov [d, d] (row-major; its lower
// triangle is destroyed), by decreasing eigenvalue.
static int top_eigen(double *cov, int d, int k, double *values, double *vectors, dl_err *err) {
  const int il = d - k + 1, iu = d;
  const double zero = 0, abstol = 0;
  int m = 0, info = 0, lwork = -1, liwork = -1, iwork_query = 0;
  double work_query = 0;
  double *w = dl_malloc((size_t)d * sizeof(double)), *z = dl_malloc((size_t)d * k * sizeof(double));
  int *isuppz = dl_malloc((size_t)2 * d * sizeof(int));
  // Row-major symmetric is column-major symmetric: "U" reads the lower triangle we filled.
  dsyevr_("V", "I", "U", &d, cov, &d, &zero, &zero, &il, &iu, &abstol, &m, w, z, &d, isuppz, &work_query,
          &lwork, &iwork_query, &liwork, &info, 1, 1, 1);
  lwork = (int)work_query;
  liwork = iwork_query;
  double *work = dl_malloc((size_t)lwork * sizeof(double));
  int *iwork = dl_malloc((size_t)liwork * sizeof(int));
  if (info == 0)
    dsyevr_("V", "I", "U", &d, cov, &d, &zero, &zero, &il, &iu, &abstol, &m, w, z, &d, isuppz, work, &lwork,
            iwork, &liwork, &info, 1, 1, 1);
  int rc = 0;
  if (info != 0 || m != k) {
    rc = dl_fail(err, "pca: the eigensolver failed (info %d, %d of %d eigenvalues)", info, m, k);
  } else {
    for (int j = 0; j < k; j++) {  // dsyevr returns ascending: reverse; z is column-major [d, k]
      values[j] = w[k - 1 - j];
      memcpy(vectors + (size_t)j * d, z + (size_t)(k - 1 - j) * d, (size_t)d * sizeof(double));
    }
  }
  free(w);
  free(z);
  free(isuppz);
  free(work);
  free(iwork);
  return rc;
}

int dl_pca_fit(const float *x, int n, int dim, const uint8_t *keep, int k, dl_pca *out, dl_err *err) {
  memset(out, 0, sizeof *out);
  int kept = 0;
  for (int i = 0; i < n; i++) kept += !keep || keep[i];
  if (k < 1 || k > dim) return dl_fail(err, "pca: %d components of %d-dimensional features", k, dim);
  if (kept <= k) return dl_fail(err, "pca: %d rows are too few for %d components", kept, k);
  // Centred kept rows in double, then their covariance by one syrk: the
  // features are float, but a sum over thousands of patches wants double.
  double *mean = dl_calloc((size_t)dim, sizeof(double));
  for (int i = 0; i < n; i++)
    if (!keep || keep[i])
      for (int j = 0; j < dim; j++) mean[j] += x[(size_t)i * dim + j];
  for (int j = 0; j < dim; j++) mean[j] /= kept;
  double *c = dl_malloc((size_t)kept * dim * sizeof(double));
  for (int i = 0, r = 0; i < n; i++)
    if (!keep || keep[i]) {
      for (int j = 0; j < dim; j++) c[(size_t)r * dim + j] = x[(size_t)i * dim + j] - mean[j];
      r++;
    }
  double *cov = dl_calloc((size_t)dim * dim, sizeof(double));
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, dim, kept, 1.0 / (kept - 1), c, dim, 0.0, cov, dim);
  free(c);
  out->dim = dim;
  out->k = k;
  out->mean = mean;
  out->variance = dl_malloc((size_t)k * sizeof(double));
  out->components = dl_malloc((size_t)k * dim * sizeof(double));
  int rc = top_eigen(cov, dim, k, out->variance, out->components, err);
  free(cov);
  if (rc) {
    dl_pca_free(out);
    return rc;
  }
  for (int j = 0; j < k; j++) {
    double *v = out->components + (size_t)j * dim;
    int big = 0;
    for (int t = 1; t < dim; t++)
      if (fabs(v[t]) > fabs(v[big])) big = t;
    if (v[big] < 0)
      for (int t = 0; t < dim; t++) v[t] = -v[t];
  }
  return 0;
}

void dl_pca_project(const dl_pca *p, const float *x, int n, float *out) {
  for (int i = 0; i < n; i++)
    for (int j = 0; j < p->k; j++) {
      const double *v = p->components + (size_t)j * p->dim;
      double s = 0;
      for (int t = 0; t < p->dim; t++) s += (x[(size_t)i * p->dim + t] - p->mean[t]) * v[t];
      out[(size_t)i * p->k + j] = (float)s;
    }
}

int dl_pca_foreground(const float *pc0, int images, int gh, int gw, double threshold, uint8_t *fg) {
  const int n = images * gh * gw;
  double all = 0, border = 0, squares = 0;
  int nborder = 0;
  for (int i = 0; i < n; i++) {
    int y = i / gw % gh, x = i % gw;
    all += pc0[i];
    squares += (double)pc0[i] * pc0[i];
    if (y == 0 || x == 0 || y == gh - 1 || x == gw - 1) border += pc0[i], nborder++;
  }
  // The sign: the border should sit low. When it sits high, flip the scale.
  const double sign = border / nborder > all / n ? -1 : 1;
  const double sd = n > 1 ? sqrt(squares / (n - 1)) : 0;
  int count = 0;
  for (int i = 0; i < n; i++) {
    fg[i] = sd > 0 && sign * pc0[i] / sd > threshold;
    count += fg[i];
  }
  return count;
}

void dl_pca_colours(const float *proj, int n, const uint8_t *fg, uint8_t *rgb) {
  float lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
  for (int i = 0; i < n; i++)
    if (fg[i])
      for (int c = 0; c < 3; c++) {
        if (proj[i * 3 + c] < lo[c]) lo[c] = proj[i * 3 + c];
        if (proj[i * 3 + c] > hi[c]) hi[c] = proj[i * 3 + c];
      }
  for (int i = 0; i < n; i++)
    for (int c = 0; c < 3; c++) {
      double s = fg[i] && hi[c] > lo[c] ? (proj[i * 3 + c] - lo[c]) / (hi[c] - lo[c]) : 0;
      rgb[i * 3 + c] = (uint8_t)lrint(255 * s);
    }
}
