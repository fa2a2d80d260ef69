#include "recipe/recipe.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/file_io.h"

typedef struct parse_ctx {
  const char *name;
  yaml_document_t *doc;
  dl_err *err;
} parse_ctx;

static int fail_at(const parse_ctx *c, const yaml_node_t *node, const char *fmt, const char *a, const char *b) {
  char msg[400];
  snprintf(msg, sizeof msg, fmt, a, b);
  return dl_fail(c->err, "%s:%lu: %s", c->name, (unsigned long)node->start_mark.line + 1, msg);
}

static const char *scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static int get_int(const parse_ctx *c, const char *key, const yaml_node_t *v, long lo, long hi, long *out) {
  if (v->type != YAML_SCALAR_NODE) return fail_at(c, v, "%s: expected an integer%s", key, "");
  char *end;
  errno = 0;
  long x = strtol(scalar(v), &end, 10);
  if (errno || end == scalar(v) || *end || x < lo || x > hi) {
    char range[64];
    snprintf(range, sizeof range, " in [%ld, %ld]", lo, hi);
    return fail_at(c, v, "%s: expected an integer%s", key, range);
  }
  *out = x;
  return 0;
}

// A [lo, hi] pair with 0 < lo <= hi <= 1.
static int get_scale(const parse_ctx *c, const char *key, const yaml_node_t *v, double *lo, double *hi) {
  double x[2];
  if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.top - v->data.sequence.items.start != 2)
    return fail_at(c, v, "%s: expected [LOW, HIGH]%s", key, "");
  for (int i = 0; i < 2; i++) {
    yaml_node_t *e = yaml_document_get_node(c->doc, v->data.sequence.items.start[i]);
    char *end;
    if (!e || e->type != YAML_SCALAR_NODE) return fail_at(c, v, "%s: expected [LOW, HIGH]%s", key, "");
    x[i] = strtod(scalar(e), &end);
    if (end == scalar(e) || *end || !isfinite(x[i])) return fail_at(c, e, "%s: '%s' is not a number", key, scalar(e));
  }
  if (!(x[0] > 0 && x[0] <= x[1] && x[1] <= 1))
    return fail_at(c, v, "%s: need 0 < LOW <= HIGH <= 1%s", key, "");
  *lo = x[0], *hi = x[1];
  return 0;
}

static int parse_data(const parse_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r) {
  long x;
  if (strcmp(key, "dataset") == 0) {
    if (v->type != YAML_SCALAR_NODE || !*scalar(v)) return fail_at(c, v, "data.dataset: expected KIND:PATH%s%s", "", "");
    if (strlen(scalar(v)) >= sizeof r->dataset) return fail_at(c, v, "data.dataset: too long%s%s", "", "");
    snprintf(r->dataset, sizeof r->dataset, "%s", scalar(v));
    return 0;
  }
  if (strcmp(key, "seed") == 0) {
    if (get_int(c, "data.seed", v, 0, 2147483647L, &x)) return -1;
    r->seed = (uint64_t)x;
    return 0;
  }
  if (strcmp(key, "block_size") == 0) {
    if (get_int(c, "data.block_size", v, 1, 4096, &x)) return -1;
    r->block_size = (int)x;
    return 0;
  }
  if (strcmp(key, "loader_threads") == 0) {
    if (get_int(c, "data.loader_threads", v, 1, 256, &x)) return -1;
    r->loader_threads = (int)x;
    return 0;
  }
  return fail_at(c, v, "unknown key '%s' in section data (dataset, seed, block_size, loader_threads)%s", key, "");
}

static int parse_crops(const parse_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r) {
  dl_crop_spec *s = &r->crops;
  long x;
  if (strcmp(key, "global_count") == 0) {
    if (get_int(c, "crops.global_count", v, 1, 2, &x)) return -1;
    s->global_count = (int)x;
  } else if (strcmp(key, "local_count") == 0) {
    if (get_int(c, "crops.local_count", v, 0, 64, &x)) return -1;
    s->local_count = (int)x;
  } else if (strcmp(key, "global_size") == 0) {
    if (get_int(c, "crops.global_size", v, 8, 2048, &x)) return -1;
    s->global_size = (int)x;
  } else if (strcmp(key, "local_size") == 0) {
    if (get_int(c, "crops.local_size", v, 8, 2048, &x)) return -1;
    s->local_size = (int)x;
  } else if (strcmp(key, "global_scale") == 0) {
    return get_scale(c, "crops.global_scale", v, &s->global_scale_lo, &s->global_scale_hi);
  } else if (strcmp(key, "local_scale") == 0) {
    return get_scale(c, "crops.local_scale", v, &s->local_scale_lo, &s->local_scale_hi);
  } else {
    return fail_at(c, v, "unknown key '%s' in section crops (global_count, global_size, global_scale, "
                         "local_count, local_size, local_scale)%s", key, "");
  }
  return 0;
}

typedef int (*section_parser)(const parse_ctx *, const char *, const yaml_node_t *, dl_recipe *);

// libyaml keeps both copies of a repeated key; a repeat is refused so that
// which value wins is never a surprise.
static int check_unique_keys(const parse_ctx *c, const yaml_node_t *m, const char *where) {
  for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
    if (!k || k->type != YAML_SCALAR_NODE) continue;
    for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++) {
      yaml_node_t *e = yaml_document_get_node(c->doc, q->key);
      if (e && e->type == YAML_SCALAR_NODE && strcmp(scalar(e), scalar(k)) == 0)
        return fail_at(c, k, "key '%s' repeated in %s", scalar(k), where);
    }
  }
  return 0;
}

static int parse_section(const parse_ctx *c, const char *section, const yaml_node_t *m, section_parser fn, dl_recipe *r) {
  if (m->type != YAML_MAPPING_NODE) return fail_at(c, m, "section %s: expected a mapping%s", section, "");
  if (check_unique_keys(c, m, section) != 0) return -1;
  for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key), *v = yaml_document_get_node(c->doc, p->value);
    if (!k || !v || k->type != YAML_SCALAR_NODE) return fail_at(c, m, "section %s: keys must be names%s", section, "");
    if (fn(c, scalar(k), v, r) != 0) return -1;
  }
  return 0;
}

static int parse_root(const parse_ctx *c, dl_recipe *r) {
  yaml_node_t *root = yaml_document_get_root_node(c->doc);
  if (!root) return dl_fail(c->err, "%s: empty recipe", c->name);
  if (root->type != YAML_MAPPING_NODE) return fail_at(c, root, "expected sections (data, crops, teacher, pretrain)%s%s", "", "");
  if (check_unique_keys(c, root, "the recipe") != 0) return -1;
  int have_data = 0;
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key), *v = yaml_document_get_node(c->doc, p->value);
    if (!k || !v || k->type != YAML_SCALAR_NODE) return fail_at(c, root, "section names must be plain names%s%s", "", "");
    int rc;
    if (strcmp(scalar(k), "data") == 0) rc = parse_section(c, "data", v, parse_data, r), have_data = 1;
    else if (strcmp(scalar(k), "crops") == 0) rc = parse_section(c, "crops", v, parse_crops, r);
    else if (strcmp(scalar(k), "teacher") == 0) rc = dl_recipe_parse_teacher(c->name, c->doc, v, &r->teacher, c->err);
    else if (strcmp(scalar(k), "pretrain") == 0) rc = dl_recipe_parse_pretrain(c->name, c->doc, v, &r->pretrain, c->err);
    else rc = fail_at(c, k, "unknown section '%s' (data, crops, teacher, pretrain)%s", scalar(k), "");
    if (rc != 0) return -1;
  }
  if (!have_data || !r->dataset[0]) return dl_fail(c->err, "%s: data.dataset is required", c->name);
  return 0;
}

int dl_recipe_parse(const char *name, const uint8_t *text, size_t n, dl_recipe *out, dl_err *err) {
  memset(out, 0, sizeof *out);
  out->block_size = 32;
  out->loader_threads = 2;
  out->crops = dl_crop_spec_dinov2();
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
  parse_ctx c = {name, &doc, err};
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
  return rc;
}
