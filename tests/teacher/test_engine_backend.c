// The teacher engine's forward backend hook (teacher/engine.h, the way
// `distill-gpu teacher --device cuda` puts the forward passes on the GPU),
// with a CPU stand-in backend that wraps dl_vit_forward and dl_head_forward
// and counts its calls: every forward pass and both heads' bottlenecks go
// through it, and its block equals the CPU engine's bit for bit (the demo
// teacher, target both, three forward passes per block); a start that fails
// refuses the model with its message; a forward pass that fails fails the
// block with its message; stop runs once per engine.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "teacher/teacher_model.h"
#include "tests/harness.h"
#include "tests/teacher/proc.h"

#define SRC DISTILL_SOURCE_DIR

// Touched on the engine's compute thread only, read after the engine stopped.
static int g_starts, g_forwards, g_images, g_bottleneck_rows[2], g_stops, g_fail_start, g_fail_forward;

typedef struct stand_in {
  const dl_vit *vit;
  const dl_head *heads[2];
  dl_vit_workspace ws;
  dl_head_ws head_ws;
} stand_in;

static void *start(const dl_vit *vit, const dl_head *dino, const dl_head *ibot, dl_err *err) {
  g_starts++;
  if (g_fail_start) {
    dl_fail(err, "stand-in: no device");
    return NULL;
  }
  stand_in *s = calloc(1, sizeof *s);
  *s = (stand_in){.vit = vit, .heads = {dino, ibot}};
  return s;
}

static int forward(void *ctx, const float *images, int n, int res, dl_vit_outputs *out, dl_err *err) {
  stand_in *s = ctx;
  g_forwards++;
  g_images += n;
  if (g_fail_forward) return dl_fail(err, "stand-in: forward failed");
  return dl_vit_forward(s->vit, images, n, res, res, NULL, &s->ws, out, err);
}

static int bottleneck(void *ctx, int head, const float *x, int m, float *out, dl_err *err) {
  (void)err;
  stand_in *s = ctx;
  g_bottleneck_rows[head] += m;
  dl_head_forward(s->heads[head], DL_HEAD_BOTTLENECK, x, m, out, &s->head_ws);
  return 0;
}

static void stop(void *ctx) {
  stand_in *s = ctx;
  g_stops++;
  dl_vit_workspace_free(&s->ws);
  dl_head_ws_free(&s->head_ws);
  free(s);
}

static const dl_forward_backend kStandIn = {"stand-in", start, forward, bottleneck, stop};


static int same_blocks(const dl_target_block *a, const dl_target_block *b) {
  if (a->ntensors != b->ntensors || a->num_samples != b->num_samples) return 0;
  for (int i = 0; i < a->ntensors; i++) {
    const dl_tensor *x = &a->tensors[i], *y = dl_target_block_find(b, x->name);
    if (!y || x->rows != y->rows || x->cols != y->cols ||
        memcmp(x->data, y->data, (size_t)x->rows * x->cols * sizeof(float)))
      return 0;
  }
  return 1;
}

int main(void) {
  dl_recipe r;
  dl_err err;
  if (dl_recipe_load(SRC "/recipes/demo-serve.yaml", &r, &err)) {
    printf("FAIL %s\n", err.msg);
    return 1;
  }
  snprintf(r.dataset, sizeof r.dataset, "idx:/usr/share/datasets/fashion-mnist,split=test");  // smaller to open
  r.teacher.batch = 24;  // a block's 64 crops in three forward passes
  r.teacher.workers = 1;
  dl_target_block cpu = {0}, hooked = {0};
  int rc = proc_one_block(&r, NULL, &cpu, &err);
  CHECK(rc == 0 && cpu.ntensors == 4, "CPU engine: block 3 with %d tensors%s%s", cpu.ntensors, rc ? ": " : "",
        rc ? err.msg : "");
  rc = proc_one_block(&r, &kStandIn, &hooked, &err);
  const int images = (int)cpu.num_samples * r.crops.global_count;
  const dl_tensor *patch = dl_target_block_find(&cpu, "patch");
  CHECK(rc == 0 && g_starts == 1 && g_stops == 1 && g_forwards == 3 && g_images == images,
        "backend engine: started and stopped once, %d forward passes over %d images (of %d)", g_forwards, g_images,
        images);
  CHECK(patch && g_bottleneck_rows[0] == images && g_bottleneck_rows[1] == (int)patch->rows,
        "the DINO head's bottleneck over %d CLS rows and the iBOT head's over %d patch rows through the backend",
        g_bottleneck_rows[0], g_bottleneck_rows[1]);
  CHECK(rc == 0 && same_blocks(&cpu, &hooked), "its block (cls, patch, cls_proto, patch_proto) equals the CPU's");
  dl_target_block_free(&hooked);

  g_fail_forward = 1;
  dl_target_block failed = {0};
  rc = proc_one_block(&r, &kStandIn, &failed, &err);
  CHECK(rc == -1 && strstr(err.msg, "stand-in: forward failed") && failed.ntensors == 0 && g_stops == 2,
        "a failing forward pass fails the block: %s", rc ? err.msg : "(computed)");
  g_fail_forward = 0;

  g_fail_start = 1;
  dl_teacher_model m;
  rc = dl_teacher_model_open(&r, &kStandIn, &m, &err);
  CHECK(rc == -1 && strstr(err.msg, "stand-in: no device") && g_stops == 2,
        "a failing start refuses the model: %s", rc ? err.msg : "(opened)");
  dl_target_block_free(&cpu);
  return dl_test_summary("teacher_engine_backend");
}
