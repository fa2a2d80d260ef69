#include "recipe/recipe.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/file_io.h"
#include "recipe/recipe_util.h"
#include "transport/xxhash64.h"

int dl_recipe_fail(const dl_recipe_ctx *c, const yaml_node_t *node, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return dl_fail(c->err, "%s:%lu: %s", c->name, (unsigned long)node->start_mark.line + 1, msg);
}

static const char *scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

int dl_recipe_int(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, long lo, long hi, long *out) {
  if (v->type != YAML_SCALAR_NODE) return dl_recipe_fail(c, v, "%s: expected an integer", key);
  char *end;
  errno = 0;
  long x = strtol(scalar(v), &end, 10);
  if (errno || end == scalar(v) || *end || x < lo || x > hi)
    return dl_recipe_fail(c, v, "%s: expected an integer in [%ld, %ld], got '%s'", key, lo, hi, scalar(v));
  *out = x;
  return 0;
}

int dl_recipe_int32(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, long lo, long hi, int *out) {
  long x = 0;
  if (dl_recipe_int(c, key, v, lo, hi, &x)) return -1;
  *out = (int)x;
  return 0;
}

int dl_recipe_double(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, double lo, double hi,
                     double *out) {
  if (v->type != YAML_SCALAR_NODE) return dl_recipe_fail(c, v, "%s: expected a number", key);
  char *end;
  double x = strtod(scalar(v), &end);
  if (end == scalar(v) || *end || !isfinite(x)) return dl_recipe_fail(c, v, "%s: '%s' is not a number", key, scalar(v));
  if (x < lo || x > hi) return dl_recipe_fail(c, v, "%s: %g is outside [%g, %g]", key, x, lo, hi);
  *out = x;
  return 0;
}

int dl_recipe_float(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, double lo, double hi,
                    float *out) {
  double x = 0;
  if (dl_recipe_double(c, key, v, lo, hi, &x)) return -1;
  *out = (float)x;
  return 0;
}

int dl_recipe_bool(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, bool *out) {
  static const char *const kChoices[] = {"false", "true", NULL};
  int i;
  if (dl_recipe_choice(c, key, v, kChoices, &i)) return -1;
  *out = i == 1;
  return 0;
}

int dl_recipe_string(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, char *out, size_t cap) {
  if (v->type != YAML_SCALAR_NODE || !*scalar(v)) return dl_recipe_fail(c, v, "%s: expected a string", key);
  if (strlen(scalar(v)) >= cap) return dl_recipe_fail(c, v, "%s: too long (at most %zu bytes)", key, cap - 1);
  snprintf(out, cap, "%s", scalar(v));
  return 0;
}

int dl_recipe_choice(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, const char *const *choices,
                     int *out) {
  char list[256] = "";
  for (int i = 0; choices[i]; i++) {
    if (v->type == YAML_SCALAR_NODE && strcmp(scalar(v), choices[i]) == 0) {
      *out = i;
      return 0;
    }
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", choices[i]);
  }
  return dl_recipe_fail(c, v, "%s: expected one of %s, got '%s'", key, list,
                        v->type == YAML_SCALAR_NODE ? scalar(v) : "(not a scalar)");
}

int dl_recipe_pair(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, double x[2]) {
  if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.top - v->data.sequence.items.start != 2)
    return dl_recipe_fail(c, v, "%s: expected [LOW, HIGH]", key);
  for (int i = 0; i < 2; i++) {
    yaml_node_t *e = yaml_document_get_node(c->doc, v->data.sequence.items.start[i]);
    char *end;
    if (!e || e->type != YAML_SCALAR_NODE) return dl_recipe_fail(c, v, "%s: expected [LOW, HIGH]", key);
    x[i] = strtod(scalar(e), &end);
    if (end == scalar(e) || *end || !isfinite(x[i])) return dl_recipe_fail(c, e, "%s: '%s' is not a number", key, scalar(e));
  }
  return 0;
}

// A [lo, hi] pair with 0 < lo <= hi <= 1.
static int get_scale(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, double *lo, double *hi) {
  double x[2];
  if (dl_recipe_pair(c, key, v, x)) return -1;
  if (!(x[0] > 0 && x[0] <= x[1] && x[1] <= 1)) return dl_recipe_fail(c, v, "%s: need 0 < LOW <= HIGH <= 1", key);
  *lo = x[0], *hi = x[1];
  return 0;
}

static int parse_data(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r) {
  long x;
  if (strcmp(key, "dataset") == 0) {
    if (v->type != YAML_SCALAR_NODE || !*scalar(v)) return dl_recipe_fail(c, v, "data.dataset: expected KIND:PATH");
    return dl_recipe_string(c, "data.dataset", v, r->dataset, sizeof r->dataset);
  }
  if (strcmp(key, "seed") == 0) {
    if (dl_recipe_int(c, "data.seed", v, 0, 2147483647L, &x)) return -1;
    r->seed = (uint64_t)x;
    return 0;
  }
  if (strcmp(key, "block_size") == 0) return dl_recipe_int32(c, "data.block_size", v, 1, 4096, &r->block_size);
  if (strcmp(key, "loader_threads") == 0)
    return dl_recipe_int32(c, "data.loader_threads", v, 1, 256, &r->loader_threads);
  return dl_recipe_fail(c, v, "unknown key '%s' in section data (dataset, seed, block_size, loader_threads)", key);
}

static int parse_crops(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r) {
  dl_crop_spec *s = &r->crops;
  if (strcmp(key, "global_count") == 0) return dl_recipe_int32(c, "crops.global_count", v, 1, 2, &s->global_count);
  if (strcmp(key, "local_count") == 0) return dl_recipe_int32(c, "crops.local_count", v, 0, 64, &s->local_count);
  if (strcmp(key, "global_size") == 0) return dl_recipe_int32(c, "crops.global_size", v, 8, 2048, &s->global_size);
  if (strcmp(key, "local_size") == 0) return dl_recipe_int32(c, "crops.local_size", v, 8, 2048, &s->local_size);
  if (strcmp(key, "global_scale") == 0)
    return get_scale(c, "crops.global_scale", v, &s->global_scale_lo, &s->global_scale_hi);
  if (strcmp(key, "local_scale") == 0)
    return get_scale(c, "crops.local_scale", v, &s->local_scale_lo, &s->local_scale_hi);
  return dl_recipe_fail(c, v, "unknown key '%s' in section crops (global_count, global_size, global_scale, "
                              "local_count, local_size, local_scale)", key);
}

// The recipe's sections. Another group of sections is one more line here
// and its parser in its own file.
static const struct {
  const char *name;
  dl_recipe_section_fn parse;
} kSections[] = {
    {"data", parse_data},
    {"crops", parse_crops},
    {"model", dl_recipe_parse_model},
    {"train", dl_recipe_parse_train},
    {"optim", dl_recipe_parse_optim},
    {"ema", dl_recipe_parse_ema},
    {"checkpoint", dl_recipe_parse_checkpoint},
    {"hires", dl_recipe_parse_hires},
    {"eval", dl_recipe_parse_eval},
};
enum { kNumSections = sizeof kSections / sizeof kSections[0] };

// libyaml keeps both copies of a repeated key; a repeat is refused so that
// which value wins is never a surprise.
static int check_unique_keys(const dl_recipe_ctx *c, const yaml_node_t *m, const char *where) {
  for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
    if (!k || k->type != YAML_SCALAR_NODE) continue;
    for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++) {
      yaml_node_t *e = yaml_document_get_node(c->doc, q->key);
      if (e && e->type == YAML_SCALAR_NODE && strcmp(scalar(e), scalar(k)) == 0)
        return dl_recipe_fail(c, k, "key '%s' repeated in %s", scalar(k), where);
    }
  }
  return 0;
}

static int parse_section(const dl_recipe_ctx *c, const char *section, const yaml_node_t *m, dl_recipe_section_fn fn,
                         dl_recipe *r) {
  if (m->type != YAML_MAPPING_NODE) return dl_recipe_fail(c, m, "section %s: expected a mapping", section);
  if (check_unique_keys(c, m, section) != 0) return -1;
  for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key), *v = yaml_document_get_node(c->doc, p->value);
    if (!k || !v || k->type != YAML_SCALAR_NODE) return dl_recipe_fail(c, m, "section %s: keys must be names", section);
    if (fn(c, scalar(k), v, r) != 0) return -1;
  }
  return 0;
}

static int parse_root(const dl_recipe_ctx *c, dl_recipe *r) {
  yaml_node_t *root = yaml_document_get_root_node(c->doc);
  if (!root) return dl_fail(c->err, "%s: empty recipe", c->name);
  if (root->type != YAML_MAPPING_NODE) return dl_recipe_fail(c, root, "expected sections (data, crops, model, ...)");
  if (check_unique_keys(c, root, "the recipe") != 0) return -1;
  int have_data = 0;
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key), *v = yaml_document_get_node(c->doc, p->value);
    if (!k || !v || k->type != YAML_SCALAR_NODE) return dl_recipe_fail(c, root, "section names must be plain names");
    // The teacher's sections parse themselves (recipe/recipe_teacher.c).
    if (strcmp(scalar(k), "teacher") == 0 || strcmp(scalar(k), "pretrain") == 0) {
      int rc = strcmp(scalar(k), "teacher") == 0
                   ? dl_recipe_parse_teacher(c->name, c->doc, v, &r->teacher, c->err)
                   : dl_recipe_parse_pretrain(c->name, c->doc, v, &r->pretrain, c->err);
      if (rc != 0) return -1;
      continue;
    }
    int i = 0;
    while (i < kNumSections && strcmp(scalar(k), kSections[i].name) != 0) i++;
    if (i == kNumSections) {
      char list[256] = "";
      for (int j = 0; j < kNumSections; j++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", j ? ", " : "", kSections[j].name);
      return dl_recipe_fail(c, k, "unknown section '%s' (%s, teacher, pretrain)", scalar(k), list);
    }
    if (parse_section(c, kSections[i].name, v, kSections[i].parse, r) != 0) return -1;
    have_data |= i == 0;
    if (strcmp(kSections[i].name, "model") == 0) r->has_model = true;
    if (strcmp(kSections[i].name, "train") == 0) r->has_train = true;
  }
  if (!have_data || !r->dataset[0]) return dl_fail(c->err, "%s: data.dataset is required", c->name);
  if (dl_recipe_student_finish(c, r)) return -1;
  return dl_recipe_eval_finish(c, r);
}

int dl_recipe_parse(const char *name, const uint8_t *text, size_t n, dl_recipe *out, dl_err *err) {
  memset(out, 0, sizeof *out);
  out->block_size = 32;
  out->loader_threads = 2;
  out->crops = dl_crop_spec_dinov2();
  dl_recipe_student_defaults(out);
  dl_recipe_eval_defaults(out);
  dl_recipe_teacher_defaults(&out->teacher, &out->pretrain);
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser)) return dl_fail(err, "%s: cannot start the YAML parser", name);
  yaml_parser_set_input_string(&parser, text, n);
  if (!yaml_parser_load(&parser, &doc)) {
    int rc = dl_fail(err, "%s:%lu: YAML error: %s", name, (unsigned long)parser.problem_mark.line + 1,
                     parser.problem ? parser.problem : "unknown");
    yaml_parser_delete(&parser);
    return rc;
  }
  dl_recipe_ctx c = {name, &doc, err};
  int rc = parse_root(&c, out);
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  return rc;
}

int dl_recipe_load(const char *path, dl_recipe *out, dl_err *err) {
  dl_mapped_file f;
  if (dl_map_file(path, &f, err) != 0) return -1;
  int rc = dl_recipe_parse(path, f.data ? f.data : (const uint8_t *)"", f.size, out, err);
  dl_unmap_file(&f);
  return rc ? rc : dl_recipe_resolve_paths(out, path, err);
}

static int resolve_one(char *path, size_t dir_len, const char *recipe_path, const char *key, dl_err *err) {
  if (!path[0] || path[0] == '/') return 0;
  char joined[DL_RECIPE_PATH_MAX];
  if (snprintf(joined, sizeof joined, "%.*s/%s", (int)dir_len, recipe_path, path) >= (int)sizeof joined)
    return dl_fail(err, "%s: the path joined to the recipe's folder is longer than %d bytes (recipe %s)", key,
                   DL_RECIPE_PATH_MAX - 1, recipe_path);
  memcpy(path, joined, sizeof joined);
  return 0;
}

int dl_recipe_resolve_paths(dl_recipe *r, const char *recipe_path, dl_err *err) {
  const char *slash = strrchr(recipe_path, '/');
  if (!slash) return 0;  // the recipe is in the working folder: its relative paths already hold
  const size_t dir_len = (size_t)(slash - recipe_path);  // 0 for a recipe in /: "/" + path
  if (resolve_one(r->teacher.weights, dir_len, recipe_path, "teacher.weights", err) ||
      resolve_one(r->teacher.heads, dir_len, recipe_path, "teacher.heads", err) ||
      resolve_one(r->train.teacher_heads, dir_len, recipe_path, "train.teacher_heads", err))
    return -1;
  return 0;
}

size_t dl_recipe_stream_text(const dl_recipe *r, char *buf, size_t n) {
  const dl_crop_spec *s = &r->crops;
  int k = snprintf(buf, n,
                   "data.dataset=%s;data.seed=%llu;data.block_size=%d;crops.global_count=%d;crops.global_size=%d;"
                   "crops.global_scale=%.15g,%.15g;crops.local_count=%d;crops.local_size=%d;crops.local_scale=%.15g,%.15g",
                   r->dataset, (unsigned long long)r->seed, r->block_size, s->global_count, s->global_size,
                   s->global_scale_lo, s->global_scale_hi, s->local_count, s->local_size, s->local_scale_lo,
                   s->local_scale_hi);
  return k < 0 ? 0 : (size_t)k < n ? (size_t)k : n - 1;
}

uint64_t dl_recipe_stream_hash(const dl_recipe *r) {
  char text[DL_RECIPE_STREAM_TEXT_MAX];
  return dl_xxhash64(text, dl_recipe_stream_text(r, text, sizeof text), 0);
}

int dl_recipe_rank_blocks(const dl_recipe *r, int world, int *blocks_per_rank, dl_err *err) {
  const int per_block = r->block_size * world;
  if (world < 1 || r->train.batch % per_block)
    return dl_fail(err, "train.batch %d does not split into whole blocks of %d samples over %d rank(s)",
                   r->train.batch, r->block_size, world);
  *blocks_per_rank = r->train.batch / per_block;
  return 0;
}
