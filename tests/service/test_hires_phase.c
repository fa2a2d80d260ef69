// The high-resolution phase as its own phase (student/student_model.h): its
// schedules (warmup from 0 to its own peak, cosine to its min_lr, EMA
// momentum, weight decay, teacher temperature) start at train.steps; the
// keys a recipe leaves out take DINOv3's values; the share of the exported
// EMA that comes from its steps, by hand on a constant momentum and against
// an independent product on a cosine one, and for every shipped paper
// recipe (at least 90 %); and the local crop size, the student's own, leaves
// the stream identity and every global crop unchanged.
#include <math.h>
#include <string.h>

#include "data/sample_stream.h"
#include "recipe/recipe.h"
#include "student/student_model.h"
#include "tests/harness.h"

static const char *const kBase =
    "data:\n  dataset: idx:/usr/share/datasets/fashion-mnist,split=test\n  block_size: 4\n"
    "crops:\n  global_size: 28\n  local_count: 2\n  local_size: 14\n"
    "model:\n  patch: 14\n  dim: 32\n  depth: 2\n  heads: 2\n  ffn_hidden: 64\n";

static int load(const char *sections, dl_recipe *r) {
  char text[2048];
  snprintf(text, sizeof text, "%s%s", kBase, sections);
  dl_err err = {{0}};
  const int rc = dl_recipe_parse("r.yaml", (const uint8_t *)text, strlen(text), r, &err);
  if (rc) printf("     recipe refused: %s\n", err.msg);
  return rc;
}

static bool close_to(double a, double b, double rel) { return fabs(a - b) <= rel * fmax(fabs(b), 1e-300); }

// Constant momentum m over n steps: the main phase's EMA keeps m^n.
static void check_constant_momentum(void) {
  dl_recipe r;
  if (load("train:\n  batch: 4\n  steps: 30\nema:\n  momentum: 0.5\n"
           "hires:\n  steps: 50\n  size: 42\n  momentum: 0.99\n  momentum_end: 0.99\n",
           &r)) {
    CHECK(0, "constant-momentum recipe loads");
    return;
  }
  const double all = dl_student_ema_hires_share(&r, dl_student_total_steps(&r)), want = 1.0 - pow(0.99, 50);
  CHECK(close_to(all, want, 1e-12), "momentum 0.99 over 50 steps: share %.15g = 1 - 0.99^50 = %.15g", all, want);
  const double part = dl_student_ema_hires_share(&r, 40), want10 = 1.0 - pow(0.99, 10);
  CHECK(close_to(part, want10, 1e-12), "after 10 of them: %.15g = 1 - 0.99^10 = %.15g", part, want10);
  CHECK(dl_student_ema_hires_share(&r, 30) == 0.0 && dl_student_ema_hires_share(&r, 1000) == all,
        "0 before the phase (the main phase's momentum 0.5 plays no part), the whole phase's after its end");
}

// A cosine momentum: the product computed here from the cosine formula.
static void check_cosine_momentum(void) {
  dl_recipe r;
  if (load("train:\n  batch: 4\n  steps: 25\nhires:\n  steps: 40\n  size: 42\n  momentum: 0.9\n"
           "  momentum_end: 0.999\n",
           &r)) {
    CHECK(0, "cosine-momentum recipe loads");
    return;
  }
  double kept = 1.0;
  for (int i = 0; i < 40; i++) kept *= 0.999 + 0.5 * (0.9 - 0.999) * (1.0 + cos(M_PI * i / 40.0));
  const double got = dl_student_ema_hires_share(&r, 65);
  CHECK(close_to(got, 1.0 - kept, 1e-12), "momentum cosine 0.9 -> 0.999 over 40 steps: share %.15g, product %.15g",
        got, 1.0 - kept);
}

// Every schedule of the phase at its first, warmup, peak and last steps.
static void check_schedules(void) {
  dl_recipe r;
  if (load("train:\n  batch: 4096\n  steps: 100\n  teacher_temp: 0.07\noptim:\n  lr: 0.004\n  min_lr: 1e-6\n"
           "  freeze_last_layer: 10\n"
           "hires:\n  steps: 20\n  size: 42\n  local_size: 28\n  lr: 0.01\n  min_lr: 0.0001\n  warmup: 5\n"
           "  weight_decay: 0.1\n  momentum: 0.99\n  momentum_end: 0.999\n  teacher_temp: 0.05\n",
           &r)) {
    CHECK(0, "schedule recipe loads");
    return;
  }
  dl_train_config c;
  dl_student_train_config(&r, 2, r.crops.global_size, NULL, r.model.dim, &c);
  const double main_last = dl_schedule_at(&c.sched.lr, 99), main_peak = 0.004 * 2.0;
  CHECK(main_last < 1e-3 * main_peak && c.sched.lr.base == main_peak,
        "main phase: peak %g (0.004 * sqrt(4096 / 1024)), down to %.3g at its last step 99", c.sched.lr.base, main_last);
  dl_student_hires_config(&r, &c);
  CHECK(c.global_size == 42 && c.local_size == 28 && c.batch == 2048,
        "phase configuration: global crops %d, local crops %d, %d images per rank", c.global_size, c.local_size,
        c.batch);
  const double peak = 0.01 * 2.0;  // scaled like optim.lr
  double lr[20];
  for (int i = 0; i < 20; i++) lr[i] = dl_schedule_at(&c.sched.lr, 100 + i);
  bool linear = true;
  for (int i = 0; i < 5; i++) linear &= close_to(lr[i], peak * i / 4.0, 1e-12);
  CHECK(lr[0] == 0.0 && linear && close_to(lr[4], peak, 1e-12),
        "lr warmup from 0 to its own peak %g over 5 steps: %g %g %g %g %g", peak, lr[0], lr[1], lr[2], lr[3], lr[4]);
  const double end_want = 1e-4 + 0.5 * (peak - 1e-4) * (1.0 + cos(M_PI * 14.0 / 15.0));
  CHECK(close_to(lr[5], peak, 1e-12) && close_to(lr[19], end_want, 1e-12) && lr[12] < lr[6] &&
            dl_schedule_at(&c.sched.lr, 120) == 1e-4,
        "then a cosine to min_lr 1e-4: %g at step 105, %.6g at the last step 119, 1e-4 after", lr[5], lr[19]);
  CHECK(dl_schedule_at(&c.sched.last_layer_lr, 100 + 4) == lr[4], "the last layer is not frozen in the phase");
  const double m0 = dl_schedule_at(&c.sched.momentum, 100), m19 = dl_schedule_at(&c.sched.momentum, 119);
  const double m_want = 0.999 + 0.5 * (0.99 - 0.999) * (1.0 + cos(M_PI * 19.0 / 20.0));
  CHECK(m0 == 0.99 && close_to(m19, m_want, 1e-12), "EMA momentum cosine 0.99 -> 0.999: %.9g at step 100, %.9g at 119",
        m0, m19);
  bool constant = true;
  for (int i = 100; i < 120; i++)
    constant &= dl_schedule_at(&c.sched.wd, i) == 0.1 && dl_schedule_at(&c.sched.teacher_temp, i) == 0.05f;
  CHECK(constant, "weight decay 0.1 and teacher temperature 0.05 on every step of the phase");
}

// The keys left out: DINOv3's high-resolution adaptation, relative to the
// main phase.
static void check_defaults(void) {
  dl_recipe r;
  if (load("train:\n  batch: 2048\n  steps: 100\n  teacher_temp: 0.06\n"
           "optim:\n  lr: 0.002\n  weight_decay_end: 0.3\nhires:\n  steps: 30\n  size: 42\n",
           &r)) {
    CHECK(0, "defaults recipe loads");
    return;
  }
  const dl_recipe_hires *h = &r.hires;
  CHECK(h->lr == 0.002 / 4 && close_to(h->min_lr, 0.0005 * sqrt(2.0), 1e-15) && h->warmup == 10 &&
            h->momentum == 0.999 && h->momentum_end == 0.999 && h->weight_decay == 0.3 &&
            h->teacher_temp == 0.06f && h->local_size == 14,
        "defaults: lr %g (optim.lr / 4), min_lr %g (the scaled peak: held), warmup %ld (a third), momentum %g -> %g, "
        "wd %g (optim.weight_decay_end), teacher temp %g, local crops %d",
        h->lr, h->min_lr, h->warmup, h->momentum, h->momentum_end, h->weight_decay, h->teacher_temp, h->local_size);
}

// The shipped paper recipes, and what the phase gave as the tail of the main
// cosine (the same total length, its last hires.steps steps).
static void check_paper_recipes(void) {
  const char *const files[] = {"vits14", "vitb14", "vitl14", "vits14-in1k", "vitb14-in1k", "vitl14-in1k"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/recipes/%s.yaml", DISTILL_SOURCE_DIR, files[i]);
    dl_recipe r;
    dl_err err;
    if (dl_recipe_load(path, &r, &err)) {
      CHECK(0, "%s: %s", files[i], err.msg);
      continue;
    }
    const long total = dl_student_total_steps(&r);
    const double share = dl_student_ema_hires_share(&r, total);
    const dl_schedule tail = {.base = r.ema.momentum, .final = r.ema.momentum_end, .total = total};
    double log_kept = 0.0;
    for (long s = r.train.steps; s < total; s++) log_kept += log(dl_schedule_at(&tail, s));
    CHECK(share >= 0.9, "%s: %.6f %% of the exported EMA from the %ld high-resolution steps (>= 90 %%); "
          "%.3f %% as the tail of one cosine over %ld steps", files[i], 100.0 * share, r.hires.steps,
          -100.0 * expm1(log_kept), total);
  }
}

// The local crop size of the phase is the student's own: the stream identity
// the teachers check does not contain it, and no global crop depends on it.
static void check_stream_identity(void) {
  dl_recipe a, b;
  if (load("train:\n  batch: 4\n  steps: 2\nhires:\n  steps: 2\n  size: 42\n", &a) ||
      load("train:\n  batch: 4\n  steps: 2\nhires:\n  steps: 2\n  size: 42\n  local_size: 42\n", &b)) {
    CHECK(0, "stream recipes load");
    return;
  }
  char ta[DL_RECIPE_STREAM_TEXT_MAX], tb[DL_RECIPE_STREAM_TEXT_MAX];
  dl_recipe_stream_text(&a, ta, sizeof ta);
  dl_recipe_stream_text(&b, tb, sizeof tb);
  CHECK(strcmp(ta, tb) == 0 && strstr(ta, "crops.local_size=14"),
        "hires.local_size 42 leaves the stream identity as it is (%s)", ta);
  dl_dataset *ds;
  dl_err err;
  if (dl_dataset_open(a.dataset, &ds, &err)) {
    CHECK(0, "%s", err.msg);
    return;
  }
  dl_sample_stream st = {.dataset = ds, .seed = a.seed, .block_size = a.block_size, .crops = a.crops};
  dl_block main_block, hires_block;
  dl_sample_stream_block(&st, 3, 42, &main_block);
  st.crops.local_size = 42;
  dl_sample_stream_block(&st, 3, 42, &hires_block);
  const size_t n = (size_t)4 * 2 * 3 * 42 * 42;
  CHECK(hires_block.local_size == 42 && main_block.local_size == 14 &&
            memcmp(main_block.global_crops, hires_block.global_crops, n * sizeof(float)) == 0,
        "block 3 at 42 px: the same global crops bit for bit with 14 px and 42 px local crops");
  dl_block_free(&main_block);
  dl_block_free(&hires_block);
  dl_dataset_close(ds);
}

int main(void) {
  check_constant_momentum();
  check_cosine_momentum();
  check_schedules();
  check_defaults();
  check_paper_recipes();
  check_stream_identity();
  return dl_test_summary("test_hires_phase");
}
