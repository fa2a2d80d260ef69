// The teacher: and pretrain: recipe sections, table-driven: each key has a
// type, a range and a place in the struct, so adding a knob is one line and
// every bad value gets the same FILE:LINE message.
#include "recipe/recipe_teacher.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef enum { K_INT, K_LONG, K_DOUBLE, K_STRING, K_TARGET, K_RATIO_PAIR } key_kind;

typedef struct key_spec {
  const char *name;
  key_kind kind;
  size_t offset, size;  // size: string capacity
  double lo, hi;
} key_spec;

#define STR(s, f) {#f, K_STRING, offsetof(s, f), sizeof(((s *)0)->f), 0, 0}
#define NUM(s, f, kind, lo, hi) {#f, kind, offsetof(s, f), 0, lo, hi}

static const key_spec kTeacherKeys[] = {
    STR(dl_recipe_teacher, weights),
    STR(dl_recipe_teacher, heads),
    {"target", K_TARGET, offsetof(dl_recipe_teacher, target), 0, 0, 0},
    NUM(dl_recipe_teacher, batch, K_INT, 1, 4096),
    NUM(dl_recipe_teacher, cache_mb, K_INT, 0, 1 << 20),
    STR(dl_recipe_teacher, codec),
    NUM(dl_recipe_teacher, zstd_level, K_INT, 0, 22),
    NUM(dl_recipe_teacher, workers, K_INT, 1, 256),
    STR(dl_recipe_teacher, lead_policy),
    NUM(dl_recipe_teacher, max_lead_mb, K_INT, 0, 1 << 24),
    NUM(dl_recipe_teacher, family_grace_s, K_DOUBLE, 0, 86400),
    STR(dl_recipe_teacher, spill_dir),
    NUM(dl_recipe_teacher, spill_mb, K_INT, 0, 1 << 30),
};

#define P(f, kind, lo, hi) NUM(dl_recipe_pretrain, f, kind, lo, hi)
static const key_spec kPretrainKeys[] = {
    P(patch, K_INT, 1, 64), P(dim, K_INT, 8, 4096), P(depth, K_INT, 1, 64), P(heads, K_INT, 1, 64),
    P(mlp_ratio, K_INT, 1, 16), P(layerscale, K_DOUBLE, 0, 10), P(head_hidden, K_INT, 1, 1 << 16),
    P(head_bottleneck, K_INT, 1, 1 << 16), P(head_prototypes, K_INT, 1, 1 << 20), P(head_layers, K_INT, 1, 8),
    P(batch, K_INT, 2, 1 << 16), P(steps, K_LONG, 1, 1e9), P(warmup_steps, K_LONG, 0, 1e9),
    P(freeze_last_layer_steps, K_LONG, 0, 1e9), P(teacher_temp_warmup_steps, K_LONG, 0, 1e9),
    P(lr, K_DOUBLE, 0, 10), P(min_lr, K_DOUBLE, 0, 10), P(weight_decay, K_DOUBLE, 0, 10),
    P(weight_decay_end, K_DOUBLE, 0, 10), P(momentum, K_DOUBLE, 0, 1), P(momentum_end, K_DOUBLE, 0, 1),
    P(teacher_temp_start, K_DOUBLE, 1e-4, 10), P(teacher_temp, K_DOUBLE, 1e-4, 10),
    P(student_temp, K_DOUBLE, 1e-4, 10), P(clip, K_DOUBLE, 0, 1e6), P(layer_decay, K_DOUBLE, 0, 1),
    P(patch_embed_lr_mult, K_DOUBLE, 0, 10), P(dino_weight, K_DOUBLE, 0, 100), P(ibot_weight, K_DOUBLE, 0, 100),
    P(koleo_weight, K_DOUBLE, 0, 100), P(mask_probability, K_DOUBLE, 0, 1),
    {"mask_ratio", K_RATIO_PAIR, offsetof(dl_recipe_pretrain, mask_ratio_lo), 0, 0, 0},
    P(sk_iters, K_INT, 1, 100), P(log_every, K_INT, 1, 1 << 30), P(save_every, K_INT, 0, 1 << 30),
};

void dl_recipe_teacher_defaults(dl_recipe_teacher *t, dl_recipe_pretrain *p) {
  memset(t, 0, sizeof *t);
  t->target = DL_TARGET_FEATURES;
  t->batch = 32;
  t->cache_mb = 1024;
  snprintf(t->codec, sizeof t->codec, "f32");
  t->workers = 2;
  snprintf(t->lead_policy, sizeof t->lead_policy, "pace");
  t->family_grace_s = 30;
  memset(p, 0, sizeof *p);
  *p = (dl_recipe_pretrain){
      .patch = 14, .dim = 192, .depth = 4, .heads = 3, .mlp_ratio = 4, .layerscale = 1e-5,
      .head_hidden = 512, .head_bottleneck = 128, .head_prototypes = 1024, .head_layers = 3,
      .batch = 64, .steps = 1000, .warmup_steps = 100, .freeze_last_layer_steps = 50,
      .teacher_temp_warmup_steps = 300, .lr = 1e-3, .min_lr = 1e-5, .weight_decay = 0.04,
      .weight_decay_end = 0.2, .momentum = 0.99, .momentum_end = 1.0, .teacher_temp_start = 0.04,
      .teacher_temp = 0.07, .student_temp = 0.1, .clip = 3.0, .layer_decay = 1.0, .patch_embed_lr_mult = 1.0,
      .dino_weight = 1.0, .ibot_weight = 1.0, .koleo_weight = 0.1, .mask_probability = 0.5,
      .mask_ratio_lo = 0.1, .mask_ratio_hi = 0.5, .sk_iters = 3, .log_every = 10, .save_every = 0};
}

static const char *scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static int line_of(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }

static int parse_number(const char *file, const char *section, const key_spec *k, const yaml_node_t *v, double *out,
                        dl_err *err) {
  const int integral = k->kind == K_INT || k->kind == K_LONG;
  if (v->type != YAML_SCALAR_NODE) return dl_fail(err, "%s:%d: %s.%s: expected a number", file, line_of(v), section, k->name);
  char *end;
  errno = 0;
  double x = integral ? (double)strtoll(scalar(v), &end, 10) : strtod(scalar(v), &end);
  if (errno || end == scalar(v) || *end || !isfinite(x) || x < k->lo || x > k->hi)
    return dl_fail(err, "%s:%d: %s.%s: expected %s in [%g, %g], got '%s'", file, line_of(v), section, k->name,
                   integral ? "an integer" : "a number", k->lo, k->hi, scalar(v));
  *out = x;
  return 0;
}

static int parse_ratio_pair(const char *file, const char *section, const key_spec *k, yaml_document_t *doc,
                            const yaml_node_t *v, double *lo_hi, dl_err *err) {
  if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.top - v->data.sequence.items.start != 2)
    return dl_fail(err, "%s:%d: %s.%s: expected [LOW, HIGH]", file, line_of(v), section, k->name);
  const key_spec unit = {k->name, K_DOUBLE, 0, 0, 0, 0.999};
  for (int i = 0; i < 2; i++) {
    yaml_node_t *e = yaml_document_get_node(doc, v->data.sequence.items.start[i]);
    if (!e || parse_number(file, section, &unit, e, &lo_hi[i], err)) return e ? -1 : dl_fail(err, "%s: bad list", file);
  }
  if (lo_hi[0] > lo_hi[1]) return dl_fail(err, "%s:%d: %s.%s: LOW above HIGH", file, line_of(v), section, k->name);
  return 0;
}

static int parse_value(const char *file, const char *section, const key_spec *k, yaml_document_t *doc,
                       const yaml_node_t *v, void *base, dl_err *err) {
  char *dst = (char *)base + k->offset;
  double x;
  switch (k->kind) {
    case K_STRING:
      if (v->type != YAML_SCALAR_NODE || !*scalar(v) || strlen(scalar(v)) >= k->size)
        return dl_fail(err, "%s:%d: %s.%s: expected a non-empty string shorter than %zu", file, line_of(v), section,
                       k->name, k->size);
      memcpy(dst, scalar(v), strlen(scalar(v)) + 1);
      return 0;
    case K_TARGET:
      if (v->type == YAML_SCALAR_NODE && strcmp(scalar(v), "features") == 0) *(dl_target_kind *)dst = DL_TARGET_FEATURES;
      else if (v->type == YAML_SCALAR_NODE && strcmp(scalar(v), "prototypes") == 0)
        *(dl_target_kind *)dst = DL_TARGET_PROTOTYPES;
      else if (v->type == YAML_SCALAR_NODE && strcmp(scalar(v), "both") == 0) *(dl_target_kind *)dst = DL_TARGET_BOTH;
      else return dl_fail(err, "%s:%d: %s.%s: expected features, prototypes or both", file, line_of(v), section, k->name);
      return 0;
    case K_RATIO_PAIR: return parse_ratio_pair(file, section, k, doc, v, (double *)dst, err);
    default: break;
  }
  if (parse_number(file, section, k, v, &x, err)) return -1;
  if (k->kind == K_INT) *(int *)dst = (int)x;
  else if (k->kind == K_LONG) *(long *)dst = (long)x;
  else *(double *)dst = x;
  return 0;
}

static int parse_mapping(const char *file, const char *section, yaml_document_t *doc, const yaml_node_t *m,
                         const key_spec *keys, int nkeys, void *base, dl_err *err) {
  if (m->type != YAML_MAPPING_NODE) return dl_fail(err, "%s:%d: section %s: expected a mapping", file, line_of(m), section);
  for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(doc, p->key), *v = yaml_document_get_node(doc, p->value);
    if (!k || !v || k->type != YAML_SCALAR_NODE)
      return dl_fail(err, "%s:%d: section %s: keys must be names", file, line_of(m), section);
    for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++) {
      yaml_node_t *e = yaml_document_get_node(doc, q->key);
      if (e && e->type == YAML_SCALAR_NODE && strcmp(scalar(e), scalar(k)) == 0)
        return dl_fail(err, "%s:%d: key '%s' repeated in %s", file, line_of(k), scalar(k), section);
    }
    int i = 0;
    while (i < nkeys && strcmp(keys[i].name, scalar(k)) != 0) i++;
    if (i == nkeys) return dl_fail(err, "%s:%d: unknown key '%s' in section %s", file, line_of(k), scalar(k), section);
    if (parse_value(file, section, &keys[i], doc, v, base, err)) return -1;
  }
  return 0;
}

int dl_recipe_parse_teacher(const char *file, void *doc, const void *node, dl_recipe_teacher *out, dl_err *err) {
  const yaml_node_t *m = node;
  if (parse_mapping(file, "teacher", doc, m, kTeacherKeys, (int)(sizeof kTeacherKeys / sizeof kTeacherKeys[0]), out,
                    err))
    return -1;
  if (!out->weights[0]) return dl_fail(err, "%s:%d: teacher.weights is required", file, line_of(m));
  if (out->target != DL_TARGET_FEATURES && !out->heads[0])
    return dl_fail(err, "%s:%d: teacher.heads is required with target: prototypes or both", file, line_of(m));
  out->present = true;
  return 0;
}

int dl_recipe_parse_pretrain(const char *file, void *doc, const void *node, dl_recipe_pretrain *out, dl_err *err) {
  const yaml_node_t *m = node;
  if (parse_mapping(file, "pretrain", doc, m, kPretrainKeys, (int)(sizeof kPretrainKeys / sizeof kPretrainKeys[0]),
                    out, err))
    return -1;
  if (out->dim % out->heads) return dl_fail(err, "%s:%d: pretrain.dim must be a multiple of pretrain.heads", file, line_of(m));
  if (out->warmup_steps > out->steps) return dl_fail(err, "%s:%d: pretrain.warmup_steps exceeds steps", file, line_of(m));
  out->present = true;
  return 0;
}
