// The teacher's heads as released, served end to end by processes:
// `distill teacher --recipe` (the demo teacher's backbone, prototypes
// targets) with a heads file whose DINO bottleneck is 384 wide and iBOT
// bottleneck 256 wide (ViT-g/14's widths, own prototype counts), and then
// with a shared head (dino_head.* only, DINOv2's ibot.separate_head: false),
// and with the 384/256 heads serving both kinds (the bottlenecks as
// cls_proto, patch_proto beside the features), each serving a `distill
// student` with train.targets: prototypes for 3 steps. Checked: the student
// exits 0 with 3 steps of finite, positive DINO and iBOT losses and a finite
// KoLeo in metrics.jsonl; its WELCOME log line announces the teacher's two
// widths (cls_dim, patch_dim: the bottlenecks', or with both the backbone's
// 128 twice); the teacher ends cleanly on SIGTERM; the student served both
// kinds logs the same losses as the one served prototypes (the same
// bottlenecks under other names). Port 47310 (no other test uses it).
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "model/safetensors.h"
#include "teacher/model_io.h"
#include "tests/harness.h"
#include "tests/teacher/proc.h"

#define WEIGHTS DISTILL_SOURCE_DIR "/models/demo-teacher/backbone.safetensors"
#define ENDPOINT "tcp://127.0.0.1:47310"
#define STEPS 3

static char g_dir[128];

// A heads file for the demo backbone (128 wide): DINO bottleneck bn0 with k0
// prototypes and, unless bn1 == 0, an iBOT head (bn1, k1); else dino_head.* only.
static int write_heads(const char *path, int bn0, int k0, int bn1, int k1) {
  dl_head h[2];
  const dl_head_config c0 = {.in_dim = 128, .hidden_dim = 64, .out_dim = bn0, .nlayers = 3, .prototypes = k0};
  const dl_head_config c1 = {.in_dim = 128, .hidden_dim = 64, .out_dim = bn1, .nlayers = 3, .prototypes = k1};
  dl_head_init(&h[0], &c0);
  dl_head_init_random(&h[0], 21);
  dl_err err;
  int rc;
  if (bn1) {
    dl_head_init(&h[1], &c1);
    dl_head_init_random(&h[1], 22);
    rc = dl_heads_save(&h[0], h[0].params, &h[1], h[1].params, path, &err);
    dl_head_free(&h[1]);
  } else {
    const int n = h[0].layout.count;
    dl_st_out out[2 * DL_HEAD_MAX_LAYERS + 2];
    char names[2 * DL_HEAD_MAX_LAYERS + 2][DL_NAME_MAX + 16];
    for (int i = 0; i < n; i++) {
      const dl_param_entry *e = &h[0].layout.entries[i];
      snprintf(names[i], sizeof names[i], "dino_head.%s", e->name);
      out[i] = (dl_st_out){.name = names[i], .ndim = e->ndim, .data = h[0].params + e->offset};
      for (int d = 0; d < e->ndim; d++) out[i].shape[d] = e->shape[d];
    }
    rc = dl_st_write_f32(path, out, n, NULL, 0, &err);
  }
  dl_head_free(&h[0]);
  if (rc) printf("%s\n", err.msg);
  return rc;
}

static const char *kStream =
    "data:\n  dataset: idx:/usr/share/datasets/fashion-mnist,split=test\n  seed: 5\n  block_size: 4\n"
    "  loader_threads: 1\n"
    "crops:\n  global_count: 2\n  global_size: 56\n  local_count: 2\n  local_size: 28\n";

static int write_recipes(const char *teacher, const char *student, const char *heads, const char *target) {
  FILE *t = fopen(teacher, "w"), *s = fopen(student, "w");
  if (t) fprintf(t, "%steacher:\n  weights: %s\n  heads: %s\n  target: %s\n  batch: 8\n  workers: 1\n", kStream,
                 WEIGHTS, heads, target);
  if (s)
    fprintf(s,
            "%smodel:\n  patch: 14\n  dim: 32\n  depth: 1\n  heads: 2\n  ffn_hidden: 64\n  seed: 3\n"
            "train:\n  targets: prototypes\n  teacher_heads: %s\n  head_hidden: 48\n  batch: 4\n  steps: %d\n"
            "optim:\n  lr: 0.001\n  lr_scaling: none\n  warmup: 1\n",
            kStream, heads, STEPS);
  const int ok = t && s;
  if (t) fclose(t);
  if (s) fclose(s);
  return ok ? 0 : -1;
}

// Waits for the student (at most timeout_s); a teacher that exits first
// (it refused its heads file) ends the wait at once. The student's exit
// status, or -1 (then both are stopped by the caller).
static int wait_student(pid_t student, pid_t teacher, double timeout_s, int *teacher_status) {
  *teacher_status = -1;
  for (double t = 0; t < timeout_s; t += 0.01) {
    int st;
    if (waitpid(student, &st, WNOHANG) == student) return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    if (waitpid(teacher, &st, WNOHANG) == teacher) {
      *teacher_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
      proc_stop(student, SIGKILL, 5);
      return -1;
    }
    nanosleep(&(struct timespec){0, 10000000}, NULL);
  }
  proc_stop(student, SIGKILL, 5);
  return -1;
}

// The number of step lines in metrics.jsonl, and whether each has finite
// losses with DINO and iBOT above 0; `last` gets the last one.
static int finite_steps(const char *path, int *bad, char *last, size_t n) {
  FILE *f = fopen(path, "r");
  char line[2048];
  *bad = 0;
  last[0] = '\0';
  int steps = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (!strstr(line, "\"loss\":")) continue;
    steps++;
    snprintf(last, n, "%.*s", (int)strcspn(line, "\n"), line);
    const char *keys[4] = {"\"loss\":", "\"dino\":", "\"ibot\":", "\"koleo\":"};
    for (int k = 0; k < 4; k++) {
      const char *p = strstr(line, keys[k]);
      const double v = p ? strtod(p + strlen(keys[k]), NULL) : NAN;
      if (!isfinite(v) || ((k == 1 || k == 2) && v <= 0)) (*bad)++;
    }
  }
  if (f) fclose(f);
  return steps;
}

static int file_has(const char *path, const char *text) {
  FILE *f = fopen(path, "r");
  char line[4096];
  int found = 0;
  while (f && !found && fgets(line, sizeof line, f)) found = strstr(line, text) != NULL;
  if (f) fclose(f);
  return found;
}

// The loss terms of a metrics line: from "loss" up to the end of "koleo"'s value.
static void loss_terms(const char *line, char *out, size_t n) {
  const char *a = strstr(line, "\"loss\":"), *b = strstr(line, "\"koleo\":");
  const size_t len = a && b > a ? (size_t)(b - a) + 8 + strcspn(b + 8, ",}") : 0;
  snprintf(out, n, "%.*s", (int)len, a ? a : "");
}

// Serves `target` with heads of bottlenecks bn0 and bn1 (0: shared) to a
// prototypes student; terms gets the last step's loss terms.
static void serve(const char *name, const char *target, int bn0, int k0, int bn1, int k1, char *terms, size_t n) {
  char heads[256], trecipe[256], srecipe[256], tlog[256], slog[256], out[256], metrics[300];
  snprintf(heads, sizeof heads, "%s/%s.heads.safetensors", g_dir, name);
  snprintf(trecipe, sizeof trecipe, "%s/%s.teacher.yaml", g_dir, name);
  snprintf(srecipe, sizeof srecipe, "%s/%s.student.yaml", g_dir, name);
  snprintf(tlog, sizeof tlog, "%s/%s.teacher.log", g_dir, name);
  snprintf(slog, sizeof slog, "%s/%s.student.log", g_dir, name);
  snprintf(out, sizeof out, "%s/%s.out", g_dir, name);
  snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", out);
  if (write_heads(heads, bn0, k0, bn1, k1) || write_recipes(trecipe, srecipe, heads, target)) {
    CHECK(0, "%s: heads file and recipes written in %s", name, g_dir);
    terms[0] = '\0';
    return;
  }
  const char *targs[] = {"teacher", "--recipe", trecipe, "--listen", ENDPOINT, "--heartbeat-ms", "100", NULL};
  const pid_t t = proc_start(targs, tlog);
  const char *sargs[] = {"student", "--recipe", srecipe, "--teachers", ENDPOINT, "--out", out,
                         "--heartbeat-ms", "100", "--dead-after-ms", "5000", NULL};
  int teacher_rc;
  const int rc = wait_student(proc_start(sargs, slog), t, 120, &teacher_rc);
  CHECK(teacher_rc == -1, "%s: the teacher serves (it did not exit: status %d)", name, teacher_rc);
  int bad = 0;
  char last[2048];
  const int steps = finite_steps(metrics, &bad, last, sizeof last);
  CHECK(rc == 0 && steps == STEPS && bad == 0,
        "%s (DINO bottleneck %d x %d prototypes, iBOT %s%d x %d): the student exits %d after %d steps (%d expected), "
        "%d non-finite or non-positive loss terms (logs %s, %s)",
        name, bn0, k0, bn1 ? "" : "shared, ", bn1 ? bn1 : bn0, bn1 ? k1 : k0, rc, steps, STEPS, bad, tlog, slog);
  printf("info %s: last step %s\n", name, last);
  loss_terms(last, terms, n);
  char want[64];
  const bool both = strcmp(target, "both") == 0;  // WELCOME gives the features' widths (the demo backbone's)
  snprintf(want, sizeof want, "cls_dim=%d patch_dim=%d", both ? 128 : bn0, both ? 128 : bn1 ? bn1 : bn0);
  CHECK(file_has(slog, want), "%s: the student's WELCOME line announces %s", name, want);
  if (teacher_rc == -1) CHECK(proc_stop(t, SIGTERM, 20) == 0, "%s: the teacher ends cleanly on SIGTERM", name);
}

int main(void) {
  if (access(WEIGHTS, R_OK) || access("/usr/share/datasets/fashion-mnist", R_OK)) {
    CHECK(0, "needs %s and Debian's dataset-fashion-mnist", WEIGHTS);
    return dl_test_summary("teacher_head_widths");
  }
  snprintf(g_dir, sizeof g_dir, "/tmp/distill-head-widths-%d", (int)getpid());
  char cmd[256];
  snprintf(cmd, sizeof cmd, "mkdir -p %s", g_dir);
  if (system(cmd) != 0) return 1;
  char proto[256], shared[256], both[256];
  serve("widths", "prototypes", 384, 40, 256, 24, proto, sizeof proto);
  serve("shared", "prototypes", 384, 40, 0, 0, shared, sizeof shared);
  serve("both", "both", 384, 40, 256, 24, both, sizeof both);
  CHECK(proto[0] && strcmp(proto, both) == 0, "served both kinds, the student's last losses equal those served "
        "prototypes: %s", both);
  const int rc = dl_test_summary("teacher_head_widths");
  if (rc == 0) {
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) printf("could not remove %s\n", g_dir);
  }
  return rc;
}
