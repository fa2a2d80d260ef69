// The recipe's student sections: the S/B/L recipes load with the paper's
// numbers (and their ImageNet-1k variants with its length) and their presets,
// and every kind of bad value is refused with FILE:LINE and the key's full
// name, the high-resolution phase's keys included.
#include <math.h>
#include <string.h>

#include "recipe/recipe.h"
#include "student/student_model.h"
#include "tests/harness.h"

static int parse(const char *text, dl_recipe *r, dl_err *err) {
  return dl_recipe_parse("r.yaml", (const uint8_t *)text, strlen(text), r, err);
}

// The paper's recipes (Table 16 of arXiv 2304.07193) and their ImageNet-1k
// variants: shapes, the main phase's numbers and the high-resolution phase.
static void check_family(void) {
  const struct { const char *size; int dim, depth, heads, hidden; } want[] = {
      {"s", 384, 12, 6, 1536}, {"b", 768, 12, 12, 3072}, {"l", 1024, 24, 16, 4096}};
  const struct { const char *suffix; long steps, warmup; } kinds[] = {{"", 625000, 100000}, {"-in1k", 125000, 12500}};
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 2; k++) {
      char path[512], file[32];
      snprintf(file, sizeof file, "vit%s14%s", want[i].size, kinds[k].suffix);
      snprintf(path, sizeof path, "%s/recipes/%s.yaml", DISTILL_SOURCE_DIR, file);
      dl_recipe r;
      dl_err err;
      int rc = dl_recipe_load(path, &r, &err);
      CHECK(rc == 0, "%s loads%s%s", file, rc ? ": " : "", rc ? err.msg : "");
      if (rc) continue;
      const dl_recipe_model *m = &r.model;
      CHECK(m->dim == want[i].dim && m->depth == want[i].depth && m->heads == want[i].heads &&
                m->ffn_hidden == want[i].hidden && !m->swiglu && m->layerscale == 1e-5f && m->drop_path == 0.0f,
            "%s: %d wide, %d blocks, %d heads, MLP %d, LayerScale 1e-5, drop path 0", file, m->dim, m->depth,
            m->heads, m->ffn_hidden);
      dl_train_config tc;
      dl_student_train_config(&r, 1, r.crops.global_size, NULL, m->dim, &tc);
      CHECK(r.train.batch == 2048 && r.train.steps == kinds[k].steps && r.optim.warmup == kinds[k].warmup &&
                tc.sched.lr.base == 1e-3 && tc.sched.lr.final == 1e-6 && tc.sched.wd.base == 0.04 &&
                tc.sched.wd.final == 0.2 && tc.sched.momentum.base == 0.994 && tc.sched.momentum.final == 1.0 &&
                tc.adamw.layer_decay == 1.0f && tc.adamw.clip == 3.0f && tc.adamw.patch_embed_lr_mult == 0.2f,
            "%s: batch 2048, %ld steps, %ld warmup, peak lr %g (Table 16's 1e-3, not scaled again), wd 0.04 -> 0.2, "
            "EMA 0.994 -> 1, layer decay %g, clip 3, patch-embed lr x0.2",
            file, r.train.steps, r.optim.warmup, tc.sched.lr.base, tc.adamw.layer_decay);
      CHECK(r.hires.steps == 10000 && r.hires.size == 518 && dl_student_total_steps(&r) == kinds[k].steps + 10000,
            "%s: then 10,000 steps at 518 px (%ld in all)", file, dl_student_total_steps(&r));
      int blocks;
      CHECK(dl_recipe_rank_blocks(&r, 8, &blocks, &err) == 0 && blocks == 8,
            "%s: 8 ranks take 8 blocks of 32 each per step", file);
    }
}

static void check_refusals(void) {
  const char *base = "data:\n  dataset: folder:/x\n  block_size: 4\nmodel:\n  size: small\ntrain:\n  batch: 8\n  steps: 10\n";
  struct { const char *extra, *want; } bad[] = {
      {"optim:\n  lr: fast\n", "r.yaml:10: optim.lr: 'fast' is not a number"},
      {"optim:\n  clip: -1\n", "r.yaml:10: optim.clip: -1 is outside [0, 1e+06]"},
      {"optim:\n  wramup: 3\n", "r.yaml:10: unknown key 'wramup' in section optim"},
      {"model:\n  size: huge\n", "r.yaml:9: key 'model' repeated in the recipe"},
      {"ema:\n  momentum: 1.5\n", "r.yaml:10: ema.momentum: 1.5 is outside [0, 1]"},
      {"hires:\n  steps: 2\n  size: 500\n", "r.yaml: hires.size 500 is not a multiple of model.patch 14"},
      {"hires:\n  steps: 2\n  local_size: 50\n", "r.yaml: hires.local_size 50 is not a multiple of model.patch 14"},
      {"hires:\n  steps: 4\n  warmup: 5\n", "r.yaml: hires.warmup 5 exceeds hires.steps 4"},
      {"hires:\n  lr: fast\n", "r.yaml:10: hires.lr: 'fast' is not a number"},
      {"hires:\n  min_lr: -1\n", "r.yaml:10: hires.min_lr: -1 is outside [0, 10]"},
      {"hires:\n  warmup: -2\n", "r.yaml:10: hires.warmup: expected an integer in [0, 1099511627776], got '-2'"},
      {"hires:\n  momentum: 1.5\n", "r.yaml:10: hires.momentum: 1.5 is outside [0, 1]"},
      {"hires:\n  momentum_end: x\n", "r.yaml:10: hires.momentum_end: 'x' is not a number"},
      {"hires:\n  weight_decay: 11\n", "r.yaml:10: hires.weight_decay: 11 is outside [0, 10]"},
      {"hires:\n  teacher_temp: 0\n", "r.yaml:10: hires.teacher_temp: 0 is outside [0.0001, 10]"},
      {"hires:\n  local_size: 4\n", "r.yaml:10: hires.local_size: expected an integer in [8, 2048], got '4'"},
      {"hires:\n  lrr: 1\n", "r.yaml:10: unknown key 'lrr' in section hires (steps, size, local_size, lr, min_lr"},
      {"checkpoint:\n  keep: 0\n", "r.yaml:10: checkpoint.keep: expected an integer in [1, 100000], got '0'"},
      {"train2:\n  x: 1\n", "r.yaml:9: unknown section 'train2'"},
      {"eval:\n  test: idx:/t\n", "r.yaml: eval needs train (the labelled set k-NN votes from) and test"},
      {"eval:\n  train: idx:/a\n  test: idx:/t\n  size: 50\n", "r.yaml: eval.size 50 is not a multiple of model.patch 14"},
      {"eval:\n  knn_k: 0\n", "r.yaml:10: eval.knn_k: expected an integer in [1, 100], got '0'"},
      {"eval:\n  linear: maybe\n", "r.yaml:10: eval.linear:"},
      {"eval:\n  every_exports: 0\n", "r.yaml:10: eval.every_exports: expected an integer in [1, "},
      {"eval:\n  knn: 20\n", "r.yaml:10: unknown key 'knn' in section eval (train, test, limit_train"},
      {"eval:\n  train: idx:/a\n  test: idx:/t\n  limit_train: 5\n", "r.yaml: eval.limit_train 5 is below eval.knn_k 20"},
      {"checkpoint:\n  best_metric: linear_top1\n", "r.yaml: checkpoint.best_metric linear_top1 needs an eval section"},
      {"checkpoint:\n  best_metric: loss\n", "r.yaml:10: checkpoint.best_metric: expected one of knn_top1, linear_top1"},
      {"checkpoint:\n  keep_best: -1\n", "r.yaml:10: checkpoint.keep_best: expected an integer in [0, 100000]"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char text[1024];
    snprintf(text, sizeof text, "%s%s", base, bad[i].extra);
    dl_recipe r;
    dl_err err = {{0}};
    int rc = parse(text, &r, &err);
    CHECK(rc == -1 && strncmp(err.msg, bad[i].want, strlen(bad[i].want)) == 0, "refused: %s", err.msg);
  }
  struct { const char *text, *want; } whole[] = {
      {"data:\n  dataset: folder:/x\nmodel:\n  size: enormous\n",
       "r.yaml:4: model.size: expected one of small, base, large, giant, got 'enormous'"},
      {"data:\n  dataset: folder:/x\n  block_size: 3\nmodel:\n  size: small\ntrain:\n  batch: 8\n  steps: 2\n",
       "r.yaml: train.batch 8 is not a multiple of data.block_size 3"},
      {"data:\n  dataset: folder:/x\nmodel:\n  size: small\ntrain:\n  targets: prototypes\n  batch: 32\n  steps: 2\n",
       "r.yaml: train.targets prototypes needs train.teacher_heads"},
      {"data:\n  dataset: folder:/x\nmodel:\n  size: small\n  drop_path: 0.1\n",
       "r.yaml:5: model.drop_path: only 0 is supported"},
      {"data:\n  dataset: folder:/x\nmodel:\n  dim: 30\n  depth: 2\n  heads: 4\n  ffn_hidden: 8\ntrain:\n  batch: 32\n  steps: 1\n",
       "r.yaml: model.dim 30 is not a multiple of model.heads 4"},
  };
  for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
    dl_recipe r;
    dl_err err = {{0}};
    int rc = parse(whole[i].text, &r, &err);
    CHECK(rc == -1 && strncmp(err.msg, whole[i].want, strlen(whole[i].want)) == 0, "refused: %s", err.msg);
  }
  dl_recipe r;
  dl_err err;
  int rc = parse("data:\n  dataset: folder:/x\nmodel:\n  dim: 48\n  size: small\ntrain:\n  batch: 32\n  steps: 1\n", &r, &err);
  CHECK(rc == 0 && r.model.dim == 48 && r.model.depth == 12, "an explicit key wins over the preset wherever it stands (dim %d)",
        r.model.dim);
}

// File paths are relative to the recipe's folder; absolute ones and the
// dataset spec stay as written.
static void check_paths(void) {
  const char *text = "data:\n  dataset: folder:rel/images\nmodel:\n  size: small\ntrain:\n  targets: prototypes\n"
                     "  teacher_heads: heads.safetensors\n  batch: 32\n  steps: 2\nteacher:\n"
                     "  weights: ../models/b.safetensors\n  heads: /abs/h.safetensors\n";
  const struct { const char *recipe, *heads, *weights; } want[] = {
      {"cfg/r.yaml", "cfg/heads.safetensors", "cfg/../models/b.safetensors"},
      {"/r.yaml", "/heads.safetensors", "/../models/b.safetensors"},
      {"r.yaml", "heads.safetensors", "../models/b.safetensors"},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    dl_recipe r;
    dl_err err = {{0}};
    int rc = dl_recipe_parse(want[i].recipe, (const uint8_t *)text, strlen(text), &r, &err);
    rc = rc ? rc : dl_recipe_resolve_paths(&r, want[i].recipe, &err);
    CHECK(rc == 0 && !strcmp(r.train.teacher_heads, want[i].heads) && !strcmp(r.teacher.weights, want[i].weights) &&
              !strcmp(r.teacher.heads, "/abs/h.safetensors") && !strcmp(r.dataset, "folder:rel/images"),
          "recipe %s: teacher_heads -> %s, teacher.weights -> %s, absolute heads and the dataset unchanged%s%s",
          want[i].recipe, r.train.teacher_heads, r.teacher.weights, rc ? ": " : "", rc ? err.msg : "");
  }
  char long_dir[DL_RECIPE_PATH_MAX + 8];
  memset(long_dir, 'd', sizeof long_dir - 8);
  strcpy(long_dir + sizeof long_dir - 8, "/r.yaml");
  dl_recipe r;
  dl_err err = {{0}};
  int rc = dl_recipe_parse("r.yaml", (const uint8_t *)text, strlen(text), &r, &err);
  rc = rc ? rc : dl_recipe_resolve_paths(&r, long_dir, &err);
  CHECK(rc == -1 && !strncmp(err.msg, "teacher.weights: the path joined to the recipe's folder is longer", 64),
        "a joined path over the limit is refused: %.80s...", err.msg);
}

// The shipped teacher recipes and the students they serve must describe the
// same sample stream: a teacher started with --recipe refuses any other.
static void check_streams(void) {
  const struct { const char *teacher, *students[3]; } pairs[] = {
      {"teacher-vitg14", {"vits14", "vitb14", "vitl14"}},
      {"teacher-vitg14-in1k", {"vits14-in1k", "vitb14-in1k", "vitl14-in1k"}},
      {"demo-serve", {"demo-student-features", "demo-student-prototypes", NULL}},
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    char path[1200], want[DL_RECIPE_STREAM_TEXT_MAX], got[DL_RECIPE_STREAM_TEXT_MAX];
    dl_recipe t, r;
    dl_err err = {{0}};
    snprintf(path, sizeof path, "%s/recipes/%s.yaml", DISTILL_SOURCE_DIR, pairs[i].teacher);
    if (dl_recipe_load(path, &t, &err)) {
      CHECK(0, "%s: %s", pairs[i].teacher, err.msg);
      continue;
    }
    dl_recipe_stream_text(&t, want, sizeof want);
    for (int k = 0; k < 3 && pairs[i].students[k]; k++) {
      snprintf(path, sizeof path, "%s/recipes/%s.yaml", DISTILL_SOURCE_DIR, pairs[i].students[k]);
      const int rc = dl_recipe_load(path, &r, &err);
      if (rc == 0) dl_recipe_stream_text(&r, got, sizeof got);
      CHECK(rc == 0 && strcmp(want, got) == 0 && dl_recipe_stream_hash(&t) == dl_recipe_stream_hash(&r),
            "recipes/%s.yaml streams what recipes/%s.yaml's teacher serves (%s)", pairs[i].students[k],
            pairs[i].teacher, rc ? err.msg : got);
    }
  }
}

int main(void) {
  check_streams();
  check_family();
  check_refusals();
  check_paths();
  return dl_test_summary("test_recipe_student");
}
