// The iBOT patch selection (model/ibot_masks.h) as a property over many
// steps: the share of crops with a mask is the probability, each masked
// crop's ratio lies in [low, high] in its own stratum, the strata go to the
// crops at random, the count per step is the upper bound exactly, masks are
// block-shaped, and a draw is a function of (seed, step, rank). Then the
// step: dl_trainer_step scores the step's selection only (the other patch
// rows get no gradient) and repeats bit for bit; the configuration's checks;
// the recipe's keys (defaults, refusals, not in the stream identity).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/train_step.h"
#include "recipe/recipe.h"
#include "student/student_model.h"
#include "tests/harness.h"
#include "tests/train/ref_util.h"

#define STEPS 400

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

// Patches of each crop in masks [crops, P].
static void crop_counts(const bool *masks, int crops, int P, int *counts) {
  for (int c = 0; c < crops; c++) {
    counts[c] = 0;
    for (int j = 0; j < P; j++) counts[c] += masks[(size_t)c * P + j];
  }
}

// One configuration over STEPS steps: the share, the strata, the count.
static void check_draws(int crops, int grid, float p, float lo, float hi) {
  const int P = grid * grid, n = dl_mask_counts(crops, P, p, lo, hi, NULL);
  const int bound = dl_ibot_selected_upper_bound(crops, P, p, lo, hi);
  int want[crops], counts[crops], rows[crops * P], per_crop[crops];
  dl_mask_counts(crops, P, p, lo, hi, want);
  memset(per_crop, 0, sizeof per_crop);
  bool *masks = malloc((size_t)crops * P);
  float *w = malloc(sizeof(float) * crops * P);
  const dl_ibot_select s = {.selected = true, .probability = p, .ratio_lo = lo, .ratio_hi = hi, .seed = 3};
  int share_ok = 0, strata_ok = 0, count_ok = 0, weights_ok = 0;
  double lo_seen = 1.0, hi_seen = 0.0;
  for (long step = 0; step < STEPS; step++) {
    const int m = dl_ibot_select_step(&s, step, crops, grid, masks, rows, w);
    crop_counts(masks, crops, P, counts);
    int masked = 0;
    double wsum = 0.0;
    for (int c = 0; c < crops; c++) masked += counts[c] > 0, per_crop[c] += counts[c] > 0;
    for (int i = 0; i < m; i++) wsum += w[i];
    share_ok += masked == n;
    count_ok += m == bound;
    weights_ok += fabs(wsum - n) < 1e-4;
    qsort(counts, (size_t)crops, sizeof(int), cmp_int);
    int same = 1;  // the nonzero counts, sorted, are the strata's
    for (int i = 0; i < n; i++) {
      same &= counts[crops - n + i] == want[i];
      const double ratio = (double)counts[crops - n + i] / P, edge = lo + (i + 1) * (double)(hi - lo) / n;
      same &= ratio <= edge + 1e-6 && ratio > edge - 1.0 / P - 1e-6;
      lo_seen = fmin(lo_seen, ratio), hi_seen = fmax(hi_seen, ratio);
    }
    strata_ok += same;
  }
  int spread_ok = 0;
  for (int c = 0; c < crops; c++) spread_ok += fabs((double)per_crop[c] / STEPS - (double)n / crops) <= 0.1;
  CHECK(share_ok == STEPS, "%d crops of %d patches, p %.2f: %d masked crops (share %.3f) in %d of %d steps", crops, P,
        p, n, (double)n / crops, share_ok, STEPS);
  CHECK(strata_ok == STEPS && lo_seen >= lo && hi_seen <= hi,
        "  the i-th masked crop holds int(P * stratum top) patches, ratio in (top - 1/P, top], in %d of %d steps; "
        "ratios seen %.4f to %.4f within [%.2f, %.2f]", strata_ok, STEPS, lo_seen, hi_seen, lo, hi);
  CHECK(count_ok == STEPS, "  selected per step = the upper bound %d (never above) in %d of %d steps", bound, count_ok,
        STEPS);
  CHECK(weights_ok == STEPS, "  weights 1 / n per crop sum to the %d masked crops in %d of %d steps", n, weights_ok,
        STEPS);
  CHECK(spread_ok == crops, "  every crop masked in %.2f +- 0.1 of the steps (%d of %d crops)", (double)n / crops,
        spread_ok, crops);
  free(masks), free(w);
}

// Same key, same masks; another step or rank, other masks.
static void check_determinism(void) {
  enum { C = 16, GRID = 16, P = GRID * GRID };
  static bool a[C * P], b[C * P], c[C * P], d[C * P];
  static int rows[C * P];
  static float w[C * P];
  dl_ibot_select s = {.selected = true, .probability = 0.5f, .ratio_lo = 0.1f, .ratio_hi = 0.5f, .seed = 9, .rank = 2};
  dl_ibot_select_step(&s, 17, C, GRID, a, rows, w);
  dl_ibot_select_step(&s, 17, C, GRID, b, rows, w);
  dl_ibot_select_step(&s, 18, C, GRID, c, rows, w);
  s.rank = 3;
  dl_ibot_select_step(&s, 17, C, GRID, d, rows, w);
  CHECK(memcmp(a, b, sizeof a) == 0 && memcmp(a, c, sizeof a) != 0 && memcmp(a, d, sizeof a) != 0,
        "a selection is a function of (seed, step, rank): redrawn equal, step 18 and rank 3 differ");
}

// Share of masked patches with a masked right or lower neighbour.
static double adjacency(const bool *m, int g) {
  int masked = 0, joined = 0;
  for (int i = 0; i < g; i++)
    for (int j = 0; j < g; j++) {
      if (!m[i * g + j]) continue;
      masked++;
      joined += (j + 1 < g && m[i * g + j + 1]) || (i + 1 < g && m[(i + 1) * g + j]);
    }
  return masked ? (double)joined / masked : 0.0;
}

// MaskingGenerator's rules: exact counts, blocks, the largest block.
static void check_blocks(void) {
  CHECK(dl_mask_max_block(14) == 98 && dl_mask_max_block(16) == 128 && dl_mask_max_block(37) == 666,
        "max_num_patches as train.py evaluates it: %d at 224/16, %d at 224/14, %d at 518/14", dl_mask_max_block(14),
        dl_mask_max_block(16), dl_mask_max_block(37));
  enum { GRID = 16, P = GRID * GRID };
  bool m[P];
  int exact = 0;
  dl_rng r = dl_rng_make(42);
  for (int count = 0; count <= P; count++) {
    dl_block_mask(m, GRID, GRID, count, dl_mask_max_block(GRID), &r);
    int got = 0;
    for (int i = 0; i < P; i++) got += m[i];
    exact += got == count;
  }
  CHECK(exact == P + 1, "block masks hold exactly the count asked, 0 to %d patches: %d of %d", P, exact, P + 1);
  double blocks = 0.0, scattered = 0.0;
  const dl_mask_draw rnd = {DL_MASK_RANDOM_PATCHES, 1.0f, 0.3f, 0.3f, 0};
  for (int i = 0; i < 200; i++) {
    dl_block_mask(m, GRID, GRID, 77, dl_mask_max_block(GRID), &r);
    blocks += adjacency(m, GRID) / 200;
    dl_draw_crop_masks(m, 1, GRID, GRID, &rnd, &r);
    scattered += adjacency(m, GRID) / 200;
  }
  CHECK(blocks > 0.8 && scattered < 0.6, "77 of 256 patches: %.3f of the masked patches touch another right or below "
        "as blocks (> 0.8), %.3f as random patches (< 0.6)", blocks, scattered);
}

enum { SG = 2, SB = 4, SGRID = 4, SP = SGRID * SGRID, SD = 32, SK = 16, SBN = 8 };

// A small student, its heads' configuration and a fixed batch.
static void small_student(dl_vit *vit, unsigned long long seed) {
  const dl_vit_config vc = {.patch = 4, .dim = SD, .depth = 1, .heads = 2, .ffn_hidden = 64, .pos_grid = SGRID,
                            .ffn = DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
  dl_vit_init_empty(vit, &vc);
  for (int i = 0; i < vit->layout.count; i++) {
    const dl_param_entry *e = &vit->layout.entries[i];
    const bool one = strstr(e->name, "norm") && strstr(e->name, "weight");
    for (size_t j = 0; j < e->numel; j++) vit->params[e->offset + j] = one ? 1.0f : 0.1f * ref_rand(&seed);
  }
}

static dl_train_config small_config(void) {
  const dl_head_config h = {.in_dim = SD, .hidden_dim = 24, .out_dim = SBN, .nlayers = 3, .prototypes = SK};
  dl_train_config c = {.mode = DL_TRAIN_PROTOTYPES, .batch = SB, .global_crops = SG, .local_crops = 0,
                       .global_size = SGRID * 4, .local_size = 8, .weights = dl_loss_weights_default(),
                       .student_temp = 0.1f, .sinkhorn = true, .sk_iters = 3, .dino_head = h, .ibot_head = h,
                       .adamw = dl_adamw_config_default()};
  c.sched.lr = (dl_schedule){.base = 1e-3, .final = 1e-3, .total = 10};
  c.sched.last_layer_lr = c.sched.lr;
  c.sched.momentum = (dl_schedule){.base = 0.9, .final = 0.9, .total = 10};
  c.sched.teacher_temp = (dl_schedule){.base = 0.07, .final = 0.07, .total = 10};
  c.ibot = (dl_ibot_select){.selected = true, .probability = 0.5f, .ratio_lo = 0.1f, .ratio_hi = 0.5f, .seed = 5};
  return c;
}

static float *rows_normalized(size_t rows, int d, unsigned long long *seed) {
  float *x = malloc(sizeof(float) * rows * d);
  for (size_t r = 0; r < rows; r++) {
    double ss = 0.0;
    for (int j = 0; j < d; j++) x[r * d + j] = ref_rand(seed), ss += (double)x[r * d + j] * x[r * d + j];
    for (int j = 0; j < d; j++) x[r * d + j] /= (float)sqrt(ss);
  }
  return x;
}

// Two steps with the selection; the losses of each.
static int two_steps(const dl_head teacher[2], const dl_train_batch *b, float losses[2][2], int *zero_ok,
                     int *masks_ok, int *moved) {
  dl_vit vit;
  small_student(&vit, 77);
  dl_train_config cfg = small_config();
  dl_trainer t;
  dl_err err;
  if (dl_trainer_init(&t, &vit, &cfg, &teacher[0], &teacher[1], 3, &err)) return dl_vit_free(&vit), -1;
  static bool want[SG * SB * SP], first[SG * SB * SP];
  static int rows[SG * SB * SP];
  static float w[SG * SB * SP];
  *zero_ok = *masks_ok = 0;
  for (int step = 0; step < 2; step++) {
    dl_step_report r;
    if (dl_trainer_step(&t, b, &r, &err)) break;
    losses[step][0] = r.dino, losses[step][1] = r.ibot;
    dl_ibot_select_step(&cfg.ibot, step, SG * SB, SGRID, want, rows, w);
    *masks_ok += memcmp(want, t.ibot_masks, sizeof want) == 0;
    if (step == 0) memcpy(first, t.ibot_masks, sizeof first);
    size_t stray = 0, live = 0;
    for (size_t i = 0; i < (size_t)SG * SB * SP * SD; i++) {
      stray += !t.ibot_masks[i / SD] && t.crops.d_patch_g[i] != 0.0f;
      live += t.ibot_masks[i / SD] && t.crops.d_patch_g[i] != 0.0f;
    }
    *zero_ok += stray == 0 && live > 0;
  }
  *moved = memcmp(first, t.ibot_masks, sizeof first) != 0;
  dl_trainer_free(&t);
  dl_vit_free(&vit);
  return 0;
}

static void check_steps(void) {
  unsigned long long seed = 99;
  dl_head teacher[2];
  const dl_head_config tc = {.in_dim = 8, .hidden_dim = 8, .out_dim = 12, .nlayers = 2, .prototypes = SK};
  for (int k = 0; k < 2; k++) dl_head_init(&teacher[k], &tc), dl_head_init_random(&teacher[k], 10 + k);
  float *gimg = malloc(sizeof(float) * SG * SB * 3 * 16 * 16);
  for (int i = 0; i < SG * SB * 3 * 16 * 16; i++) gimg[i] = ref_rand(&seed);
  float *tcls = rows_normalized(SG * SB, 12, &seed), *tpatch = rows_normalized(SG * SB * SP, 12, &seed);
  const dl_train_batch b = {gimg, NULL, tcls, tpatch};
  float l1[2][2], l2[2][2];
  int zero1, masks1, moved1, zero2, masks2, moved2;
  const int rc = two_steps(teacher, &b, l1, &zero1, &masks1, &moved1) | two_steps(teacher, &b, l2, &zero2, &masks2, &moved2);
  CHECK(rc == 0 && masks1 == 2 && moved1, "dl_trainer_step scores the selection of (seed, step, rank) in %d of 2 "
        "steps; step 1's differs from step 0's", masks1);
  CHECK(rc == 0 && zero1 == 2, "the patch rows not selected get gradient exactly 0, selected ones not, in %d of 2 "
        "steps (%d of %d rows selected)", zero1, dl_ibot_selected_upper_bound(SG * SB, SP, 0.5f, 0.1f, 0.5f),
        SG * SB * SP);
  CHECK(rc == 0 && isfinite(l1[1][1]) && l1[0][1] > 0 && memcmp(l1, l2, sizeof l1) == 0,
        "a second run repeats bit for bit: DINO %.6f %.6f, iBOT %.6f %.6f", l1[0][0], l1[1][0], l1[0][1], l1[1][1]);
  free(gimg), free(tcls), free(tpatch);
  for (int k = 0; k < 2; k++) dl_head_free(&teacher[k]);
}

// dl_train_config_check on the selection's values.
static void check_config(void) {
  dl_vit vit;
  small_student(&vit, 1);
  dl_head teacher[2];
  const dl_head_config tc = {.in_dim = 8, .hidden_dim = 8, .out_dim = 12, .nlayers = 2, .prototypes = SK};
  for (int k = 0; k < 2; k++) dl_head_init(&teacher[k], &tc);
  struct { float p, lo, hi, ibot_weight; const char *want; } cases[] = {
      {0.1f, 0.1f, 0.5f, 1.0f, "training: the iBOT selection picks no patch of 8 crops of 16 patches"},
      {0.1f, 0.1f, 0.5f, 0.0f, NULL},
      {0.5f, 0.5f, 0.2f, 1.0f, "training: iBOT selection needs a probability in [0, 1] and 0 <= ratio low <= high"},
      {1.5f, 0.1f, 0.5f, 1.0f, "training: iBOT selection needs a probability in [0, 1]"},
      {0.5f, 0.0f, 0.0f, 1.0f, "training: the iBOT selection picks no patch"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dl_train_config c = small_config();
    c.ibot.probability = cases[i].p, c.ibot.ratio_lo = cases[i].lo, c.ibot.ratio_hi = cases[i].hi;
    c.weights.ibot = cases[i].ibot_weight;
    dl_err err = {{0}};
    const int rc = dl_train_config_check(&vit, &c, &teacher[0], &teacher[1], &err);
    const bool ok = cases[i].want ? rc == -1 && strncmp(err.msg, cases[i].want, strlen(cases[i].want)) == 0 : rc == 0;
    CHECK(ok, "p %.1f, ratios [%.1f, %.1f], iBOT weight %.0f: %s", cases[i].p, cases[i].lo, cases[i].hi,
          cases[i].ibot_weight, rc ? err.msg : "accepted");
  }
  for (int k = 0; k < 2; k++) dl_head_free(&teacher[k]);
  dl_vit_free(&vit);
}

static int parse(const char *text, dl_recipe *r, dl_err *err) {
  return dl_recipe_parse("r.yaml", (const uint8_t *)text, strlen(text), r, err);
}

// The train section's keys: defaults, values, refusals, stream identity.
static void check_recipe(void) {
  const char *base = "data:\n  dataset: folder:/x\n  seed: 12\nmodel:\n  size: small\ntrain:\n  batch: 32\n  steps: 10\n";
  char text[1024];
  dl_recipe a, b;
  dl_err err = {{0}};
  int rc = parse(base, &a, &err);
  CHECK(rc == 0 && a.train.ibot_selected == 1 && a.train.ibot_mask_probability == 0.5f &&
            a.train.ibot_mask_ratio_lo == 0.1f && a.train.ibot_mask_ratio_hi == 0.5f,
        "defaults: ibot_patches selected, ibot_mask_probability 0.5, ibot_mask_ratio [0.1, 0.5] (%s)",
        rc ? err.msg : "ok");
  snprintf(text, sizeof text, "%s%s", base,
           "  ibot_patches: all\n  ibot_mask_probability: 0.3\n  ibot_mask_ratio: [0.2, 0.4]\n");
  rc = parse(text, &b, &err);
  dl_train_config tc;
  if (rc == 0) dl_student_train_config(&b, 1, b.crops.global_size, NULL, b.model.dim, &tc);
  CHECK(rc == 0 && !tc.ibot.selected && tc.ibot.probability == 0.3f && tc.ibot.ratio_lo == 0.2f &&
            tc.ibot.ratio_hi == 0.4f && tc.ibot.seed == 12,
        "ibot_patches all, 0.3, [0.2, 0.4] reach the training configuration, drawn from data.seed 12 (%s)",
        rc ? err.msg : "ok");
  char sa[DL_RECIPE_STREAM_TEXT_MAX], sb[DL_RECIPE_STREAM_TEXT_MAX];
  dl_recipe_stream_text(&a, sa, sizeof sa);
  dl_recipe_stream_text(&b, sb, sizeof sb);
  CHECK(rc == 0 && strcmp(sa, sb) == 0 && dl_recipe_stream_hash(&a) == dl_recipe_stream_hash(&b),
        "the keys leave the stream identity (teacher and student agree on it) unchanged");
  struct { const char *extra, *want; } bad[] = {
      {"  ibot_patches: some\n", "r.yaml:9: train.ibot_patches: expected one of all, selected, got 'some'"},
      {"  ibot_mask_probability: 1.5\n", "r.yaml:9: train.ibot_mask_probability: 1.5 is outside [0, 1]"},
      {"  ibot_mask_ratio: [0.5, 0.2]\n", "r.yaml:9: train.ibot_mask_ratio: need 0 <= LOW <= HIGH <= 1"},
      {"  ibot_mask_ratio: [0.1]\n", "r.yaml:9: train.ibot_mask_ratio: expected [LOW, HIGH]"},
      {"  ibot_mask_ratio: [0.1, x]\n", "r.yaml:9: train.ibot_mask_ratio: 'x' is not a number"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(text, sizeof text, "%s%s", base, bad[i].extra);
    dl_recipe r;
    err.msg[0] = 0;
    rc = parse(text, &r, &err);
    CHECK(rc == -1 && strncmp(err.msg, bad[i].want, strlen(bad[i].want)) == 0, "refused: %s", err.msg);
  }
  snprintf(text, sizeof text, "%s%s", base,
           "  targets: prototypes\n  teacher_heads: h.safetensors\n  ibot_mask_probability: 0\n");
  dl_recipe r;
  rc = parse(text, &r, &err);
  const char *want = "r.yaml: train.ibot_mask_probability 0 and ibot_mask_ratio [0.1, 0.5] select no patch";
  CHECK(rc == -1 && strncmp(err.msg, want, strlen(want)) == 0, "refused: %s", err.msg);
  snprintf(text, sizeof text, "%s%s", base,
           "  targets: prototypes\n  teacher_heads: h.safetensors\n  ibot_mask_probability: 0\n  ibot_weight: 0\n");
  rc = parse(text, &r, &err);
  CHECK(rc == 0, "accepted with ibot_weight 0 (%s)", rc ? err.msg : "ok");
}

int main(void) {
  check_draws(64, 16, 0.5f, 0.1f, 0.5f);
  check_draws(64, 37, 0.5f, 0.1f, 0.5f);
  check_draws(10, 6, 0.3f, 0.2f, 0.4f);
  check_draws(2, 4, 0.5f, 0.1f, 0.5f);
  check_determinism();
  check_blocks();
  check_steps();
  check_config();
  check_recipe();
  return dl_test_summary("test_ibot_select");
}
