// The memory plan (student/memory_plan.h) against what the code allocates.
// For a small student in three configurations (prototypes with the iBOT
// selection and with every patch, DINO and iBOT bottlenecks of different
// widths; features), the test builds the student, the teacher's last layers,
// the trainer and a step batch, runs one step, and compares the plan's
// counts with the allocator's (glibc mallinfo2: bytes in use) at each stage,
// and the plan's CPU figure with the growth of the process's resident set.
// Then the recipe-level plan: phases, widths read from a heads file, the
// hires switch, the largest batch, and refusals of recipes that cannot run.
#include <malloc.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/rng.h"
#include "model/ibot_masks.h"
#include "model/safetensors.h"
#include "cli/student_plan.h"
#include "student/memory_plan.h"
#include "student/step_batch.h"
#include "student/student_model.h"
#include "teacher/model_io.h"
#include "tests/harness.h"
#include "tests/teacher/proc.h"

// Under AddressSanitizer malloc is ASan's: its own count of the bytes
// handed out stands in for glibc's, and the resident set holds its shadow
// memory and quarantine, so the resident-set check is the release build's.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DL_UNDER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(DL_UNDER_ASAN)
#define DL_UNDER_ASAN 1
#endif
#ifdef DL_UNDER_ASAN
#include <sanitizer/allocator_interface.h>
static size_t in_use(void) { return __sanitizer_get_current_allocated_bytes(); }
static const bool rss_meaningful = false;
#else
static size_t in_use(void) {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}
static const bool rss_meaningful = true;
#endif

// Resident set of this process (VmRSS), bytes.
static size_t rss(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  size_t kb = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %zu kB", &kb) == 1) break;
  if (f) fclose(f);
  return kb << 10;
}

static double rel(double a, double b) { return b != 0 ? (a - b) / b : a; }

static void fill(float *x, size_t n, uint64_t key) {
  dl_rng g = dl_rng_make(key);
  for (size_t i = 0; i < n; i++) x[i] = (float)dl_rng_uniform(&g, -1.0, 1.0);
}

// A small student: SwiGLU and registers (every branch of the workspace),
// local crops resized from the stored grid.
static dl_mem_shape small_shape(dl_train_mode mode, int batch, int k) {
  dl_mem_shape s = {0};
  s.student = (dl_vit_config){.patch = 14, .dim = 96, .depth = 2, .heads = 2, .ffn_hidden = 192, .registers = 4,
                              .pos_grid = 4, .ffn = DL_FFN_SWIGLU, .interp = DL_INTERP_ANTIALIAS};
  s.mode = mode;
  s.batch = batch;
  s.global_crops = 2, s.local_crops = 4, s.global_size = 56, s.local_size = 28;
  if (mode == DL_TRAIN_PROTOTYPES) {
    s.head[0] = (dl_head_config){96, 256, 64, 3, k};
    s.head[1] = (dl_head_config){96, 256, 48, 3, k * 3 / 4};
    s.teacher_width[0] = 64, s.teacher_width[1] = 48;
  } else {
    s.head[0] = s.head[1] = (dl_head_config){96, 80, 80, 2, 0};
    s.teacher_width[0] = s.teacher_width[1] = 80;
  }
  s.block_size = batch, s.window = 0, s.loader_blocks = 0;  // no client or loader here
  s.threads = omp_get_max_threads();
  s.world = 1;
  return s;
}

static dl_train_config train_config(const dl_mem_shape *s, bool selected) {
  dl_train_config c = {.mode = s->mode, .batch = s->batch, .global_crops = s->global_crops,
                       .local_crops = s->local_crops, .global_size = s->global_size, .local_size = s->local_size,
                       .weights = dl_loss_weights_default(), .student_temp = 0.1f, .sinkhorn = true,
                       .center_momentum = 0.9f, .sk_iters = 3, .dino_head = s->head[0], .ibot_head = s->head[1],
                       .teacher_dim = s->mode == DL_TRAIN_FEATURES ? s->teacher_width[0] : 0,
                       .adamw = dl_adamw_config_default()};
  c.ibot = (dl_ibot_select){.selected = selected, .probability = 0.5f, .ratio_lo = 0.1f, .ratio_hi = 0.5f, .seed = 3};
  c.sched.lr = c.sched.last_layer_lr = dl_schedule_constant(1e-3);
  c.sched.wd = dl_schedule_constant(0.04);
  c.sched.momentum = dl_schedule_constant(0.99);
  c.sched.teacher_temp = dl_schedule_constant(0.07);
  return c;
}

typedef struct measured {
  size_t init, batch, step;    // allocator growth: trainer init (with the models), step batch, first step
  size_t resident;             // resident set growth over all three
} measured;

// Builds and runs what the plan counts; everything is freed on return.
static int run_step(dl_mem_shape *s, bool selected, measured *out) {
  dl_train_config cfg = train_config(s, selected);
  if (s->mode == DL_TRAIN_PROTOTYPES && selected) {
    const int g = s->global_size / s->student.patch;
    s->ibot_rows = dl_trainer_ibot_rows(&cfg, g * g);
  }
  const size_t m0 = in_use(), r0 = rss();
  dl_vit vit;
  dl_student_vit_init(&vit, &s->student, 1e-5f, 1);
  dl_head teacher[2];
  for (int k = 0; k < 2 && s->mode == DL_TRAIN_PROTOTYPES; k++) {
    const int w = s->teacher_width[k];
    dl_head_init(&teacher[k], &(dl_head_config){w, w, w, 1, s->head[k].prototypes});
    dl_head_init_random(&teacher[k], 10 + k);
  }
  const bool proto = s->mode == DL_TRAIN_PROTOTYPES;
  dl_trainer t;
  dl_err err;
  if (dl_trainer_init(&t, &vit, &cfg, proto ? &teacher[0] : NULL, proto ? &teacher[1] : NULL, 5, &err)) {
    printf("trainer: %s\n", err.msg);
    return -1;
  }
  const size_t m1 = in_use();
  dl_step_batch sb;
  dl_step_batch_init(&sb, &t.cfg, t.patches, s->teacher_width[0], s->teacher_width[1]);
  const size_t GB = (size_t)s->global_crops * s->batch, LB = (size_t)s->local_crops * s->batch;
  fill(sb.global_images, GB * 3 * s->global_size * s->global_size, 1);
  fill(sb.local_images, LB * 3 * s->local_size * s->local_size, 2);
  fill(sb.teacher_cls, GB * s->teacher_width[0], 3);
  fill(sb.teacher_patch, GB * t.patches * s->teacher_width[1], 4);
  const size_t m2 = in_use();
  const dl_train_batch b = dl_step_batch_view(&sb);
  dl_step_report rep;
  const int rc = dl_trainer_step(&t, &b, &rep, &err);
  const size_t m3 = in_use(), r3 = rss();
  if (rc) printf("step: %s\n", err.msg);
  *out = (measured){m1 - m0, m2 - m1, m3 - m2, r3 - r0};
  dl_step_batch_free(&sb);
  dl_trainer_free(&t);
  dl_vit_free(&vit);
  for (int k = 0; k < 2 && proto; k++) dl_head_free(&teacher[k]);
  return rc;
}

// `warm`: the plan of the warm-up step, whose BLAS state (the sgemm's packed
// operand) stays: a step adds only what is larger.
static void check_case(const char *name, dl_train_mode mode, bool selected, int batch, int k, const dl_mem_plan *warm) {
  dl_mem_shape s = small_shape(mode, batch, k);
  measured m;
  if (run_step(&s, selected, &m)) {
    CHECK(0, "%s: the step ran", name);
    return;
  }
  dl_mem_plan p;
  dl_mem_plan_shape(&s, &p);
  // What dl_trainer_init (and the models before it) allocates: the plan's
  // init share and the teacher's last layers (weights beyond the student's).
  const size_t init = p.cpu_init + (p.cpu[DL_MEM_WEIGHTS] - p.cpu[DL_MEM_GRADS]);
  // The first step: the workspaces (what the plan counts as written and
  // what it sets apart as never written) and the sgemm's packed weight.
  const size_t pack = p.cpu_sgemm_pack > warm->cpu_sgemm_pack ? p.cpu_sgemm_pack - warm->cpu_sgemm_pack : 0;
  const size_t workspaces = p.cpu[DL_MEM_WEIGHTS] + p.cpu[DL_MEM_GRADS] + p.cpu[DL_MEM_ADAM] + p.cpu[DL_MEM_EMA] +
                            p.cpu[DL_MEM_ACTIVATIONS] + p.cpu[DL_MEM_HEAD_WS] + pack + p.cpu[DL_MEM_LOGITS] +
                            p.cpu_untouched - init;
  // Resident: everything the plan counts as written, less what the warm-up
  // made resident already.
  const size_t written = p.cpu_total - p.cpu[DL_MEM_RUNTIME] - p.cpu[DL_MEM_WINDOW] - p.cpu[DL_MEM_LOADER] -
                         p.cpu[DL_MEM_BLAS] + pack;
  CHECK(fabs(rel((double)m.init, (double)init)) < 0.005, "%s: trainer init allocates %zu bytes, plan %zu (%+.3f %%)",
        name, m.init, init, 100 * rel((double)m.init, (double)init));
  CHECK(fabs(rel((double)m.batch, (double)p.cpu[DL_MEM_STEP_BATCH])) < 0.005,
        "%s: step batch %zu bytes, plan %zu (%+.3f %%)", name, m.batch, p.cpu[DL_MEM_STEP_BATCH],
        100 * rel((double)m.batch, (double)p.cpu[DL_MEM_STEP_BATCH]));
  CHECK(fabs(rel((double)m.step, (double)workspaces)) < 0.01,
        "%s: the first step allocates %zu bytes (workspaces, packed weight), plan %zu (%+.3f %%)", name, m.step,
        workspaces, 100 * rel((double)m.step, (double)workspaces));
  if (!rss_meaningful) {
    printf("%s: resident set not compared (AddressSanitizer build: shadow memory and quarantine)\n", name);
    return;
  }
  CHECK(fabs(rel((double)m.resident, (double)written)) < 0.05,
        "%s: resident set grew %.1f MiB, plan writes %.1f MiB (%+.2f %%; %.1f MiB allocated and never written)", name,
        m.resident / 1048576.0, written / 1048576.0, 100 * rel((double)m.resident, (double)written),
        p.cpu_untouched / 1048576.0);
}

typedef struct plan_case {
  const char *name;
  dl_train_mode mode;
  bool selected;
} plan_case;

// Each case in a process of its own, so that no freed memory of another
// case is resident or reused; the child's checks print there and its
// failures come back as its exit status.
static void run_case(const plan_case *c) {
  fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    // The first step of any trainer starts OpenMP's and OpenBLAS's threads
    // and buffers (the plan's "runtime"): a tiny step first, so that the
    // resident set measured is what the plan counts.
    dl_test_failures = 0;  // the parent's count so far is not this case's
    measured warm;
    dl_mem_shape tiny = small_shape(DL_TRAIN_FEATURES, 2, 0);
    tiny.student.depth = 1;
    run_step(&tiny, false, &warm);
    dl_mem_plan tp;
    dl_mem_plan_shape(&tiny, &tp);
    check_case(c->name, c->mode, c->selected, 8, 32768, &tp);
    fflush(stdout);
    _exit(dl_test_failures > 100 ? 100 : dl_test_failures);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  const int failed = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
  CHECK(failed == 0, "%s: %d failed check(s) in its process", c->name, failed);
}

// ---- the recipe-level plan ----

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f) fputs(text, f), fclose(f);
}

// A heads file with a DINO head of bottleneck 64 (512 prototypes) and an
// iBOT head of 48 (384), or only the DINO head (a shared head).
static int write_heads(const char *path, bool shared) {
  dl_head h[2];
  dl_head_init(&h[0], &(dl_head_config){32, 32, 64, 1, 512});
  dl_head_init(&h[1], &(dl_head_config){32, 32, 48, 1, 384});
  dl_err err;
  int rc;
  if (shared) {
    dl_st_out out[8];
    char names[8][96];
    const int n = h[0].layout.count;
    for (int i = 0; i < n; i++) {
      const dl_param_entry *e = &h[0].layout.entries[i];
      snprintf(names[i], sizeof names[i], "dino_head.%s", e->name);
      out[i] = (dl_st_out){.name = names[i], .ndim = e->ndim, .data = h[0].params + e->offset};
      memcpy(out[i].shape, e->shape, sizeof e->shape);
    }
    rc = dl_st_write_f32(path, out, n, NULL, 0, &err);
  } else {
    rc = dl_heads_save(&h[0], h[0].params, &h[1], h[1].params, path, &err);
  }
  dl_head_free(&h[0]);
  dl_head_free(&h[1]);
  if (rc) printf("heads file: %s\n", err.msg);
  return rc;
}

static const char *kRecipe =
    "data:\n  dataset: idx:/usr/share/datasets/fashion-mnist,split=train\n  block_size: 4\n"
    "crops:\n  global_count: 2\n  global_size: 56\n  local_count: 4\n  local_size: 28\n"
    "model:\n  patch: 14\n  dim: 96\n  depth: 2\n  heads: 2\n  ffn_hidden: 192\n"
    "train:\n  targets: %s\n  teacher_heads: %s\n%s  batch: 32\n  steps: 10\n  window: 3\n%s"
    "hires:\n  steps: 1\n  size: 84\n  local_size: 42\n";

static int load_recipe(const char *path, const char *targets, const char *heads, int teacher_dim, const char *extra,
                       dl_recipe *r) {
  char text[2048], dim[64] = "";
  if (teacher_dim) snprintf(dim, sizeof dim, "  teacher_dim: %d\n", teacher_dim);
  snprintf(text, sizeof text, kRecipe, targets, heads, dim, extra);
  write_file(path, text);
  dl_err err;
  const int rc = dl_recipe_load(path, r, &err);
  if (rc) printf("recipe: %s\n", err.msg);
  return rc;
}

static void check_recipe_plan(const char *dir) {
  char heads[256], shared[256], recipe[256];
  snprintf(heads, sizeof heads, "%s/heads.safetensors", dir);
  snprintf(shared, sizeof shared, "%s/shared.safetensors", dir);
  snprintf(recipe, sizeof recipe, "%s/student.yaml", dir);
  if (write_heads(heads, false) || write_heads(shared, true)) {
    CHECK(0, "heads files written");
    return;
  }
  dl_recipe r;
  dl_err err;
  dl_mem_recipe_plan p;
  if (load_recipe(recipe, "prototypes", heads, 0, "", &r)) {
    CHECK(0, "recipe loads");
    return;
  }
  dl_mem_options o = {.ranks = 2, .ibot = DL_MEM_IBOT_RECIPE};
  CHECK(dl_mem_plan_recipe(&r, &o, &p, &err) == 0, "prototypes recipe on 2 ranks: planned");
  const dl_mem_shape *m = &p.phases[0].shape, *h = &p.phases[1].shape;
  CHECK(p.nphases == 2 && p.batch == 16 && p.blocks_per_rank == 4 && m->global_size == 56 && m->local_size == 28 &&
            h->global_size == 84 && h->local_size == 42 && h->student.pos_grid == 6,
        "two phases: %d images per rank in %d blocks; main %d/%d px, hires %d/%d px (grid %d)", p.batch,
        p.blocks_per_rank, m->global_size, m->local_size, h->global_size, h->local_size, h->student.pos_grid);
  CHECK(m->teacher_width[0] == 64 && m->teacher_width[1] == 48 && m->head[0].prototypes == 512 &&
            m->head[1].prototypes == 384 && m->head[0].out_dim == 64 && m->head[1].out_dim == 48,
        "widths from the heads file: DINO %d x %d, iBOT %d x %d", m->teacher_width[0], m->head[0].prototypes,
        m->teacher_width[1], m->head[1].prototypes);
  const int upper = dl_ibot_selected_upper_bound(2 * 16, 36, 0.5f, 0.1f, 0.5f);
  CHECK(p.ibot_selected && h->ibot_rows == upper && h->ibot_rows < 2 * 16 * 36,
        "iBOT selection (the recipe's default): %d rows at 84 px of %d patches", h->ibot_rows, 2 * 16 * 36);
  CHECK(m->window == 4 && h->window == 4 && m->loader_blocks == 11 && h->loader_blocks == 4,
        "window 3 + 1 blocks, capped by the phase (hires: 4 blocks); loader 2 * 4 + 3 blocks, capped likewise: "
        "%d/%d, %d/%d", m->window, h->window, m->loader_blocks, h->loader_blocks);
  const dl_mem_plan *a = &p.phases[0].plan, *b = &p.phases[1].plan;
  const size_t sw = a->cpu_total - a->cpu[DL_MEM_WINDOW] - a->cpu[DL_MEM_LOADER] + b->cpu_init;
  const size_t most = a->cpu_total > b->cpu_total ? a->cpu_total : b->cpu_total;
  CHECK(p.switch_cpu == sw && p.peak_cpu == (sw > most ? sw : most) && p.peak_gpu >= a->gpu_total &&
            p.peak_gpu >= b->gpu_total,
        "peak CPU %.1f MiB: the larger of the phases (%.1f, %.1f) and the switch (%.1f); GPU %.1f MiB",
        p.peak_cpu / 1048576.0, a->cpu_total / 1048576.0, b->cpu_total / 1048576.0, sw / 1048576.0,
        p.peak_gpu / 1048576.0);
  dl_mem_recipe_plan all;
  o.ibot = DL_MEM_IBOT_ALL;
  CHECK(dl_mem_plan_recipe(&r, &o, &all, &err) == 0 && !all.ibot_selected && all.phases[1].shape.ibot_rows == 0 &&
            all.phases[1].plan.cpu[DL_MEM_LOGITS] > b->cpu[DL_MEM_LOGITS],
        "every patch instead: logits %.1f MiB against %.1f MiB selected",
        all.phases[1].plan.cpu[DL_MEM_LOGITS] / 1048576.0, b->cpu[DL_MEM_LOGITS] / 1048576.0);
  // The largest batch: a budget of exactly the peak at 3 blocks per rank.
  o.ibot = DL_MEM_IBOT_RECIPE;
  o.batch = 12;
  dl_mem_recipe_plan three;
  dl_mem_plan_recipe(&r, &o, &three, &err);
  const int fit = dl_mem_max_batch(&r, &o, three.peak_cpu, false, 1 << 16, &err);
  const int below = dl_mem_max_batch(&r, &o, three.peak_cpu - 1, false, 1 << 16, &err);
  const int gpu = dl_mem_max_batch(&r, &o, three.peak_gpu, true, 1 << 16, &err);
  CHECK(fit == 12 && below == 8 && gpu == 12,
        "largest batch within the peak of 12 images: %d (one byte less: %d; GPU %d)", fit, below, gpu);
  CHECK(dl_mem_max_batch(&r, &o, 1 << 20, false, 1 << 16, &err) == 0, "1 MiB fits no block");
  // A shared head: the iBOT targets have the DINO head's width.
  if (load_recipe(recipe, "prototypes", shared, 0, "", &r) == 0) {
    o = (dl_mem_options){.ranks = 1};
    CHECK(dl_mem_plan_recipe(&r, &o, &p, &err) == 0 && p.phases[0].shape.teacher_width[1] == 64 &&
              p.phases[0].shape.head[1].prototypes == 512,
          "shared head: iBOT width %d, %d prototypes", p.phases[0].shape.teacher_width[1],
          p.phases[0].shape.head[1].prototypes);
  }
  // Features: the adaptors to the teacher's width; the selection plays no part.
  if (load_recipe(recipe, "features", heads, 80, "  ibot_patches: selected\n", &r) == 0) {
    CHECK(dl_mem_plan_recipe(&r, &o, &p, &err) == 0 && p.phases[0].shape.head[1].out_dim == 80 &&
              p.phases[0].shape.ibot_rows == 0 && !p.ibot_selected,
          "features: adaptors to %d, every patch", p.phases[0].shape.head[1].out_dim);
  }
  // Recipes that cannot run: one line each.
  o = (dl_mem_options){.ranks = 3};
  CHECK(dl_mem_plan_recipe(&r, &o, &p, &err) == -1 && strstr(err.msg, "whole blocks"), "3 ranks: %s", err.msg);
  if (load_recipe(recipe, "features", heads, 0, "", &r) == 0) {
    o.ranks = 1;
    CHECK(dl_mem_plan_recipe(&r, &o, &p, &err) == -1 && strstr(err.msg, "teacher_dim"), "features without a width: %s",
          err.msg);
  }
  if (load_recipe(recipe, "prototypes", "/nonexistent/heads.safetensors", 0, "", &r) == 0)
    CHECK(dl_mem_plan_recipe(&r, &o, &p, &err) == -1 && strstr(err.msg, "/nonexistent/heads.safetensors"),
          "a missing heads file: %s", err.msg);
  unlink(heads), unlink(shared), unlink(recipe);
}

// ---- `distill student --plan` ----

static int lines_of(const char *path, char *first, size_t n, const char *needle, bool *found) {
  FILE *f = fopen(path, "r");
  char buf[1024];
  int lines = 0;
  first[0] = 0;
  *found = false;
  while (f && fgets(buf, sizeof buf, f)) {
    if (lines++ == 0) snprintf(first, n, "%s", buf);
    if (needle && strstr(buf, needle)) *found = true;
  }
  if (f) fclose(f);
  first[strcspn(first, "\n")] = 0;
  return lines;
}

static void check_cli(const char *dir) {
  char heads[256], recipe[256], features[256], log[256];
  snprintf(heads, sizeof heads, "%s/heads.safetensors", dir);
  snprintf(recipe, sizeof recipe, "%s/student.yaml", dir);
  snprintf(features, sizeof features, "%s/features.yaml", dir);
  snprintf(log, sizeof log, "%s/plan.log", dir);
  dl_recipe r;
  if (write_heads(heads, false) || load_recipe(recipe, "prototypes", heads, 0, "", &r) ||
      load_recipe(features, "features", heads, 0, "", &r)) {
    CHECK(0, "CLI recipes written");
    return;
  }
  const char *bad[][12] = {
      {"student", "--plan", "--recipe", recipe, "--memory", "80Q", NULL},
      {"student", "--plan", "--recipe", recipe, "--memory", "-1G", NULL},
      {"student", "--plan", "--recipe", recipe, "--ranks", "0", NULL},
      {"student", "--plan", "--recipe", recipe, "--ranks", "3", NULL},
      {"student", "--plan", "--recipe", recipe, "--ranks", "two", NULL},
      {"student", "--plan", "--recipe", "/nonexistent/student.yaml", NULL},
      {"student", "--plan", "--recipe", features, NULL},
      {"student", "--recipe", recipe, "--teachers", "tcp://127.0.0.1:1", "--memory", "80G", NULL},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    unlink(log);
    const int rc = proc_run(bad[i], log, 60);
    char line[1024], shown[512] = "";
    bool found;
    const int n = lines_of(log, line, sizeof line, NULL, &found);
    for (int a = 1; bad[i][a]; a++) {
      const char *arg = bad[i][a] == recipe ? "R" : bad[i][a] == features ? "F" : bad[i][a];
      strncat(shown, arg, sizeof shown - strlen(shown) - 2);
      strcat(shown, " ");
    }
    CHECK(rc == 2 && n == 1 && strncmp(line, "distill: ", 9) == 0, "student %s-> exit %d, %d line: %s", shown, rc, n,
          line);
  }
  const char *good[] = {"student", "--plan", "--recipe", recipe, "--ranks", "2", "--memory", "1G", NULL};
  unlink(log);
  const int rc = proc_run(good, log, 60);
  char line[1024];
  bool peak, fits;
  lines_of(log, line, sizeof line, "peak per rank: CPU", &peak);
  lines_of(log, line, sizeof line, "largest per-rank batch within 1G: CPU", &fits);
  CHECK(rc == 0 && peak && fits, "student --plan --recipe R --ranks 2 --memory 1G: exit %d, the peak and the "
        "largest batch printed", rc);
  unlink(log), unlink(heads), unlink(recipe), unlink(features);
}

static void check_sizes(void) {
  const struct {
    const char *text;
    double bytes;
  } cases[] = {{"80G", 80.0 * (1 << 30)}, {"80GiB", 80.0 * (1 << 30)}, {"512M", 512.0 * (1 << 20)},
               {"1.5T", 1.5 * 1099511627776.0}, {"4096", 4096}, {"2k", 2048},
               {"80Q", -1}, {"G", -1}, {"-1G", -1}, {"0", -1}, {"80GG", -1}, {"", -1}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const double got = dl_parse_memory_size(cases[i].text);
    CHECK(got == cases[i].bytes, "memory size '%s' -> %.0f bytes (want %.0f)", cases[i].text, got, cases[i].bytes);
  }
}

// The GPU's loss path at K = 131072 (issue 15), batch 32 per rank, every
// patch scored (16384 iBOT rows): the teacher's logits once per head in
// bf16, one chunk of the student's (1024 iBOT rows of 256 MiB), and
// vectors; before the chunking the same shape counted about 32 GiB.
static void check_gpu_logits(void) {
  dl_mem_shape s = {0};
  s.student = (dl_vit_config){.patch = 14, .dim = 1024, .depth = 24, .heads = 16, .ffn_hidden = 4096,
                              .pos_grid = 16, .ffn = DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
  s.mode = DL_TRAIN_PROTOTYPES;
  s.batch = 32, s.global_crops = 2, s.local_crops = 8, s.global_size = 224, s.local_size = 98;
  s.head[0] = s.head[1] = (dl_head_config){1024, 2048, 256, 3, 131072};
  s.teacher_width[0] = s.teacher_width[1] = 256;
  s.block_size = 1, s.threads = 1, s.world = 1;
  dl_mem_plan p;
  dl_mem_plan_shape(&s, &p);
  size_t c[2];
  dl_mem_loss_chunks(&s, 2, c);
  const size_t K = 131072, teacher = (64 + 16384) * K * 2, chunk = 1024 * K * 2;
  const size_t vectors = p.gpu[DL_MEM_LOGITS] - teacher - chunk;
  CHECK(c[0] == 320 && c[1] == 1024 && p.gpu[DL_MEM_LOGITS] > teacher + chunk && vectors < ((size_t)8 << 20),
        "K = 131072, batch 32, 16384 iBOT rows: chunks of %zu (DINO) and %zu (iBOT) rows; GPU logits %.2f GiB = "
        "teacher %.2f GiB + one chunk %.0f MiB + %.2f MiB of vectors (GPU total %.1f GiB)", c[0], c[1],
        p.gpu[DL_MEM_LOGITS] / 1073741824.0, teacher / 1073741824.0, chunk / 1048576.0, vectors / 1048576.0,
        p.gpu_total / 1073741824.0);
}

int main(void) {
  check_gpu_logits();
  const plan_case cases[] = {{"prototypes, iBOT selection", DL_TRAIN_PROTOTYPES, true},
                             {"prototypes, every patch", DL_TRAIN_PROTOTYPES, false},
                             {"features", DL_TRAIN_FEATURES, false}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
  check_sizes();
  char dir[] = "/tmp/distill-plan-XXXXXX";
  if (mkdtemp(dir)) {
    check_recipe_plan(dir);
    check_cli(dir);
    rmdir(dir);
  }
  return dl_test_summary("test_memory_plan");
}
