// Parity of data/'s image ops with torchvision 0.14 on PIL images: replays
// every case that tests/ref/data/gen_refs.py recorded and compares pixels
// (resampled and colour-transformed within 2 levels, geometric ops and
// crop boxes exact).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/augment.h"
#include "data/augment_ops.h"
#include "data/crop_params.h"
#include "data/image.h"
#include "data/resample.h"
#include "tests/harness.h"

#define REF_DIR DISTILL_SOURCE_DIR "/tests/ref/data/"

static void load(const char *name, dl_image *img) {
  char path[512];
  dl_err err;
  snprintf(path, sizeof path, REF_DIR "%s", name);
  if (dl_image_read_file(path, img, &err) != 0) {
    fprintf(stderr, "cannot read reference %s: %s\n", path, err.msg);
    exit(1);
  }
}

// Largest per-channel difference, or 999 when the sizes differ.
static int max_diff(const uint8_t *a, int aw, int ah, const dl_image *ref) {
  if (aw != ref->width || ah != ref->height) return 999;
  int m = 0;
  for (size_t i = 0; i < (size_t)aw * ah * 3; i++) {
    int d = abs((int)a[i] - (int)ref->rgb[i]);
    if (d > m) m = d;
  }
  return m;
}

typedef struct op_stats {
  const char *op;
  int cases, worst, allowed;
} op_stats;

static op_stats kStats[] = {
    {"decode", 0, 0, 0},     {"eval", 0, 0, 2},       {"resized_crop", 0, 0, 2},
    {"hflip", 0, 0, 0},      {"brightness", 0, 0, 2}, {"contrast", 0, 0, 2},
    {"saturation", 0, 0, 2}, {"hue", 0, 0, 2},        {"grayscale", 0, 0, 0},
    {"blur", 0, 0, 2},       {"solarize", 0, 0, 0},    {"crop", 0, 0, 2},
};
enum { kNumOps = sizeof kStats / sizeof kStats[0] };

// Applies `op` with its parameters to `in`; returns the result (owned).
static uint8_t *apply_op(const char *op, const dl_image *in, double *p, int *ow, int *oh) {
  int w = in->width, h = in->height;
  *ow = w, *oh = h;
  if (strcmp(op, "eval") == 0) {
    *ow = *oh = (int)p[1];
    uint8_t *out = dl_malloc((size_t)*ow * *oh * 3);
    dl_err err;
    DL_ASSERT(dl_eval_crop_rgb8(in, (int)p[0], (int)p[1], out, &err) == 0);
    return out;
  }
  if (strcmp(op, "crop") == 0) {   // a whole crop with fixed draws
    dl_crop_draw d = {.kind = DL_CROP_GLOBAL_SECOND, .box = {(int)p[0], (int)p[1], (int)p[2], (int)p[3]},
                      .flip = (int)p[5], .jitter = (int)p[6],
                      .jitter_order = {(int)p[7], (int)p[8], (int)p[9], (int)p[10]},
                      .brightness = (float)p[11], .contrast = (float)p[12], .saturation = (float)p[13],
                      .hue = (float)p[14], .grayscale = (int)p[15], .blur = (int)p[16],
                      .blur_sigma = (float)p[17], .solarize = (int)p[18]};
    *ow = *oh = (int)p[4];
    uint8_t *out = dl_malloc((size_t)*ow * *oh * 3);
    dl_crop_apply(in, &d, *ow, out);
    return out;
  }
  if (strcmp(op, "resized_crop") == 0) {
    *ow = *oh = (int)p[4];
    uint8_t *out = dl_malloc((size_t)*ow * *oh * 3);
    dl_resample_bicubic(in->rgb, w * 3, (int)p[1], (int)p[0], (int)p[3], (int)p[2], out, *ow, *oh);
    return out;
  }
  uint8_t *out = dl_malloc((size_t)w * h * 3);
  memcpy(out, in->rgb, (size_t)w * h * 3);
  if (strcmp(op, "hflip") == 0) dl_hflip_rgb8(out, w, h);
  else if (strcmp(op, "brightness") == 0) dl_adjust_brightness(out, w, h, (float)p[0]);
  else if (strcmp(op, "contrast") == 0) dl_adjust_contrast(out, w, h, (float)p[0]);
  else if (strcmp(op, "saturation") == 0) dl_adjust_saturation(out, w, h, (float)p[0]);
  else if (strcmp(op, "hue") == 0) dl_adjust_hue(out, w, h, (float)p[0]);
  else if (strcmp(op, "grayscale") == 0) dl_grayscale_rgb8(out, w, h);
  else if (strcmp(op, "blur") == 0) dl_gaussian_blur_rgb8(out, w, h, 9, (float)p[0]);
  else if (strcmp(op, "solarize") == 0) dl_solarize_rgb8(out, w, h, 128);
  return out;
}

static void check_pixel_cases(void) {
  FILE *f = fopen(REF_DIR "cases.txt", "r");
  CHECK(f != NULL, "tests/ref/data/cases.txt opens");
  if (!f) return;
  char line[1024];
  while (fgets(line, sizeof line, f)) {
    char *tok[32];
    int nt = 0;
    for (char *t = strtok(line, " \n"); t && nt < 32; t = strtok(NULL, " \n")) tok[nt++] = t;
    if (nt < 3) continue;
    double p[24] = {0};
    for (int i = 2; i < nt - 1 && i - 2 < 24; i++) p[i - 2] = strtod(tok[i], NULL);
    dl_image in, ref;
    load(tok[1], &in);
    load(tok[nt - 1], &ref);
    int ow, oh;
    uint8_t *out = strcmp(tok[0], "decode") == 0 ? NULL : apply_op(tok[0], &in, p, &ow, &oh);
    int d = out ? max_diff(out, ow, oh, &ref) : max_diff(in.rgb, in.width, in.height, &ref);
    for (int i = 0; i < kNumOps; i++)
      if (strcmp(kStats[i].op, tok[0]) == 0) {
        kStats[i].cases++;
        if (d > kStats[i].worst) kStats[i].worst = d;
      }
    if (d > 2) printf("     case %s on %s (%s): max diff %d\n", tok[0], tok[1], tok[nt - 1], d);
    free(out);
    dl_image_free(&in);
    dl_image_free(&ref);
  }
  fclose(f);
  for (int i = 0; i < kNumOps; i++)
    CHECK(kStats[i].cases > 0 && kStats[i].worst <= kStats[i].allowed,
          "%-12s %2d cases vs torchvision/PIL: max abs diff %d levels (allowed %d)", kStats[i].op,
          kStats[i].cases, kStats[i].worst, kStats[i].allowed);
}

// Replays recorded torch draws in order.
typedef struct replay {
  double v[64];
  int n, next;
} replay;

static double replay_uniform(void *ctx, double lo, double hi) {
  (void)lo, (void)hi;
  replay *r = ctx;
  return r->next < r->n ? r->v[r->next++] : -1;
}
static int64_t replay_randint(void *ctx, int64_t lo, int64_t hi) {
  (void)lo, (void)hi;
  replay *r = ctx;
  return r->next < r->n ? (int64_t)r->v[r->next++] : -1;
}

static void check_rrc_boxes(void) {
  FILE *f = fopen(REF_DIR "rrc_params.txt", "r");
  CHECK(f != NULL, "tests/ref/data/rrc_params.txt opens");
  if (!f) return;
  char line[4096];
  int cases = 0, same = 0, fallbacks = 0, all_draws_used = 1;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#') continue;
    int w, h, t, l, bh, bw, nd, off;
    double s0, s1;
    if (sscanf(line, "%d %d %lf %lf %d %d %d %d %d%n", &w, &h, &s0, &s1, &t, &l, &bh, &bw, &nd, &off) != 9) continue;
    replay r = {.n = nd};
    char *p = line + off;
    for (int i = 0; i < nd && i < 64; i++) r.v[i] = strtod(p, &p);
    dl_draw_source src = {replay_uniform, replay_randint, &r};
    dl_box b = dl_rrc_params(w, h, s0, s1, 3.0 / 4.0, 4.0 / 3.0, &src);
    cases++;
    fallbacks += nd == 20;
    if (b.top == t && b.left == l && b.height == bh && b.width == bw) same++;
    else printf("     %dx%d scale %g-%g: got %d,%d,%d,%d want %d,%d,%d,%d\n", w, h, s0, s1, b.top,
                b.left, b.height, b.width, t, l, bh, bw);
    if (r.next != r.n) all_draws_used = 0;
  }
  fclose(f);
  CHECK(cases >= 100 && same == cases,
        "RandomResizedCrop boxes: %d/%d identical to torchvision's get_params (%d via the center fallback)",
        same, cases, fallbacks);
  CHECK(fallbacks > 0, "the fallback path was exercised (%d cases)", fallbacks);
  CHECK(all_draws_used, "every recorded draw consumed in torchvision's order");
}

static void check_normalized_eval(void) {
  dl_image in, ref;
  load("in_chelsea.jpg", &in);
  load("ref_002_eval.png", &ref);   // Resize(256) + CenterCrop(224)
  float *out = dl_malloc(sizeof(float) * 3 * 224 * 224);
  dl_err err;
  int rc = dl_eval_transform(&in, 256, 224, out, &err);
  static const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
  double worst = 0;
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < 224 * 224; i++) {
      double want = (ref.rgb[3 * i + c] / 255.0 - mean[c]) / sd[c];
      double d = fabs(out[c * 224 * 224 + i] - want) * sd[c] * 255.0;
      if (d > worst) worst = d;
    }
  CHECK(rc == 0 && worst <= 2.0, "dl_eval_transform(256, 224) normalized output: max diff %.3f levels", worst);
  dl_image_free(&in);
  dl_image_free(&ref);
  free(out);
}

int main(void) {
  check_pixel_cases();
  check_rrc_boxes();
  check_normalized_eval();
  return dl_test_summary("test_data_parity");
}
