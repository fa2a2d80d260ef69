// The teacher heads' last layers, checked between teacher and student
// (WELCOME heads_hash, dl_heads_last_layer_hash):
// - the teacher's loader and the student's give the same hash for one file;
// - a shared-head file (dino_head.* only) hashes like a file whose ibot_head.*
//   equals dino_head.*, on both sides, and the student loads it;
// - `distill teacher --recipe` with prototypes targets: a student with the
//   same heads gets blocks; one whose ibot_head.last_layer.weight_v differs in
//   one value is refused at WELCOME with one line naming both hashes and its
//   file; a features teacher (heads_hash 0) serves that student.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/timing.h"
#include "model/safetensors.h"
#include "recipe/recipe.h"
#include "student/student_model.h"
#include "teacher/model_io.h"
#include "tests/harness.h"
#include "tests/teacher/proc.h"
#include "transport/student_client.h"

#define WEIGHTS DISTILL_SOURCE_DIR "/models/demo-teacher/backbone.safetensors"
#define HEADS DISTILL_SOURCE_DIR "/models/demo-teacher/heads.safetensors"

static char g_dir[128], g_endpoint[64];
static uint64_t g_stream_hash;

// The student's hash of a heads file (0 when it does not load).
static uint64_t student_hash(const char *path) {
  dl_head h[2];
  dl_err err;
  if (dl_student_load_teacher_heads(path, h, &err)) return printf("student heads: %s\n", err.msg), 0;
  const uint64_t x = dl_heads_last_layer_hash(&h[0], &h[1]);
  dl_head_free(&h[0]), dl_head_free(&h[1]);
  return x;
}

static uint64_t teacher_hash(const char *path) {
  dl_head dino, ibot;
  dl_err err;
  if (dl_heads_load(path, &dino, &ibot, &err)) return printf("teacher heads: %s\n", err.msg), 0;
  const uint64_t x = dl_heads_last_layer_hash(&dino, &ibot);
  dl_head_free(&dino), dl_head_free(&ibot);
  return x;
}

// Writes `changed` (one value of ibot_head.last_layer.weight_v altered),
// `shared` (dino_head.* only) and `twice` (ibot_head.* = dino_head.*).
static int write_files(const char *changed, const char *shared, const char *twice) {
  dl_head dino, ibot;
  dl_err err;
  if (dl_heads_load(HEADS, &dino, &ibot, &err)) return printf("%s\n", err.msg), -1;
  int rc = dl_heads_save(&dino, dino.params, &dino, dino.params, twice, &err);
  dl_st_out *out = calloc((size_t)dino.layout.count, sizeof *out);
  char(*names)[DL_NAME_MAX + 16] = calloc((size_t)dino.layout.count, sizeof *names);
  for (int i = 0; i < dino.layout.count; i++) {
    const dl_param_entry *e = &dino.layout.entries[i];
    snprintf(names[i], sizeof names[i], "dino_head.%s", e->name);
    out[i].name = names[i];
    out[i].ndim = e->ndim;
    for (int d = 0; d < e->ndim; d++) out[i].shape[d] = e->shape[d];
    out[i].data = dino.params + e->offset;
  }
  if (rc == 0) rc = dl_st_write_f32(shared, out, dino.layout.count, NULL, 0, &err);
  free(out), free(names);
  float *v = dl_head_param(&ibot, ibot.last_v);
  v[17] += 1e-3f;
  if (rc == 0) rc = dl_heads_save(&dino, dino.params, &ibot, ibot.params, changed, &err);
  if (rc) printf("%s\n", err.msg);
  dl_head_free(&dino), dl_head_free(&ibot);
  return rc;
}

static void test_hashes(const char *changed, const char *shared, const char *twice) {
  const uint64_t s = student_hash(HEADS), t = teacher_hash(HEADS);
  CHECK(s && s == t, "demo heads: student's hash %016llx, teacher's %016llx (equal, nonzero)", (unsigned long long)s,
        (unsigned long long)t);
  const uint64_t c = student_hash(changed);
  CHECK(c && c != s && c == teacher_hash(changed),
        "one value of ibot_head.last_layer.weight_v changed: %016llx on both sides, differs from %016llx",
        (unsigned long long)c, (unsigned long long)s);
  const uint64_t sh = student_hash(shared), tw = student_hash(twice), tsh = teacher_hash(shared),
                 ttw = teacher_hash(twice);
  CHECK(sh && sh == tw && sh == tsh && sh == ttw && sh != s,
        "shared head (dino_head.* only) loads for the student: %016llx; ibot_head.* = dino_head.*: %016llx; "
        "teacher: %016llx and %016llx (all equal, and not the demo's %016llx)",
        (unsigned long long)sh, (unsigned long long)tw, (unsigned long long)tsh, (unsigned long long)ttw,
        (unsigned long long)s);
  dl_head dino, ibot;
  dl_err err;
  const int none = dl_heads_load(HEADS, &dino, &ibot, &err) == 0;
  if (none) {
    dl_head plain;
    dl_head_config pc = {.in_dim = 8, .hidden_dim = 8, .out_dim = 8, .nlayers = 2, .prototypes = 0};
    dl_head_init(&plain, &pc);
    CHECK(dl_heads_last_layer_hash(&dino, &plain) == 0 && dl_heads_last_layer_hash(&plain, &ibot) == 0,
          "a head without a last layer hashes to 0 (nothing to compare)");
    dl_head_free(&plain), dl_head_free(&dino), dl_head_free(&ibot);
  }
}

static void write_recipe(const char *path, const char *target) {
  g_stream_hash = proc_write_demo_recipe(path, target);
}

// A student with heads_hash/heads_path asks for one block: 1 got it, -1 fatal
// (msg, refused set), 0 nothing within 60 s.
static int one_block(const char *group, uint64_t heads_hash, const char *heads_path, char *msg, size_t n,
                     bool *refused) {
  const char *teachers[1] = {g_endpoint};
  dl_student_config c;
  proc_student_config(&c, teachers, group, g_stream_hash, 56, 1, 1, 5000);
  c.heads_hash = heads_hash;
  c.heads_path = heads_path;
  dl_err err;
  msg[0] = 0;
  *refused = false;
  dl_student_client *s = dl_student_client_create(&c, &err);
  if (!s) return snprintf(msg, n, "client: %.400s", err.msg), -1;
  int rc = 0;
  for (double t0 = dl_now_seconds(); rc == 0 && dl_now_seconds() - t0 < 60;) {
    dl_target_block b;
    rc = dl_student_client_next(s, &b, 200, &err);
    if (rc == 1) dl_target_block_free(&b);
    if (rc < 0) snprintf(msg, n, "%s", err.msg), *refused = dl_student_client_refused(s);
  }
  dl_student_client_destroy(s);
  return rc;
}

static void test_service(const char *target, uint64_t good, uint64_t bad, const char *bad_path) {
  char recipe[256], log[256], msg[512];
  snprintf(recipe, sizeof recipe, "%s/%s.yaml", g_dir, target);
  snprintf(log, sizeof log, "%s/teacher-%s.log", g_dir, target);
  write_recipe(recipe, target);
  const char *args[] = {"teacher", "--recipe", recipe, "--listen", g_endpoint, "--heartbeat-ms", "100", NULL};
  pid_t t = proc_start(args, log);
  bool refused;
  const int features = strcmp(target, "features") == 0;
  if (!features) {
    int rc = one_block("same", good, HEADS, msg, sizeof msg, &refused);
    CHECK(rc == 1, "%s teacher, student with the same heads (%016llx): a block arrived%s%s", target,
          (unsigned long long)good, rc == 1 ? "" : ": ", msg);
    char want[512];
    snprintf(want, sizeof want, "the teacher's heads (last layers %016llx) differ from train.teacher_heads %s (%016llx)",
             (unsigned long long)good, bad_path, (unsigned long long)bad);
    rc = one_block("other", bad, bad_path, msg, sizeof msg, &refused);
    CHECK(rc == -1 && refused && strcmp(msg, want) == 0 && !strchr(msg, '\n'),
          "%s teacher, student with one changed ibot_head.last_layer.weight_v value: refused at WELCOME (refusal "
          "%s) with the line \"%s\"",
          target, refused ? "yes" : "no", msg);
  } else {
    int rc = one_block("any", bad, bad_path, msg, sizeof msg, &refused);
    CHECK(rc == 1, "features teacher (heads_hash 0) serves a student with any heads (%016llx): %s",
          (unsigned long long)bad, rc == 1 ? "a block arrived" : msg);
  }
  CHECK(proc_stop(t, SIGTERM, 20) == 0, "%s: the teacher ends cleanly on SIGTERM", target);
}

int main(void) {
  if (access(WEIGHTS, R_OK) || access(HEADS, R_OK) || access("/usr/share/datasets/fashion-mnist", R_OK)) {
    CHECK(0, "needs %s, %s and Debian's dataset-fashion-mnist", WEIGHTS, HEADS);
    return dl_test_summary("teacher_heads_hash");
  }
  snprintf(g_dir, sizeof g_dir, "/tmp/distill-heads-test-%d", (int)getpid());
  snprintf(g_endpoint, sizeof g_endpoint, "tcp://127.0.0.1:%d", 40000 + (int)(getpid() % 20000));
  char cmd[256], changed[256], shared[256], twice[256];
  snprintf(cmd, sizeof cmd, "mkdir -p %s", g_dir);
  if (system(cmd) != 0) return 1;
  snprintf(changed, sizeof changed, "%s/changed.safetensors", g_dir);
  snprintf(shared, sizeof shared, "%s/shared.safetensors", g_dir);
  snprintf(twice, sizeof twice, "%s/twice.safetensors", g_dir);
  if (write_files(changed, shared, twice)) {
    CHECK(0, "test heads files written in %s", g_dir);
    return dl_test_summary("teacher_heads_hash");
  }
  test_hashes(changed, shared, twice);
  const uint64_t good = student_hash(HEADS), bad = student_hash(changed);
  test_service("prototypes", good, bad, changed);
  test_service("both", good, bad, changed);
  test_service("features", good, bad, changed);
  int rc = dl_test_summary("teacher_heads_hash");
  if (rc == 0) {
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) printf("could not remove %s\n", g_dir);
  }
  return rc;
}
