// `distill teacher --recipe R` as a process, with student clients in this
// process over loopback TCP:
// - features mode: every served block equals `distill embed` on the same
//   crops, rebuilt from the sample stream, within 1e-5, at two resolutions;
// - prototypes mode: unit-norm bottlenecks, equal to the heads on those features;
// - both: the features and the bottlenecks in one block;
// - a teacher killed with SIGKILL and restarted serves the rest of the stream;
// - two student groups in step share one teacher: it computes each block once.
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/sample_stream.h"
#include "model/safetensors.h"
#include "recipe/recipe.h"
#include "common/timing.h"
#include "teacher/model_io.h"
#include "tests/harness.h"
#include "tests/teacher/proc.h"
#include "transport/student_client.h"

#define WEIGHTS DISTILL_SOURCE_DIR "/models/demo-teacher/backbone.safetensors"
#define HEADS DISTILL_SOURCE_DIR "/models/demo-teacher/heads.safetensors"
#define DATASET "idx:/usr/share/datasets/fashion-mnist,split=test"
#define BLOCK_SIZE 4
#define CROPS 2

static char g_dir[128], g_endpoint[64];
static uint64_t g_stream_hash;  // of the recipes' data and crops sections: the teacher refuses other streams

static void write_recipe(const char *path, const char *target) {
  g_stream_hash = proc_write_demo_recipe(path, target);
}

static pid_t start_teacher(const char *recipe, const char *log) {
  const char *args[] = {"teacher", "--recipe", recipe, "--listen", g_endpoint, "--heartbeat-ms", "100",
                        "--dead-after-ms", "1000", NULL};
  return proc_start(args, log);
}

// patience_ms: how long a silent teacher or an unanswered request is waited
// for before failover or re-request.
static dl_student_client *client(const char *group, uint32_t res, uint64_t blocks, int window, int patience_ms) {
  const char *teachers[1] = {g_endpoint};
  dl_student_config c;
  proc_student_config(&c, teachers, group, g_stream_hash, res, blocks, window, patience_ms);
  dl_err err;
  dl_student_client *s = dl_student_client_create(&c, &err);
  if (!s) printf("client: %s\n", err.msg);
  return s;
}

// The next block within 60 s; 1, or 0 with a message.
static int next_block(dl_student_client *c, dl_target_block *b) {
  dl_err err;
  for (double t0 = dl_now_seconds(); dl_now_seconds() - t0 < 60;) {
    int rc = dl_student_client_next(c, b, 200, &err);
    if (rc == 1) return 1;
    if (rc < 0) return printf("student: %s\n", err.msg), 0;
  }
  return printf("student: no block within 60 s\n"), 0;
}

// `distill embed` on block b's global crops at res, rebuilt from the sample stream.
static int reference(uint64_t b, int res, dl_safetensors *out) {
  dl_dataset *ds;
  dl_err err;
  if (dl_dataset_open(DATASET, &ds, &err)) return printf("%s\n", err.msg), -1;
  dl_crop_spec crops = dl_crop_spec_dinov2();
  crops.global_count = CROPS, crops.global_size = 56, crops.local_count = 0, crops.local_size = 28;
  dl_sample_stream st = {ds, 3, BLOCK_SIZE, crops, 0};
  dl_block blk;
  dl_sample_stream_block(&st, (int64_t)b, res, &blk);
  char in[256], outp[256], log[256];
  snprintf(in, sizeof in, "%s/crops.safetensors", g_dir);
  snprintf(outp, sizeof outp, "%s/embed.safetensors", g_dir);
  snprintf(log, sizeof log, "%s/embed.log", g_dir);
  dl_st_out t = {"images", 4, {BLOCK_SIZE * CROPS, 3, res, res}, blk.global_crops};
  int rc = dl_st_write_f32(in, &t, 1, NULL, 0, &err);
  dl_block_free(&blk);
  dl_dataset_close(ds);
  const char *args[] = {"embed", "--weights", WEIGHTS, "--input", in, "--out", outp, NULL};
  if (rc == 0 && proc_run(args, log, 60) != 0) return printf("distill embed failed (see %s)\n", log), -1;
  return rc == 0 ? dl_st_open(outp, out, &err) : -1;
}

static float *read_tensor(const dl_safetensors *st, const char *name, size_t *n) {
  const dl_st_tensor *t = dl_st_find(st, name);
  if (!t) return NULL;
  float *x = malloc((size_t)t->numel * sizeof(float));
  dl_err err;
  dl_st_read_f32(t, x, &err);
  *n = (size_t)t->numel;
  return x;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
  return m;
}

// Features mode: the block's cls and patch against distill embed.
static void check_features(const dl_target_block *b, int res, const char *what) {
  dl_safetensors ref;
  if (reference(b->block, res, &ref)) {
    CHECK(0, "%s: reference for block %llu", what, (unsigned long long)b->block);
    return;
  }
  size_t nc = 0, np = 0;
  float *cls = read_tensor(&ref, "x_norm_clstoken", &nc), *patch = read_tensor(&ref, "x_norm_patchtokens", &np);
  const dl_tensor *tc = dl_target_block_find(b, "cls"), *tp = dl_target_block_find(b, "patch");
  int shapes = cls && patch && tc && tp && (size_t)tc->rows * tc->cols == nc && (size_t)tp->rows * tp->cols == np;
  double dc = shapes ? max_abs_diff(tc->data, cls, nc) : 1e9, dp = shapes ? max_abs_diff(tp->data, patch, np) : 1e9;
  CHECK(shapes && dc <= 1e-5 && dp <= 1e-5 && b->num_samples == BLOCK_SIZE && b->first_sample == b->block * BLOCK_SIZE,
        "%s: block %llu at %d px: cls %ux%u, patch %ux%u; max |teacher - embed| cls %.2e, patch %.2e (<= 1e-5)", what,
        (unsigned long long)b->block, res, tc ? tc->rows : 0, tc ? tc->cols : 0, tp ? tp->rows : 0, tp ? tp->cols : 0,
        dc, dp);
  free(cls), free(patch);
  dl_st_close(&ref);
}

static void test_features(void) {
  char recipe[256], log[256];
  snprintf(recipe, sizeof recipe, "%s/features.yaml", g_dir);
  snprintf(log, sizeof log, "%s/teacher-features.log", g_dir);
  write_recipe(recipe, "features");
  pid_t t = start_teacher(recipe, log);
  const int res[2] = {56, 70};  // the recipe's size, and another one a request names
  for (int r = 0; r < 2; r++) {
    dl_student_client *c = client(r ? "hires" : "base", (uint32_t)res[r], 3, 2, 1000);
    for (int k = 0; c && k < 3; k++) {
      dl_target_block b;
      if (!next_block(c, &b)) {
        CHECK(0, "features: block %d at %d px arrived", k, res[r]);
        break;
      }
      if (k != 1) check_features(&b, res[r], "features");  // two of three blocks against the reference
      dl_target_block_free(&b);
    }
    if (c) dl_student_client_destroy(c);
  }
  CHECK(proc_stop(t, SIGTERM, 20) == 0, "features: the teacher ends cleanly on SIGTERM");
}

// kind "prototypes": bottlenecks as cls/patch; "both": as cls_proto/patch_proto, features as cls/patch.
static void test_prototypes(const char *kind) {
  const int both = strcmp(kind, "both") == 0;
  char recipe[256], log[256];
  snprintf(recipe, sizeof recipe, "%s/%s.yaml", g_dir, kind);
  snprintf(log, sizeof log, "%s/teacher-%s.log", g_dir, kind);
  write_recipe(recipe, kind);
  pid_t t = start_teacher(recipe, log);
  dl_student_client *c = client("proto", 56, 1, 1, 1000);
  dl_target_block b;
  dl_head dino, ibot;
  dl_err err;
  int loaded = dl_heads_load(HEADS, &dino, &ibot, &err) == 0;
  dl_safetensors ref;
  if (c && loaded && next_block(c, &b) && reference(b.block, 56, &ref) == 0) {
    const dl_tensor *tc = dl_target_block_find(&b, both ? "cls_proto" : "cls");
    const dl_tensor *tp = dl_target_block_find(&b, both ? "patch_proto" : "patch");
    const int W = dino.cfg.out_dim;
    double worst = 0;
    for (int k = 0; tc && tp && k < 2; k++) {
      const dl_tensor *x = k ? tp : tc;
      for (uint32_t i = 0; i < x->rows; i++) {
        double s = 0;
        for (uint32_t j = 0; j < x->cols; j++) s += (double)x->data[(size_t)i * x->cols + j] * x->data[(size_t)i * x->cols + j];
        worst = fmax(worst, fabs(sqrt(s) - 1.0));
      }
    }
    CHECK(tc && tp && (int)tc->cols == W && (int)tp->cols == W && worst <= 1e-5 && b.ntensors == (both ? 4 : 2),
          "%s: %d tensors; %u + %u bottlenecks of %d floats, max |norm - 1| %.2e (<= 1e-5)", kind, b.ntensors,
          tc ? tc->rows : 0,
          tp ? tp->rows : 0, W, worst);
    size_t nc, np;
    float *cls = read_tensor(&ref, "x_norm_clstoken", &nc), *patch = read_tensor(&ref, "x_norm_patchtokens", &np);
    const int D = dino.cfg.in_dim, nrows_c = (int)(nc / D), nrows_p = (int)(np / D);
    float *bc = malloc((size_t)nrows_c * W * sizeof(float)), *bp = malloc((size_t)nrows_p * W * sizeof(float));
    dl_head_ws ws = {0};
    dl_head_forward(&dino, DL_HEAD_BOTTLENECK, cls, nrows_c, bc, &ws);
    dl_head_forward(&ibot, DL_HEAD_BOTTLENECK, patch, nrows_p, bp, &ws);
    const int same = tc && tp && tc->rows == (uint32_t)nrows_c && tp->rows == (uint32_t)nrows_p;
    double dc = same ? max_abs_diff(tc->data, bc, (size_t)nrows_c * W) : 1e9;
    double dp = same ? max_abs_diff(tp->data, bp, (size_t)nrows_p * W) : 1e9;
    CHECK(same && dc <= 1e-5 && dp <= 1e-5, "%s: equal to the heads on distill embed's features: cls %.2e, patch %.2e",
          kind, dc, dp);
    if (both) check_features(&b, 56, "both");
    dl_head_ws_free(&ws);
    free(cls), free(patch), free(bc), free(bp);
    dl_st_close(&ref);
    dl_target_block_free(&b);
  } else {
    CHECK(0, "%s: a block arrived and its reference was computed (%s)", kind, loaded ? "heads ok" : err.msg);
  }
  if (loaded) dl_head_free(&dino), dl_head_free(&ibot);
  if (c) dl_student_client_destroy(c);
  CHECK(proc_stop(t, SIGTERM, 20) == 0, "%s: the teacher ends cleanly on SIGTERM", kind);
}

static void test_sigkill_restart(void) {
  char recipe[256], log[256];
  snprintf(recipe, sizeof recipe, "%s/features.yaml", g_dir);
  snprintf(log, sizeof log, "%s/teacher-restart.log", g_dir);
  pid_t t = start_teacher(recipe, log);
  enum { kBlocks = 10 };
  dl_student_client *c = client("restart", 56, kBlocks, 2, 1000);
  int got = 0, in_order = 1;
  dl_target_block b, last = {0};
  while (c && got < kBlocks && next_block(c, &b)) {
    in_order &= b.block == (uint64_t)got;
    got++;
    if (got == 3) {  // mid-stream: SIGKILL, then the same command again
      CHECK(proc_stop(t, SIGKILL, 10) == 128 + SIGKILL, "restart: teacher killed with SIGKILL after 3 blocks");
      t = start_teacher(recipe, log);
    }
    if (got == kBlocks) last = b;
    else dl_target_block_free(&b);
  }
  dl_student_metrics m = c ? dl_student_client_metrics(c) : (dl_student_metrics){0};
  CHECK(got == kBlocks && in_order && m.teacher_restarts >= 1,
        "restart: %d of %d blocks in order after the restart (teacher restarts seen: %llu)", got, kBlocks,
        (unsigned long long)m.teacher_restarts);
  if (got == kBlocks) check_features(&last, 56, "restart: the last block");
  dl_target_block_free(&last);
  if (c) dl_student_client_destroy(c);
  proc_stop(t, SIGTERM, 20);
}

// Two groups (as a small and a large student would) take turns, so they run
// in step; every block is computed once and served twice.
static void test_two_groups_share(void) {
  char recipe[256], log[256];
  snprintf(recipe, sizeof recipe, "%s/features.yaml", g_dir);
  snprintf(log, sizeof log, "%s/teacher-share.log", g_dir);
  unlink(log);
  pid_t t = start_teacher(recipe, log);
  enum { kBlocks = 8 };
  // The test polls one group at a time, so the other hears no heartbeat
  // meanwhile; on a loaded machine a 1 s patience would declare the teacher
  // dead and re-request, serving a block twice to one group.
  dl_student_client *a = client("small", 56, kBlocks, 2, 30000), *b = client("large", 56, kBlocks, 2, 30000);
  int got[2] = {0, 0};
  for (int k = 0; a && b && k < kBlocks; k++) {
    dl_target_block x;
    if (next_block(a, &x)) got[0]++, dl_target_block_free(&x);
    if (next_block(b, &x)) got[1]++, dl_target_block_free(&x);
  }
  if (a) dl_student_client_destroy(a);
  if (b) dl_student_client_destroy(b);
  int rc = proc_stop(t, SIGTERM, 20);
  const long long computed = proc_find_metric(log, "computed"), served = proc_find_metric(log, "blocks_served");
  CHECK(rc == 0 && got[0] == kBlocks && got[1] == kBlocks && computed == kBlocks && served == 2 * kBlocks,
        "two groups: %d and %d blocks delivered; the teacher computed %lld, served %lld (expected %d and %d)", got[0],
        got[1], computed, served, kBlocks, 2 * kBlocks);
}

int main(void) {
  if (access(WEIGHTS, R_OK) || access(HEADS, R_OK) || access("/usr/share/datasets/fashion-mnist", R_OK)) {
    CHECK(0, "needs %s, %s and Debian's dataset-fashion-mnist", WEIGHTS, HEADS);
    return dl_test_summary("teacher_service");
  }
  snprintf(g_dir, sizeof g_dir, "/tmp/distill-teacher-test-%d", (int)getpid());
  snprintf(g_endpoint, sizeof g_endpoint, "tcp://127.0.0.1:%d", 20000 + (int)(getpid() % 20000));
  char cmd[256];
  snprintf(cmd, sizeof cmd, "mkdir -p %s", g_dir);
  if (system(cmd) != 0) return 1;
  test_features();
  test_prototypes("prototypes");
  test_prototypes("both");
  test_sigkill_restart();
  test_two_groups_share();
  int rc = dl_test_summary("teacher_service");
  if (rc == 0) {
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) printf("could not remove %s\n", g_dir);
  }
  return rc;
}
