// The export catalogue's eval period against retention: with checkpoint.keep
// 1 and keep_best 0, an evaluated export is removed at the next checkpoint,
// and that must not move the schedule. Exports every 300 steps, every_steps
// 1000: the exports chosen are 1200, 2400 and 3600 (each the first at least
// 1000 steps after the last chosen), not 1200, 1800, ... as when the last
// chosen step was read from the records retention had kept. And every_exports
// 3: every third export, whatever retention removed.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/safetensors.h"
#include "student/export_catalog.h"
#include "tests/harness.h"

static int write_export(const char *dir, long step) {
  char path[1200];
  snprintf(path, sizeof path, "%s/student-ema-%010ld.safetensors", dir, step);
  static const float w[4] = {1, 2, 3, 4};
  const dl_st_out t = {.name = "w", .ndim = 1, .shape = {4}, .data = w};
  dl_err err;
  return dl_st_write_f32(path, &t, 1, NULL, 0, &err);
}

// Adds exports every 300 steps up to 3600, evaluating each chosen one at
// once; returns how many were chosen and their steps in `chosen`.
static int run(const char *dir, long every_steps, long every_exports, long *chosen) {
  dl_recipe rc;
  memset(&rc, 0, sizeof rc);
  rc.eval.present = true;
  rc.eval.every_steps = every_steps;
  rc.eval.every_exports = every_exports;
  rc.checkpoint.keep = 1;
  rc.train.steps = 100000;
  rc.train.batch = 8;
  rc.crops.global_size = 28;
  dl_export_catalog c;
  dl_err err;
  int n = 0;
  if (dl_export_catalog_open(&c, dir, "test", &rc, 100000, &err)) {
    printf("open: %s\n", err.msg);
    return -1;
  }
  for (long step = 300; step <= 3600; step += 300) {
    if (write_export(dir, step) || dl_export_catalog_add(&c, step, &err)) {
      printf("step %ld: %s\n", step, err.msg);
      n = -1;
      break;
    }
    dl_export_record *p = dl_export_catalog_next_pending(&c);
    if (!p) continue;
    chosen[n++] = p->step;
    const dl_export_eval done = {.state = DL_EXPORT_EVAL_DONE, .knn_top1 = 50.0, .knn_k = 20};
    if (dl_export_catalog_set_eval(&c, p->step, &done, &err)) {
      printf("set_eval: %s\n", err.msg);
      n = -1;
      break;
    }
  }
  const int kept = c.n;
  dl_export_catalog_close(&c);
  return n < 0 ? -1 : kept == 1 ? n : -2;
}

static void check(const char *label, long every_steps, long every_exports, const long *want, int want_n) {
  char dir[] = "/tmp/distill-catalog-XXXXXX";
  if (!mkdtemp(dir)) {
    CHECK(0, "%s: a temporary folder", label);
    return;
  }
  long got[16];
  const int n = run(dir, every_steps, every_exports, got);
  char text[160] = "";
  for (int i = 0; i < n && i < 16; i++)
    snprintf(text + strlen(text), sizeof text - strlen(text), "%s%ld", i ? " " : "", got[i]);
  CHECK(n == want_n && memcmp(got, want, (size_t)want_n * sizeof *want) == 0,
        "%s, keep 1 (each evaluated export removed at the next): chose %s (%d exports; want %d), one export kept",
        label, n >= 0 ? text : "(failed)", n, want_n);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
}

int main(void) {
  const long by_steps[] = {1200, 2400, 3600}, by_exports[] = {900, 1800, 2700, 3600};
  check("every_steps 1000, exports every 300 steps", 1000, 0, by_steps, 3);
  check("every_exports 3, exports every 300 steps", 0, 3, by_exports, 4);
  return dl_test_summary("test_export_catalog");
}
