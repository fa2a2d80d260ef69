#include "student/student_model.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "data/rng.h"
#include "model/safetensors.h"

void dl_student_vit_config(const dl_recipe *r, int global_size, dl_vit_config *cfg) {
  const dl_recipe_model *m = &r->model;
  *cfg = (dl_vit_config){.patch = m->patch, .dim = m->dim, .depth = m->depth, .heads = m->heads,
                         .ffn_hidden = m->ffn_hidden, .registers = m->registers, .pos_grid = global_size / m->patch,
                         .ffn = m->swiglu ? DL_FFN_SWIGLU : DL_FFN_MLP};
  // The released models' rule: register models use the antialiased mode.
  cfg->interp = m->interp >= 0 ? (dl_interp_mode)m->interp : m->registers ? DL_INTERP_ANTIALIAS : DL_INTERP_LEGACY;
}

void dl_student_vit_init(dl_vit *vit, const dl_vit_config *cfg, float layerscale, uint64_t seed) {
  dl_vit_init_empty(vit, cfg);
  for (int i = 0; i < vit->layout.count; i++) {
    const dl_param_entry *e = &vit->layout.entries[i];
    float *p = vit->params + e->offset;
    dl_rng g = dl_rng_make(dl_key_derive(seed, (uint64_t)i));
    const char *n = e->name;
    const size_t len = strlen(n);
    const int is_bias = len > 5 && strcmp(n + len - 5, ".bias") == 0;
    if (strcmp(n, "mask_token") == 0) continue;
    if (strcmp(n, "cls_token") == 0 || strcmp(n, "register_tokens") == 0) {
      for (size_t j = 0; j < e->numel; j++) p[j] = (float)(1e-6 * dl_rng_normal(&g));
    } else if (strcmp(n, "pos_embed") == 0) {
      for (size_t j = 0; j < e->numel; j++) p[j] = dl_rng_trunc_normal(&g, 0.02);
    } else if (strncmp(n, "patch_embed.", 12) == 0) {
      const double bound = 1.0 / sqrt(3.0 * cfg->patch * cfg->patch);  // kaiming_uniform(a=sqrt(5)) and the bias rule
      for (size_t j = 0; j < e->numel; j++) p[j] = (float)((2.0 * dl_rng_unit(&g) - 1.0) * bound);
    } else if (strstr(n, "norm")) {
      for (size_t j = 0; j < e->numel; j++) p[j] = is_bias ? 0.0f : 1.0f;
    } else if (strstr(n, ".gamma")) {
      for (size_t j = 0; j < e->numel; j++) p[j] = layerscale;
    } else if (!is_bias) {
      for (size_t j = 0; j < e->numel; j++) p[j] = dl_rng_trunc_normal(&g, 0.02);
    }
  }
}

static int read_last_layer(const dl_safetensors *st, const char *path, const char *prefix, dl_head *h, dl_err *err) {
  char gname[96], vname[96];
  snprintf(gname, sizeof gname, "%s.last_layer.weight_g", prefix);
  snprintf(vname, sizeof vname, "%s.last_layer.weight_v", prefix);
  const dl_st_tensor *g = dl_st_find(st, gname), *v = dl_st_find(st, vname);
  if (!g || !v) return dl_fail(err, "%s: no %s (the teacher's heads are needed for prototypes targets)", path, g ? vname : gname);
  if (v->ndim != 2 || g->numel != v->shape[0] || v->shape[0] < 1 || v->shape[1] < 1 || v->shape[0] > (1 << 22) ||
      v->shape[1] > 65536)
    return dl_fail(err, "%s: %s and %s have unusable shapes", path, gname, vname);
  const int K = (int)v->shape[0], bottleneck = (int)v->shape[1];
  dl_head_config hc = {.in_dim = bottleneck, .hidden_dim = bottleneck, .out_dim = bottleneck, .nlayers = 1, .prototypes = K};
  dl_head_init(h, &hc);
  if (dl_st_read_f32(g, dl_head_param(h, h->last_g), err) || dl_st_read_f32(v, dl_head_param(h, h->last_v), err)) {
    dl_head_free(h);
    return dl_fail_prefix(err, path);
  }
  return 0;
}

int dl_student_load_teacher_heads(const char *path, dl_head heads[2], dl_err *err) {
  dl_safetensors st;
  if (dl_st_open(path, &st, err)) return -1;
  // Without ibot_head.* the iBOT head is the DINO head (teacher/model_io.c's rule).
  bool shared = true;
  for (int i = 0; i < st.count && shared; i++) shared = strncmp(st.tensors[i].name, "ibot_head.", 10) != 0;
  int rc = read_last_layer(&st, path, "dino_head", &heads[0], err);
  if (rc == 0 && shared)
    fprintf(stderr, "distill: student: %s has no ibot_head.* (a shared head): iBOT uses dino_head.last_layer too\n",
            path);
  if (rc == 0 && read_last_layer(&st, path, shared ? "dino_head" : "ibot_head", &heads[1], err)) {
    dl_head_free(&heads[0]);
    rc = -1;
  }
  dl_st_close(&st);
  return rc;
}

static dl_schedule cosine(double base, double final, long total, long warmup, double start_warmup) {
  return (dl_schedule){.base = base, .final = final, .total = total, .warmup = warmup, .start_warmup = start_warmup};
}

void dl_student_train_config(const dl_recipe *r, int world, int global_size, const dl_head *teacher_heads,
                             int student_dim, dl_train_config *cfg) {
  const dl_recipe_train *t = &r->train;
  const dl_recipe_optim *o = &r->optim;
  memset(cfg, 0, sizeof *cfg);
  cfg->mode = t->prototypes ? DL_TRAIN_PROTOTYPES : DL_TRAIN_FEATURES;
  cfg->batch = t->batch / world;
  cfg->global_crops = r->crops.global_count;
  cfg->local_crops = r->crops.local_count;
  cfg->global_size = global_size;
  cfg->local_size = r->crops.local_size;
  cfg->weights = (dl_loss_weights){t->dino_weight, t->ibot_weight, t->koleo_weight,
                                   t->feat_cls_weight, t->feat_cos_weight, t->feat_l1_weight};
  cfg->student_temp = t->student_temp;
  cfg->sinkhorn = t->sinkhorn != 0;
  cfg->center_momentum = t->center_momentum;
  cfg->sk_iters = t->sk_iters;
  // iBOT's patches, drawn from the data seed (the rank is the caller's).
  cfg->ibot = (dl_ibot_select){.selected = t->ibot_selected != 0, .probability = t->ibot_mask_probability,
                               .ratio_lo = t->ibot_mask_ratio_lo, .ratio_hi = t->ibot_mask_ratio_hi, .seed = r->seed};
  if (teacher_heads) {
    for (int k = 0; k < 2; k++) {
      dl_head_config *h = k ? &cfg->ibot_head : &cfg->dino_head;
      *h = (dl_head_config){.in_dim = student_dim, .hidden_dim = t->head_hidden,
                            .out_dim = teacher_heads[k].cfg.out_dim, .nlayers = t->head_layers,
                            .prototypes = teacher_heads[k].cfg.prototypes};
    }
  }
  cfg->teacher_dim = t->teacher_dim;
  cfg->adamw = dl_adamw_config_default();
  cfg->adamw.beta1 = o->beta1;
  cfg->adamw.beta2 = o->beta2;
  cfg->adamw.eps = o->eps;
  cfg->adamw.layer_decay = o->layer_decay;
  cfg->adamw.patch_embed_lr_mult = o->patch_embed_lr_mult;
  cfg->adamw.clip = o->clip;
  dl_student_main_schedules(r, &cfg->sched);
}

long dl_student_total_steps(const dl_recipe *r) { return r->train.steps + r->hires.steps; }

// DINOv2: lr = base_lr * sqrt(batch_size_total / 1024).
static double lr_scale(const dl_recipe *r) { return r->optim.scale_lr ? sqrt(r->train.batch / 1024.0) : 1.0; }

void dl_student_main_schedules(const dl_recipe *r, dl_train_schedules *s) {
  const dl_recipe_train *t = &r->train;
  const dl_recipe_optim *o = &r->optim;
  const long steps = t->steps;
  s->lr = cosine(o->lr * lr_scale(r), o->min_lr, steps, o->warmup, o->warmup_lr);
  s->last_layer_lr = s->lr;
  s->last_layer_lr.zero_until = o->freeze_last_layer;
  s->wd = cosine(o->weight_decay, o->weight_decay_end, steps, 0, 0);
  s->momentum = cosine(r->ema.momentum, r->ema.momentum_end, steps, 0, 0);
  s->teacher_temp = cosine(t->teacher_temp, t->teacher_temp, steps, t->teacher_temp_warmup, t->teacher_temp_start);
}

void dl_student_hires_schedules(const dl_recipe *r, dl_train_schedules *s) {
  const dl_recipe_hires *h = &r->hires;
  const long start = r->train.steps, end = dl_student_total_steps(r);
  // `freeze` starts each schedule at the phase's first step (0 before it,
  // where the main phase's schedules apply instead).
  s->lr = cosine(h->lr * lr_scale(r), h->min_lr, end, h->warmup, 0.0);
  s->wd = cosine(h->weight_decay, h->weight_decay, end, 0, 0);
  s->momentum = cosine(h->momentum, h->momentum_end, end, 0, 0);
  s->teacher_temp = cosine(h->teacher_temp, h->teacher_temp, end, 0, 0);
  s->lr.freeze = s->wd.freeze = s->momentum.freeze = s->teacher_temp.freeze = start;
  s->last_layer_lr = s->lr;  // the last layer was frozen at most at the start of the main phase
}

void dl_student_hires_config(const dl_recipe *r, dl_train_config *cfg) {
  cfg->global_size = r->hires.size;
  cfg->local_size = r->hires.local_size;
  dl_student_hires_schedules(r, &cfg->sched);
}

double dl_student_ema_hires_share(const dl_recipe *r, long steps_done) {
  dl_train_schedules s;
  dl_student_hires_schedules(r, &s);
  const long end = steps_done < dl_student_total_steps(r) ? steps_done : dl_student_total_steps(r);
  // The EMA after a step is m * EMA + (1 - m) * weights (model/optim.c): the
  // EMA as the main phase left it keeps the product of the phase's momenta.
  double log_kept = 0.0;
  for (long step = r->train.steps; step < end; step++) log_kept += log(dl_schedule_at(&s.momentum, step));
  return -expm1(log_kept);
}
