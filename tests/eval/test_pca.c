// `distill pca`: the PCA math against a matrix whose eigenvectors are known,
// the foreground and colour rules on small grids, and the command end to end
// on the demo teacher and generated images (a bright object on a dark ground).
// Usage: test_pca DISTILL_BINARY WEIGHTS SCRATCH_DIR
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "data/png_write.h"
#include "eval/pca.h"
#include "tests/harness.h"

enum { kDim = 6 };

// Rows +-s_i q_i (+ an offset), q_i the columns of a Householder reflection:
// their covariance has eigenvectors q_i and eigenvalues 2 s_i^2 / (n - 1).
static void known_matrix(void) {
  const double s[kDim] = {5, 4, 3, 2, 1, 0.5}, u[kDim] = {1, -2, 0.5, 3, -1, 2};
  double uu = 0, q[kDim][kDim];
  for (int i = 0; i < kDim; i++) uu += u[i] * u[i];
  for (int i = 0; i < kDim; i++)
    for (int j = 0; j < kDim; j++) q[i][j] = (i == j) - 2 * u[i] * u[j] / uu;  // column j: q[.][j]
  // 12 rows that count, then 3 far-off rows that keep[] leaves out.
  enum { kRows = 2 * kDim, kAll = kRows + 3 };
  float x[kAll * kDim];
  uint8_t keep[kAll];
  for (int r = 0; r < kRows; r++) {
    int i = r / 2, sign = r % 2 ? -1 : 1;
    for (int t = 0; t < kDim; t++) x[r * kDim + t] = (float)(7.0 + sign * s[i] * q[t][i]);
    keep[r] = 1;
  }
  for (int r = kRows; r < kAll; r++) {
    for (int t = 0; t < kDim; t++) x[r * kDim + t] = (float)(100 * (r + t));
    keep[r] = 0;
  }
  dl_pca p;
  dl_err err;
  int rc = dl_pca_fit(x, kAll, kDim, keep, 3, &p, &err);
  CHECK(rc == 0, "fit of 3 components on a %d x %d matrix with %d rows left out", kRows, kDim, kAll - kRows);
  if (rc) return;
  for (int j = 0; j < 3; j++) {
    double want = 2 * s[j] * s[j] / (kRows - 1), dot = 0;
    for (int t = 0; t < kDim; t++) dot += p.components[j * kDim + t] * q[t][j];
    CHECK(fabs(p.variance[j] - want) < 1e-4 * want, "component %d: variance %.6f, known %.6f", j, p.variance[j], want);
    CHECK(fabs(fabs(dot) - 1) < 1e-5, "component %d: |<v, q>| = %.7f (known eigenvector: 1)", j, fabs(dot));
  }
  CHECK(fabs(p.mean[0] - 7) < 1e-5, "mean of the kept rows %.6f (7)", p.mean[0]);
  float proj[3];
  dl_pca_project(&p, x, 1, proj);  // row 0 = mean + s_0 q_0: projects to +-s_0 on the first
  CHECK(fabs(fabs(proj[0]) - s[0]) < 1e-4 && fabs(proj[1]) < 1e-4, "projection of row 0: %.5f %.5f (+-5, 0)",
        proj[0], proj[1]);
  dl_pca_free(&p);
  CHECK(dl_pca_fit(x, 3, kDim, NULL, 3, &p, &err) != 0, "3 rows for 3 components refused: %s", err.msg);
}

// A 4 x 4 grid whose centre is high: foreground whichever sign pc0 has.
static void foreground_and_colours(void) {
  float pc0[16];
  for (int i = 0; i < 16; i++) pc0[i] = (i / 4 % 3 && i % 4 % 3) ? 3.0f : -1.0f;  // centre 2 x 2
  uint8_t fg[16], fg_flipped[16];
  int n = dl_pca_foreground(pc0, 1, 4, 4, 0.5, fg);
  for (int i = 0; i < 16; i++) pc0[i] = -pc0[i];
  int m = dl_pca_foreground(pc0, 1, 4, 4, 0.5, fg_flipped);
  CHECK(n == 4 && fg[5] && fg[6] && fg[9] && fg[10], "centre 2 x 2 of a 4 x 4 grid is foreground (%d patches)", n);
  CHECK(m == 4 && memcmp(fg, fg_flipped, 16) == 0, "the same with the first component's sign flipped (%d)", m);
  float proj[4 * 3] = {1, 5, -2, 3, 5, 0, 2, 5, 9, 100, 100, 100};
  const uint8_t keep[4] = {1, 1, 1, 0};
  uint8_t rgb[12];
  dl_pca_colours(proj, 4, keep, rgb);
  CHECK(rgb[0] == 0 && rgb[3] == 255 && rgb[6] == 128, "red: min-max over the foreground (%d %d %d)", rgb[0], rgb[3],
        rgb[6]);
  CHECK(rgb[1] == 0 && rgb[2] == 0 && rgb[8] == 255, "constant green is 0, blue spans 0..255 (%d %d)", rgb[1], rgb[8]);
  CHECK(rgb[9] == 0 && rgb[10] == 0 && rgb[11] == 0, "background is black (%d %d %d)", rgb[9], rgb[10], rgb[11]);
}

// A 224 x 224 dark image with a bright square at patch columns x0..x0+7 and
// rows 4..11 (14-pixel patches).
static int write_object(const char *path, int x0) {
  dl_image img;
  dl_image_alloc(&img, 224, 224);
  for (int y = 0; y < 224; y++)
    for (int x = 0; x < 224; x++) {
      int inside = y >= 56 && y < 168 && x >= 14 * x0 && x < 14 * (x0 + 8);
      uint8_t *p = img.rgb + ((size_t)y * 224 + x) * 3;
      p[0] = p[1] = p[2] = inside ? 230 : 12;
    }
  dl_err err;
  int rc = dl_png_write(path, &img, &err);
  dl_image_free(&img);
  return rc;
}

static const uint8_t *map_pixel(const dl_image *img, int row, int px, int py) {
  int x = 2 * 4 + 224 + px * 14 + 7, y = 4 + row * (224 + 4) + py * 14 + 7;  // the patch's centre
  return img->rgb + ((size_t)y * img->width + x) * 3;
}

static void end_to_end(const char *distill, const char *weights, const char *dir) {
  char a[512], b[512], out[512], cmd[2048];
  snprintf(a, sizeof a, "%s/pca_object_centre.png", dir);
  snprintf(b, sizeof b, "%s/pca_object_left.png", dir);
  snprintf(out, sizeof out, "%s/pca.png", dir);
  CHECK(write_object(a, 4) == 0 && write_object(b, 2) == 0, "wrote two 224 x 224 test images in %s", dir);
  remove(out);
  snprintf(cmd, sizeof cmd, "%s pca --weights %s --images %s %s --out %s", distill, weights, a, b, out);
  fflush(stdout);  // the command prints too; keep the log in order
  int rc = system(cmd);
  CHECK(rc == 0, "distill pca on the demo teacher exits 0 (status %d)", rc);
  dl_image img;
  dl_err err;
  if (dl_image_read_file(out, &img, &err) != 0) {
    CHECK(0, "read %s: %s", out, err.msg);
    return;
  }
  CHECK(img.width == 3 * 4 + 2 * 224 && img.height == 4 + 2 * (224 + 4), "picture is %d x %d (460 x 460)",
        img.width, img.height);
  if (img.width != 460 || img.height != 460) {
    dl_image_free(&img);
    return;
  }
  const int left[2] = {4, 2};
  for (int row = 0; row < 2; row++) {
    int bg = 0, bg_black = 0, obj = 0, obj_coloured = 0;
    for (int py = 0; py < 16; py++)
      for (int px = 0; px < 16; px++) {
        const uint8_t *p = map_pixel(&img, row, px, py);
        int black = p[0] == 0 && p[1] == 0 && p[2] == 0;
        // Patches two or more away from the square are background; its inner 6 x 6 is object.
        int far = py < 2 || py > 13 || px < left[row] - 2 || px > left[row] + 9;
        int inner = py >= 5 && py <= 10 && px >= left[row] + 1 && px <= left[row] + 6;
        if (far) bg++, bg_black += black;
        if (inner) obj++, obj_coloured += !black;
      }
    CHECK(bg_black == bg, "image %d: %d of %d background patches are black", row, bg_black, bg);
    CHECK(obj_coloured * 10 >= obj * 9, "image %d: %d of %d object patches are coloured (>= 90%%)", row, obj_coloured,
          obj);
    const uint8_t *in = img.rgb + ((size_t)(4 + row * 228 + 112) * img.width + 4 + 14 * left[row] + 56) * 3;
    CHECK(in[0] == 230, "image %d: the left half shows the input (object pixel %d)", row, in[0]);
  }
  dl_image_free(&img);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: test_pca DISTILL WEIGHTS SCRATCH_DIR\n");
    return 2;
  }
  known_matrix();
  foreground_and_colours();
  end_to_end(argv[1], argv[2], argv[3]);
  return dl_test_summary("test_pca");
}
