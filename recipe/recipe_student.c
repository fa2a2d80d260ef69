// The student's recipe sections: model, train, optim, ema, checkpoint, hires
// (docs/recipes.md). Defaults are DINOv2's distillation values; a key that is
// not listed here is refused with FILE:LINE.
#include <math.h>
#include <string.h>

#include "model/ibot_masks.h"
#include "recipe/recipe_util.h"

#define KEY(name) (strcmp(key, name) == 0)

// A model size by name (DINOv2's vit_small/base/large/giant2).
typedef struct preset {
  const char *name;
  int dim, depth, heads, ffn_hidden, swiglu;
} preset;
static const preset kPresets[] = {
    {"small", 384, 12, 6, 1536, 0},
    {"base", 768, 12, 12, 3072, 0},
    {"large", 1024, 24, 16, 4096, 0},
    {"giant", 1536, 40, 24, 4096, 1},
};
static const char *const kSizeNames[] = {"small", "base", "large", "giant", NULL};

void dl_recipe_student_defaults(dl_recipe *r) {
  r->model = (dl_recipe_model){.size = -1, .patch = 14, .interp = -1, .layerscale = 1e-5f, .seed = 0};
  r->train = (dl_recipe_train){
      .prototypes = 0, .batch = 0, .steps = 0, .head_hidden = 2048, .head_layers = 3,
      .dino_weight = 1.0f, .ibot_weight = 1.0f, .koleo_weight = 0.1f,
      .feat_cls_weight = 1.0f, .feat_cos_weight = 0.9f, .feat_l1_weight = 0.1f,
      .student_temp = 0.1f, .teacher_temp = 0.07f, .teacher_temp_start = 0.04f, .teacher_temp_warmup = 0,
      .sinkhorn = 1, .center_momentum = 0.9f, .sk_iters = 3, .window = 8,
      .ibot_selected = 1, .ibot_mask_probability = 0.5f, .ibot_mask_ratio_lo = 0.1f, .ibot_mask_ratio_hi = 0.5f};
  r->optim = (dl_recipe_optim){.lr = 1e-3, .min_lr = 1e-6, .warmup_lr = 0.0, .scale_lr = 1, .warmup = 0,
                               .weight_decay = 0.04, .weight_decay_end = 0.2, .layer_decay = 0.9f,
                               .patch_embed_lr_mult = 0.2f, .clip = 3.0f, .beta1 = 0.9f, .beta2 = 0.999f,
                               .eps = 1e-8f, .freeze_last_layer = 0};
  r->ema = (dl_recipe_ema){.momentum = 0.994, .momentum_end = 1.0};
  r->checkpoint = (dl_recipe_checkpoint){.every_steps = 0, .every_minutes = 0, .keep = 3, .keep_best = 1,
                                         .best_metric = DL_EVAL_KNN_TOP1};
  // Negative (or 0 for sizes and the temperature): derived in finish_hires.
  r->hires = (dl_recipe_hires){.steps = 0, .size = 518, .local_size = 0, .lr = -1, .min_lr = -1, .warmup = -1,
                               .weight_decay = -1, .momentum = -1, .momentum_end = -1, .teacher_temp = 0};
}

int dl_recipe_parse_model(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r) {
  dl_recipe_model *m = &r->model;
  static const char *const kFfn[] = {"mlp", "swiglu", NULL}, *const kInterp[] = {"legacy", "antialias", "auto", NULL};
  if (KEY("size")) return dl_recipe_choice(c, "model.size", v, kSizeNames, &m->size);
  if (KEY("patch")) return dl_recipe_int32(c, "model.patch", v, 1, 64, &m->patch);
  if (KEY("dim")) return dl_recipe_int32(c, "model.dim", v, 1, 16384, &m->dim);
  if (KEY("depth")) return dl_recipe_int32(c, "model.depth", v, 1, 256, &m->depth);
  if (KEY("heads")) return dl_recipe_int32(c, "model.heads", v, 1, 256, &m->heads);
  if (KEY("ffn_hidden")) return dl_recipe_int32(c, "model.ffn_hidden", v, 1, 65536, &m->ffn_hidden);
  if (KEY("registers")) return dl_recipe_int32(c, "model.registers", v, 0, 64, &m->registers);
  if (KEY("ffn")) return dl_recipe_choice(c, "model.ffn", v, kFfn, &m->swiglu);
  if (KEY("interp")) {
    int i;
    if (dl_recipe_choice(c, "model.interp", v, kInterp, &i)) return -1;
    m->interp = i == 2 ? -1 : i;
    return 0;
  }
  if (KEY("layerscale")) return dl_recipe_float(c, "model.layerscale", v, 0.0, 10.0, &m->layerscale);
  if (KEY("drop_path")) {
    if (dl_recipe_float(c, "model.drop_path", v, 0.0, 1.0, &m->drop_path)) return -1;
    if (m->drop_path != 0.0f) return dl_recipe_fail(c, v, "model.drop_path: only 0 is supported (distillation uses none)");
    return 0;
  }
  if (KEY("seed")) {
    long x;
    if (dl_recipe_int(c, "model.seed", v, 0, 2147483647L, &x)) return -1;
    m->seed = (uint64_t)x;
    return 0;
  }
  return dl_recipe_fail(c, v, "unknown key '%s' in section model (size, patch, dim, depth, heads, ffn, ffn_hidden, "
                              "registers, interp, layerscale, drop_path, seed)", key);
}

// iBOT's patches: DINOv3's selection (the collate's masks, scored on an
// unmasked student) or every patch of the global crops.
static int parse_ibot(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe_train *t) {
  static const char *const kPatches[] = {"all", "selected", NULL};
  if (KEY("ibot_patches")) return dl_recipe_choice(c, "train.ibot_patches", v, kPatches, &t->ibot_selected);
  if (KEY("ibot_mask_probability"))
    return dl_recipe_float(c, "train.ibot_mask_probability", v, 0, 1, &t->ibot_mask_probability);
  double x[2];
  if (dl_recipe_pair(c, "train.ibot_mask_ratio", v, x)) return -1;
  if (!(x[0] >= 0 && x[0] <= x[1] && x[1] <= 1))
    return dl_recipe_fail(c, v, "train.ibot_mask_ratio: need 0 <= LOW <= HIGH <= 1");
  t->ibot_mask_ratio_lo = (float)x[0], t->ibot_mask_ratio_hi = (float)x[1];
  return 0;
}

// A selection that picks no patch even with the whole batch on one rank
// (the trainer checks each rank's share).
static int finish_ibot(const dl_recipe_ctx *c, const dl_recipe *r) {
  const dl_recipe_train *t = &r->train;
  if (!t->prototypes || !t->ibot_selected || t->ibot_weight == 0.0f) return 0;
  const int grid = r->crops.global_size / r->model.patch;
  if (dl_ibot_selected_upper_bound(r->crops.global_count * t->batch, grid * grid, t->ibot_mask_probability,
                                   t->ibot_mask_ratio_lo, t->ibot_mask_ratio_hi) > 0)
    return 0;
  return dl_fail(c->err, "%s: train.ibot_mask_probability %g and ibot_mask_ratio [%g, %g] select no patch "
                         "(raise them, or set train.ibot_weight to 0)", c->name, t->ibot_mask_probability,
                 t->ibot_mask_ratio_lo, t->ibot_mask_ratio_hi);
}

int dl_recipe_parse_train(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r) {
  dl_recipe_train *t = &r->train;
  static const char *const kTargets[] = {"features", "prototypes", NULL};
  static const char *const kCentering[] = {"centering", "sinkhorn", NULL};
  if (KEY("targets")) return dl_recipe_choice(c, "train.targets", v, kTargets, &t->prototypes);
  if (KEY("batch")) return dl_recipe_int32(c, "train.batch", v, 1, 1 << 20, &t->batch);
  if (KEY("steps")) return dl_recipe_int(c, "train.steps", v, 1, 1L << 40, &t->steps);
  if (KEY("teacher_dim")) return dl_recipe_int32(c, "train.teacher_dim", v, 1, 65536, &t->teacher_dim);
  if (KEY("teacher_heads")) return dl_recipe_string(c, "train.teacher_heads", v, t->teacher_heads, sizeof t->teacher_heads);
  if (KEY("head_hidden")) return dl_recipe_int32(c, "train.head_hidden", v, 1, 65536, &t->head_hidden);
  if (KEY("head_layers")) return dl_recipe_int32(c, "train.head_layers", v, 1, 8, &t->head_layers);
  if (KEY("dino_weight")) return dl_recipe_float(c, "train.dino_weight", v, 0, 1e3, &t->dino_weight);
  if (KEY("ibot_weight")) return dl_recipe_float(c, "train.ibot_weight", v, 0, 1e3, &t->ibot_weight);
  if (KEY("koleo_weight")) return dl_recipe_float(c, "train.koleo_weight", v, 0, 1e3, &t->koleo_weight);
  if (KEY("feat_cls_weight")) return dl_recipe_float(c, "train.feat_cls_weight", v, 0, 1e3, &t->feat_cls_weight);
  if (KEY("feat_cos_weight")) return dl_recipe_float(c, "train.feat_cos_weight", v, 0, 1e3, &t->feat_cos_weight);
  if (KEY("feat_l1_weight")) return dl_recipe_float(c, "train.feat_l1_weight", v, 0, 1e3, &t->feat_l1_weight);
  if (KEY("student_temp")) return dl_recipe_float(c, "train.student_temp", v, 1e-4, 10, &t->student_temp);
  if (KEY("teacher_temp")) return dl_recipe_float(c, "train.teacher_temp", v, 1e-4, 10, &t->teacher_temp);
  if (KEY("teacher_temp_start"))
    return dl_recipe_float(c, "train.teacher_temp_start", v, 1e-4, 10, &t->teacher_temp_start);
  if (KEY("teacher_temp_warmup"))
    return dl_recipe_int(c, "train.teacher_temp_warmup", v, 0, 1L << 40, &t->teacher_temp_warmup);
  if (KEY("centering")) return dl_recipe_choice(c, "train.centering", v, kCentering, &t->sinkhorn);
  if (KEY("center_momentum")) return dl_recipe_float(c, "train.center_momentum", v, 0, 1, &t->center_momentum);
  if (KEY("sk_iters")) return dl_recipe_int32(c, "train.sk_iters", v, 1, 100, &t->sk_iters);
  if (KEY("window")) return dl_recipe_int32(c, "train.window", v, 1, 1024, &t->window);
  if (KEY("ibot_patches") || KEY("ibot_mask_probability") || KEY("ibot_mask_ratio")) return parse_ibot(c, key, v, t);
  return dl_recipe_fail(c, v, "unknown key '%s' in section train (targets, batch, steps, teacher_dim, teacher_heads, "
                              "head_hidden, head_layers, dino_weight, ibot_weight, koleo_weight, feat_cls_weight, "
                              "feat_cos_weight, feat_l1_weight, student_temp, teacher_temp, teacher_temp_start, "
                              "teacher_temp_warmup, centering, center_momentum, sk_iters, window, ibot_patches, "
                              "ibot_mask_probability, ibot_mask_ratio)", key);
}

int dl_recipe_parse_optim(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r) {
  dl_recipe_optim *o = &r->optim;
  static const char *const kScale[] = {"none", "sqrt", NULL};
  if (KEY("lr")) return dl_recipe_double(c, "optim.lr", v, 0, 10, &o->lr);
  if (KEY("min_lr")) return dl_recipe_double(c, "optim.min_lr", v, 0, 10, &o->min_lr);
  if (KEY("warmup_lr")) return dl_recipe_double(c, "optim.warmup_lr", v, 0, 10, &o->warmup_lr);
  if (KEY("lr_scaling")) return dl_recipe_choice(c, "optim.lr_scaling", v, kScale, &o->scale_lr);
  if (KEY("warmup")) return dl_recipe_int(c, "optim.warmup", v, 0, 1L << 40, &o->warmup);
  if (KEY("weight_decay")) return dl_recipe_double(c, "optim.weight_decay", v, 0, 10, &o->weight_decay);
  if (KEY("weight_decay_end")) return dl_recipe_double(c, "optim.weight_decay_end", v, 0, 10, &o->weight_decay_end);
  if (KEY("layer_decay")) return dl_recipe_float(c, "optim.layer_decay", v, 1e-6, 1, &o->layer_decay);
  if (KEY("patch_embed_lr_mult"))
    return dl_recipe_float(c, "optim.patch_embed_lr_mult", v, 0, 100, &o->patch_embed_lr_mult);
  if (KEY("clip")) return dl_recipe_float(c, "optim.clip", v, 0, 1e6, &o->clip);
  if (KEY("beta1")) return dl_recipe_float(c, "optim.beta1", v, 0, 0.999999, &o->beta1);
  if (KEY("beta2")) return dl_recipe_float(c, "optim.beta2", v, 0, 0.999999, &o->beta2);
  if (KEY("eps")) return dl_recipe_float(c, "optim.eps", v, 1e-30, 1, &o->eps);
  if (KEY("freeze_last_layer")) return dl_recipe_int(c, "optim.freeze_last_layer", v, 0, 1L << 40, &o->freeze_last_layer);
  return dl_recipe_fail(c, v, "unknown key '%s' in section optim (lr, min_lr, warmup_lr, lr_scaling, warmup, "
                              "weight_decay, weight_decay_end, layer_decay, patch_embed_lr_mult, clip, beta1, "
                              "beta2, eps, freeze_last_layer)", key);
}

int dl_recipe_parse_ema(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r) {
  if (KEY("momentum")) return dl_recipe_double(c, "ema.momentum", v, 0, 1, &r->ema.momentum);
  if (KEY("momentum_end")) return dl_recipe_double(c, "ema.momentum_end", v, 0, 1, &r->ema.momentum_end);
  return dl_recipe_fail(c, v, "unknown key '%s' in section ema (momentum, momentum_end)", key);
}

int dl_recipe_parse_checkpoint(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r) {
  dl_recipe_checkpoint *k = &r->checkpoint;
  if (KEY("dir")) return dl_recipe_string(c, "checkpoint.dir", v, k->dir, sizeof k->dir);
  if (KEY("every_steps")) return dl_recipe_int(c, "checkpoint.every_steps", v, 0, 1L << 40, &k->every_steps);
  if (KEY("every_minutes")) return dl_recipe_double(c, "checkpoint.every_minutes", v, 0, 1e6, &k->every_minutes);
  if (KEY("keep")) return dl_recipe_int32(c, "checkpoint.keep", v, 1, 100000, &k->keep);
  if (KEY("keep_best")) return dl_recipe_int32(c, "checkpoint.keep_best", v, 0, 100000, &k->keep_best);
  static const char *const kMetrics[] = {"knn_top1", "linear_top1", NULL};
  if (KEY("best_metric")) return dl_recipe_choice(c, "checkpoint.best_metric", v, kMetrics, &k->best_metric);
  return dl_recipe_fail(c, v, "unknown key '%s' in section checkpoint (dir, every_steps, every_minutes, keep, "
                              "keep_best, best_metric)", key);
}

int dl_recipe_parse_hires(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r) {
  dl_recipe_hires *h = &r->hires;
  if (KEY("steps")) return dl_recipe_int(c, "hires.steps", v, 0, 1L << 40, &h->steps);
  if (KEY("size")) return dl_recipe_int32(c, "hires.size", v, 8, 4096, &h->size);
  if (KEY("local_size")) return dl_recipe_int32(c, "hires.local_size", v, 8, 2048, &h->local_size);
  if (KEY("lr")) return dl_recipe_double(c, "hires.lr", v, 0, 10, &h->lr);
  if (KEY("min_lr")) return dl_recipe_double(c, "hires.min_lr", v, 0, 10, &h->min_lr);
  if (KEY("warmup")) return dl_recipe_int(c, "hires.warmup", v, 0, 1L << 40, &h->warmup);
  if (KEY("weight_decay")) return dl_recipe_double(c, "hires.weight_decay", v, 0, 10, &h->weight_decay);
  if (KEY("momentum")) return dl_recipe_double(c, "hires.momentum", v, 0, 1, &h->momentum);
  if (KEY("momentum_end")) return dl_recipe_double(c, "hires.momentum_end", v, 0, 1, &h->momentum_end);
  if (KEY("teacher_temp")) return dl_recipe_float(c, "hires.teacher_temp", v, 1e-4, 10, &h->teacher_temp);
  return dl_recipe_fail(c, v, "unknown key '%s' in section hires (steps, size, local_size, lr, min_lr, warmup, "
                              "weight_decay, momentum, momentum_end, teacher_temp)", key);
}

// The high-resolution phase's keys left out, from DINOv3's high-resolution
// adaptation (dinov3/configs/train/dinov3_vit7b16_high_res_adapt.yaml; the
// sources are listed in docs/recipes.md), then its cross-key checks.
static int finish_hires(const dl_recipe_ctx *c, dl_recipe *r) {
  dl_recipe_hires *h = &r->hires;
  const double scale = r->optim.scale_lr ? sqrt(r->train.batch / 1024.0) : 1.0;
  if (h->local_size <= 0) h->local_size = r->crops.local_size;
  if (h->lr < 0) h->lr = r->optim.lr / 4.0;          // 1.25e-5 after a 5e-5 pretraining
  if (h->min_lr < 0) h->min_lr = h->lr * scale;      // the peak held to the end
  if (h->warmup < 0) h->warmup = h->steps / 3;       // 10 of its 30 epochs
  if (h->weight_decay < 0) h->weight_decay = r->optim.weight_decay_end;  // the main phase's last value
  if (h->momentum < 0) h->momentum = 0.999;          // constant 0.999
  if (h->momentum_end < 0) h->momentum_end = h->momentum;
  if (h->teacher_temp <= 0.0f) h->teacher_temp = r->train.teacher_temp;  // 0.07, its main value
  if (!h->steps) return 0;
  const int patch = r->model.patch;
  if (h->size % patch)
    return dl_fail(c->err, "%s: hires.size %d is not a multiple of model.patch %d", c->name, h->size, patch);
  if (r->crops.local_count && h->local_size % patch)
    return dl_fail(c->err, "%s: hires.local_size %d is not a multiple of model.patch %d", c->name, h->local_size,
                   patch);
  if (h->warmup > h->steps)
    return dl_fail(c->err, "%s: hires.warmup %ld exceeds hires.steps %ld", c->name, h->warmup, h->steps);
  return 0;
}

int dl_recipe_student_finish(const dl_recipe_ctx *c, dl_recipe *r) {
  dl_recipe_model *m = &r->model;
  if (m->size >= 0) {  // explicit keys win wherever they stand in the file
    const preset *p = &kPresets[m->size];
    if (!m->dim) m->dim = p->dim;
    if (!m->depth) m->depth = p->depth;
    if (!m->heads) m->heads = p->heads;
    if (!m->ffn_hidden) m->ffn_hidden = p->ffn_hidden, m->swiglu = p->swiglu;
  }
  if (!r->has_model && !r->has_train) return 0;  // a data-only recipe (teacher, preview)
  if (!m->dim || !m->depth || !m->ffn_hidden)
    return dl_fail(c->err, "%s: model needs size (small, base, large, giant) or dim, depth and ffn_hidden", c->name);
  if (!m->heads) m->heads = m->dim / 64 ? m->dim / 64 : 1;
  if (m->dim % m->heads) return dl_fail(c->err, "%s: model.dim %d is not a multiple of model.heads %d", c->name, m->dim, m->heads);
  const dl_crop_spec *s = &r->crops;
  if (s->global_size % m->patch || (s->local_count && s->local_size % m->patch))
    return dl_fail(c->err, "%s: crops.global_size %d and crops.local_size %d must be multiples of model.patch %d",
                   c->name, s->global_size, s->local_size, m->patch);
  if (r->train.batch <= 0 || r->train.steps <= 0) return dl_fail(c->err, "%s: train.batch and train.steps are required", c->name);
  if (r->train.batch % r->block_size)
    return dl_fail(c->err, "%s: train.batch %d is not a multiple of data.block_size %d", c->name, r->train.batch,
                   r->block_size);
  if (r->train.prototypes && !r->train.teacher_heads[0])
    return dl_fail(c->err, "%s: train.targets prototypes needs train.teacher_heads (the teacher's DINO and iBOT heads)", c->name);
  if (finish_ibot(c, r)) return -1;
  if (r->optim.warmup > r->train.steps || r->train.teacher_temp_warmup > r->train.steps)
    return dl_fail(c->err, "%s: optim.warmup and train.teacher_temp_warmup must not exceed train.steps", c->name);
  return finish_hires(c, r);
}
