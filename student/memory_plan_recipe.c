// A student recipe's phases as dl_mem_shapes (the shapes `distill student`
// would build: student_model.c, student_run.c), their plans, the peak of
// the run and the largest batch that fits.
#include "student/memory_plan.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "model/safetensors.h"
#include "student/student_model.h"

// Bottleneck width and prototypes of the teacher's head `prefix`, from the
// file's header (student_model.c reads the same tensors' values).
static int head_shape(const dl_safetensors *st, const char *path, const char *prefix, int *width, int *k,
                      dl_err *err) {
  char name[64];
  snprintf(name, sizeof name, "%s.last_layer.weight_v", prefix);
  const dl_st_tensor *v = dl_st_find(st, name);
  if (!v || v->ndim != 2 || v->shape[0] < 1 || v->shape[1] < 1 || v->shape[0] > (1 << 22) || v->shape[1] > 65536)
    return dl_fail(err, "%s: no usable %s (the plan of a prototypes student needs the teacher's heads)", path, name);
  *k = (int)v->shape[0];
  *width = (int)v->shape[1];
  return 0;
}

static int teacher_heads(const dl_recipe *r, int width[2], int k[2], dl_err *err) {
  dl_safetensors st;
  if (!r->train.teacher_heads[0]) return dl_fail(err, "train.teacher_heads is required with prototypes targets");
  if (dl_st_open(r->train.teacher_heads, &st, err)) return -1;
  const bool shared = !dl_st_find(&st, "ibot_head.last_layer.weight_v");
  int rc = head_shape(&st, r->train.teacher_heads, "dino_head", &width[0], &k[0], err);
  if (rc == 0) rc = head_shape(&st, r->train.teacher_heads, shared ? "dino_head" : "ibot_head", &width[1], &k[1], err);
  dl_st_close(&st);
  return rc;
}

static int min_int(long a, long b) { return (int)(a < b ? a : b); }

// One phase's shape from its training configuration (crop sizes, iBOT
// selection) and length.
static void phase_shape(const dl_recipe *r, const dl_train_config *tc, const int width[2], int ranks, int bpr,
                        long steps, dl_mem_shape *s) {
  memset(s, 0, sizeof *s);
  dl_student_vit_config(r, tc->global_size, &s->student);
  s->mode = tc->mode;
  s->batch = tc->batch;
  s->global_crops = tc->global_crops;
  s->local_crops = tc->local_crops;
  s->global_size = tc->global_size;
  s->local_size = tc->local_size;
  s->head[0] = tc->dino_head;
  s->head[1] = tc->ibot_head;
  s->teacher_width[0] = width[0];
  s->teacher_width[1] = width[1];
  if (tc->mode == DL_TRAIN_FEATURES)  // train_step.c: Linear-GELU-Linear adaptors to the teacher's width
    for (int k = 0; k < 2; k++)
      s->head[k] = (dl_head_config){r->model.dim, tc->teacher_dim, tc->teacher_dim, 2, 0};
  s->block_size = r->block_size;
  const long blocks = steps * bpr;
  s->window = min_int(r->train.window + 1, blocks);
  s->loader_blocks = min_int(2 * bpr + 2 + 1, blocks);  // student_run.c's loader depth, and the block in use
  s->threads = omp_get_max_threads();
  s->world = ranks;
  if (tc->mode == DL_TRAIN_PROTOTYPES && tc->ibot.selected) {  // train_step.c: the selection's rows, gathered
    const int g = tc->global_size / s->student.patch, rows = dl_trainer_ibot_rows(tc, g * g);
    s->ibot_rows = rows > 0 ? rows : 1;  // none only with an iBOT weight of 0: count one row
  }
}

// The main phase (train.steps), then the high-resolution one (hires.steps
// more) with its own crop sizes (student_model.h); their plans and peaks.
static int plan_phases(const dl_recipe *r, const dl_train_config *tc, const int width[2], int bpr,
                       dl_mem_recipe_plan *out, dl_err *err) {
  if (r->train.steps > 0) {
    dl_mem_phase *p = &out->phases[out->nphases++];
    p->name = "main";
    p->steps = r->train.steps;
    phase_shape(r, tc, width, out->ranks, bpr, p->steps, &p->shape);
  }
  if (r->hires.steps > 0) {
    dl_mem_phase *p = &out->phases[out->nphases++];
    p->name = "hires";
    p->steps = r->hires.steps;
    dl_train_config hc = *tc;
    dl_student_hires_config(r, &hc);
    phase_shape(r, &hc, width, out->ranks, bpr, p->steps, &p->shape);
  }
  for (int i = 0; i < out->nphases; i++) {
    dl_mem_phase *p = &out->phases[i];
    if (p->shape.global_size % p->shape.student.patch || p->shape.local_size % p->shape.student.patch)
      return dl_fail(err, "%s phase: crop sizes %d and %d are not multiples of the patch size %d", p->name,
                     p->shape.global_size, p->shape.local_size, p->shape.student.patch);
    dl_mem_plan_shape(&p->shape, &p->plan);
    if (p->plan.cpu_total > out->peak_cpu) out->peak_cpu = p->plan.cpu_total;
    if (p->plan.gpu_total > out->peak_gpu) out->peak_gpu = p->plan.gpu_total;
  }
  if (out->nphases == 2) {
    // dl_hires_switch: the main phase's trainer (its client and loader
    // stopped) and the new phase's freshly initialized one.
    const dl_mem_plan *a = &out->phases[0].plan, *b = &out->phases[1].plan;
    out->switch_cpu = a->cpu_total - a->cpu[DL_MEM_WINDOW] - a->cpu[DL_MEM_LOADER] + b->cpu_init;
    if (out->switch_cpu > out->peak_cpu) out->peak_cpu = out->switch_cpu;
  }
  return 0;
}

int dl_mem_plan_recipe(const dl_recipe *r, const dl_mem_options *o, dl_mem_recipe_plan *out, dl_err *err) {
  memset(out, 0, sizeof *out);
  const int ranks = o->ranks, batch = o->batch;
  if (!r->has_model || !r->has_train) return dl_fail(err, "a student recipe needs the model and train sections");
  if (ranks < 1) return dl_fail(err, "ranks must be at least 1");
  int bpr;
  if (batch > 0) {
    if (batch % r->block_size)
      return dl_fail(err, "batch %d is not a whole number of %d-sample blocks", batch, r->block_size);
    bpr = batch / r->block_size;
  } else if (dl_recipe_rank_blocks(r, ranks, &bpr, err)) {
    return -1;
  }
  dl_head heads[2];
  int width[2] = {r->train.teacher_dim, r->train.teacher_dim}, k[2] = {0, 0};
  if (r->train.prototypes) {
    if (teacher_heads(r, width, k, err)) return -1;
    for (int i = 0; i < 2; i++) heads[i].cfg = (dl_head_config){width[i], width[i], width[i], 1, k[i]};
  } else if (r->train.teacher_dim <= 0) {
    return dl_fail(err, "train.teacher_dim is required with features targets (the plan needs the teacher's width)");
  }
  dl_train_config tc;
  dl_student_train_config(r, 1, r->crops.global_size, r->train.prototypes ? heads : NULL, r->model.dim, &tc);
  tc.batch = bpr * r->block_size;
  out->ranks = ranks;
  out->batch = tc.batch;
  out->blocks_per_rank = bpr;
  if (o->ibot != DL_MEM_IBOT_RECIPE) tc.ibot.selected = o->ibot == DL_MEM_IBOT_SELECTED;
  out->ibot_selected = r->train.prototypes && tc.ibot.selected;
  return plan_phases(r, &tc, width, bpr, out, err);
}

int dl_mem_max_batch(const dl_recipe *r, const dl_mem_options *o, size_t bytes, bool gpu, int cap, dl_err *err) {
  // The peak grows with the batch: the largest whole number of blocks by bisection.
  const int bs = r->block_size;
  int lo = 0, hi = cap / bs;  // lo fits (0: nothing), hi + 1 does not or is past the cap
  dl_mem_recipe_plan p;
  dl_mem_options opt = *o;
  while (lo < hi) {
    const int mid = lo + (hi - lo + 1) / 2;
    opt.batch = mid * bs;
    if (dl_mem_plan_recipe(r, &opt, &p, err)) return -1;
    if ((gpu ? p.peak_gpu : p.peak_cpu) <= bytes) lo = mid;
    else hi = mid - 1;
  }
  return lo * bs;
}
