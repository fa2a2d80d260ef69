// Teacher-side pieces without the network: model files (backbone and heads
// round trips, refusals), the recipe's teacher/pretrain sections, and the
// self-distillation step (masks, EMA teacher, mask_token training).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/safetensors.h"
#include "recipe/recipe.h"
#include "teacher/model_io.h"
#include "teacher/pretrain.h"
#include "tests/harness.h"

static const dl_vit_config kTiny = {.patch = 14, .dim = 64, .depth = 2, .heads = 1, .ffn_hidden = 128,
                                    .pos_grid = 2, .ffn = DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
static const dl_head_config kHead = {64, 96, 32, 3, 50};

static void test_files(const char *dir) {
  char wpath[256], hpath[256];
  snprintf(wpath, sizeof wpath, "%s/b.safetensors", dir);
  snprintf(hpath, sizeof hpath, "%s/h.safetensors", dir);
  dl_vit vit, back;
  dl_vit_init_random(&vit, &kTiny, 0.1f, 5);
  dl_err err;
  int rc = dl_vit_save(&vit, vit.params, wpath, &err);
  dl_vit_overrides ov = {1, -1};
  if (rc == 0) rc = dl_vit_load(wpath, &ov, &back, NULL, &err);
  int same = rc == 0 && back.cfg.dim == 64 && back.cfg.depth == 2 && back.cfg.pos_grid == 2 &&
             back.layout.total == vit.layout.total && memcmp(back.params, vit.params, vit.layout.total * 4) == 0;
  CHECK(same, "backbone saved in the official names loads back bit-identical (%s)", rc ? err.msg : "ok");
  if (rc == 0) dl_vit_free(&back);
  const float *ls = dl_vit_param(&vit, dl_vit_block_index(&kTiny, 0, DL_P_LS1));
  const float *nw = dl_vit_param(&vit, dl_vit_block_index(&kTiny, 1, DL_P_NORM2_W));
  CHECK(ls[0] == 0.1f && nw[3] == 1.0f, "init: LayerScale %g, norm weight %g", ls[0], nw[3]);

  dl_head h[2], l[2];
  for (int k = 0; k < 2; k++) dl_head_init(&h[k], &kHead), dl_head_init_random(&h[k], 9 + k);
  rc = dl_heads_save(&h[0], h[0].params, &h[1], h[1].params, hpath, &err);
  if (rc == 0) rc = dl_heads_load(hpath, &l[0], &l[1], &err);
  same = rc == 0;
  for (int k = 0; same && k < 2; k++)
    same = l[k].cfg.in_dim == 64 && l[k].cfg.hidden_dim == 96 && l[k].cfg.out_dim == 32 && l[k].cfg.nlayers == 3 &&
           l[k].cfg.prototypes == 50 && memcmp(l[k].params, h[k].params, h[k].layout.total * 4) == 0;
  CHECK(same, "heads round trip: shapes inferred, parameters identical (%s)", rc ? err.msg : "ok");
  if (rc == 0) dl_head_free(&l[0]), dl_head_free(&l[1]);
  // A heads file with one foreign tensor, and a backbone file as heads.
  const dl_st_out extra[] = {{"dino_head.mlp.0.weight", 2, {96, 64}, h[0].params},
                             {"ibot_head.mlp.0.weight", 2, {96, 64}, h[0].params}};
  dl_st_write_f32(hpath, extra, 2, NULL, 0, &err);
  rc = dl_heads_load(hpath, &l[0], &l[1], &err);
  CHECK(rc == -1 && strstr(err.msg, "missing tensor"), "an incomplete heads file is refused: %s", err.msg);
  // Only a DINO head, plus a foreign tensor and a stray one under the prefix.
  dl_st_out one[16];
  char names[16][80];
  int n = 0;
  for (int i = 0; i < h[0].layout.count; i++, n++) {
    const dl_param_entry *e = &h[0].layout.entries[i];
    snprintf(names[n], sizeof names[n], "dino_head.%s", e->name);
    one[n] = (dl_st_out){names[n], e->ndim, {e->shape[0], e->shape[1]}, h[0].params + e->offset};
  }
  one[n++] = (dl_st_out){"blocks.0.norm1.weight", 1, {64}, h[0].params};
  dl_st_write_f32(hpath, one, n, NULL, 0, &err);
  rc = dl_heads_load(hpath, &l[0], &l[1], &err);
  CHECK(rc == 0 && memcmp(l[1].params, h[0].params, h[0].layout.total * 4) == 0,
        "without ibot_head.* the iBOT head is the DINO head; other tensors ignored (%s)", rc ? err.msg : "ok");
  if (rc == 0) dl_head_free(&l[0]), dl_head_free(&l[1]);
  one[n++] = (dl_st_out){"dino_head.mlp.9.weight", 1, {64}, h[0].params};
  dl_st_write_f32(hpath, one, n, NULL, 0, &err);
  rc = dl_heads_load(hpath, &l[0], &l[1], &err);
  CHECK(rc == -1 && strstr(err.msg, "unknown tensor dino_head.mlp.9.weight"), "a stray head tensor is refused: %s",
        err.msg);
  rc = dl_heads_load(wpath, &l[0], &l[1], &err);
  CHECK(rc == -1 && strstr(err.msg, "dino_head.mlp.0.weight"), "a backbone is not a heads file: %s", err.msg);
  for (int k = 0; k < 2; k++) dl_head_free(&h[k]);
  dl_vit_free(&vit);
}

static int parse(const char *text, dl_recipe *r, dl_err *err) {
  return dl_recipe_parse("r.yaml", (const uint8_t *)text, strlen(text), r, err);
}

static void test_recipe(void) {
  dl_recipe r;
  dl_err err;
  int rc = parse("data:\n  dataset: idx:/x\nteacher:\n  weights: w.st\n  heads: h.st\n  target: prototypes\n"
                 "  batch: 8\n  codec: f16,patch=int8\npretrain:\n  dim: 96\n  heads: 3\n  mask_ratio: [0.2, 0.4]\n"
                 "  lr: 2.0e-4\n  steps: 50\n  warmup_steps: 5\n",
                 &r, &err);
  CHECK(rc == 0 && r.teacher.present && r.teacher.target == DL_TARGET_PROTOTYPES && r.teacher.batch == 8 &&
            strcmp(r.teacher.codec, "f16,patch=int8") == 0 && r.teacher.cache_mb == 1024 && r.pretrain.dim == 96 &&
            r.pretrain.mask_ratio_lo == 0.2 && r.pretrain.mask_ratio_hi == 0.4 && r.pretrain.lr == 2e-4 &&
            r.pretrain.steps == 50,
        "teacher and pretrain sections parse, defaults kept (%s)", rc ? err.msg : "ok");
  const char *bad[][2] = {
      {"data:\n  dataset: idx:/x\nteacher:\n  weights: w\n  batsh: 4\n", "r.yaml:5: unknown key 'batsh' in section teacher"},
      {"data:\n  dataset: idx:/x\nteacher:\n  heads: h\n", "r.yaml:4: teacher.weights is required"},
      {"data:\n  dataset: idx:/x\nteacher:\n  weights: w\n  target: prototypes\n", "teacher.heads is required"},
      {"data:\n  dataset: idx:/x\nteacher:\n  weights: w\n  target: logits\n", "r.yaml:5: teacher.target: expected features, prototypes or both"},
      {"data:\n  dataset: idx:/x\npretrain:\n  batch: 1\n", "r.yaml:4: pretrain.batch: expected an integer in [2, 65536], got '1'"},
      {"data:\n  dataset: idx:/x\npretrain:\n  lr: fast\n", "r.yaml:4: pretrain.lr: expected a number"},
      {"data:\n  dataset: idx:/x\npretrain:\n  mask_ratio: [0.5, 0.2]\n", "LOW above HIGH"},
      {"data:\n  dataset: idx:/x\npretrain:\n  dim: 100\n  heads: 3\n", "pretrain.dim must be a multiple of pretrain.heads"},
      {"data:\n  dataset: idx:/x\npretrain:\n  steps: 5\n  steps: 6\n", "r.yaml:5: key 'steps' repeated in pretrain"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    rc = parse(bad[i][0], &r, &err);
    CHECK(rc == -1 && strstr(err.msg, bad[i][1]), "refused: %s", rc ? err.msg : "(accepted)");
  }
}

static void test_pretrain_steps(void) {
  dl_vit vit;
  dl_vit_init_random(&vit, &kTiny, 0.1f, 3);
  dl_pretrain_config c = {.batch = 4, .global_crops = 2, .local_crops = 2, .global_size = 28, .local_size = 14,
                          .dino_head = kHead, .ibot_head = kHead, .weights = dl_loss_weights_default(),
                          .student_temp = 0.1f, .sk_iters = 3, .mask_probability = 0.5f, .mask_ratio_lo = 0.25f,
                          .mask_ratio_hi = 0.5f, .adamw = dl_adamw_config_default(), .seed = 1};
  c.sched.lr = (dl_schedule){.base = 1e-3, .final = 1e-3, .total = 100};
  c.sched.last_layer_lr = c.sched.lr;
  c.sched.wd = dl_schedule_constant(0.04);
  c.sched.momentum = dl_schedule_constant(0.9);
  c.sched.teacher_temp = dl_schedule_constant(0.07);
  dl_pretrainer t;
  dl_err err;
  int rc = dl_pretrainer_init(&t, &vit, &c, &err);
  CHECK(rc == 0, "pretrainer init (%s)", rc ? err.msg : "ok");
  if (rc) return dl_vit_free(&vit);
  const size_t ng = 2 * 4 * 3 * 28 * 28, nl = 2 * 4 * 3 * 14 * 14;
  float *g = malloc(ng * sizeof(float)), *l = malloc(nl * sizeof(float));
  for (size_t i = 0; i < ng; i++) g[i] = sinf(0.37f * (float)i);
  for (size_t i = 0; i < nl; i++) l[i] = cosf(0.11f * (float)i);
  const int mask_index = dl_vit_global_index(DL_P_MASK);
  const float mask0 = dl_vit_param(&vit, mask_index)[0];
  const size_t pos_off = vit.layout.entries[dl_vit_global_index(DL_P_POS)].offset;
  int finite = 1, masks_ok = 1;
  float ema_err = 0;
  for (int s = 0; s < 4 && rc == 0; s++) {
    float ema_before = t.mods[0].ema[pos_off];
    dl_pretrain_report r;
    rc = dl_pretrainer_step(&t, g, l, &r, &err);
    finite &= isfinite(r.dino) && isfinite(r.ibot) && isfinite(r.koleo) && r.dino > 0 && r.ibot > 0;
    // 4 of 8 global crops masked, each with 1 or 2 of 4 patches (ratios 0.25..0.5).
    int crops = 0, patches = 0;
    for (int i = 0; i < 8; i++) {
      int n = 0;
      for (int p = 0; p < 4; p++) n += t.masks[i * 4 + p];
      crops += n > 0, patches += n;
      masks_ok &= n <= 2;
    }
    masks_ok &= crops == 4 && patches == r.masked;
    const float want = 0.9f * ema_before + 0.1f * vit.params[pos_off];
    ema_err = fmaxf(ema_err, fabsf(t.mods[0].ema[pos_off] - want));
    printf("     step %d: dino %.4f ibot %.4f koleo %.4f masked %d\n", s, r.dino, r.ibot, r.koleo, r.masked);
  }
  CHECK(rc == 0 && finite, "four steps with finite, positive DINO and iBOT losses");
  CHECK(masks_ok, "masks: half of the global crops, 1-2 of 4 patches each, iBOT over exactly the masked patches");
  CHECK(ema_err < 1e-6f, "the teacher is the EMA of the student (max error %.2e)", ema_err);
  CHECK(dl_vit_param(&vit, mask_index)[0] != mask0, "mask_token is trained (%g -> %g)", mask0,
        dl_vit_param(&vit, mask_index)[0]);
  free(g), free(l);
  dl_pretrainer_free(&t);
  dl_vit_free(&vit);
}

int main(void) {
  char dir[64];
  snprintf(dir, sizeof dir, "/tmp/distill-teacher-unit-%d", (int)getpid());
  char cmd[128];
  snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
  if (system(cmd) != 0) return 1;
  test_files(dir);
  test_recipe();
  test_pretrain_steps();
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) printf("could not remove %s\n", dir);
  return dl_test_summary("teacher_unit");
}
