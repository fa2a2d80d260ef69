#include "teacher/model_io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/rng.h"
#include "model/safetensors.h"
#include "transport/xxhash64.h"

static double normal(dl_rng *r) {
  double u = dl_rng_unit(r), v = dl_rng_unit(r);
  return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static float trunc_normal(dl_rng *r, double std) {
  double x;
  do x = normal(r);
  while (fabs(x) > 2.0);
  return (float)(x * std);
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

void dl_vit_init_random(dl_vit *vit, const dl_vit_config *cfg, float layerscale, unsigned long long seed) {
  dl_vit_init_empty(vit, cfg);
  dl_rng r = dl_rng_make(dl_mix64(seed ^ 0x7e1f00d5ull));
  for (int i = 0; i < vit->layout.count; i++) {
    const dl_param_entry *e = &vit->layout.entries[i];
    float *p = vit->params + e->offset;
    const char *n = e->name;
    float fill = 0.0f;
    int random = 0;
    double std = 0.02;
    if (strcmp(n, "cls_token") == 0 || strcmp(n, "register_tokens") == 0) random = 1, std = 1e-6;
    else if (strcmp(n, "pos_embed") == 0 || ends_with(n, ".weight")) random = 1;
    if (strstr(n, "norm") && ends_with(n, ".weight")) random = 0, fill = 1.0f;  // norm1/norm2/norm
    if (ends_with(n, ".gamma")) fill = layerscale;
    for (size_t j = 0; j < e->numel; j++) p[j] = random ? (std < 1e-3 ? (float)(normal(&r) * std) : trunc_normal(&r, std)) : fill;
  }
}

static void fill_out(dl_st_out *o, const char *name, const dl_param_entry *e, const float *data) {
  o->name = name;
  o->ndim = e->ndim;
  for (int d = 0; d < e->ndim; d++) o->shape[d] = e->shape[d];
  o->data = data + e->offset;
}

int dl_vit_save(const dl_vit *vit, const float *params, const char *path, dl_err *err) {
  const int n = vit->layout.count;
  dl_st_out *out = dl_calloc((size_t)n, sizeof *out);
  int m = 0;
  for (int i = 0; i < n; i++) {
    const dl_param_entry *e = &vit->layout.entries[i];
    if (e->numel == 0) continue;  // register_tokens of a model without registers
    fill_out(&out[m++], e->name, e, params);
  }
  const dl_st_meta meta[] = {{"format", "pt"}, {"writer", "distill"}};
  int rc = dl_st_write_f32(path, out, m, meta, 2, err);
  free(out);
  return rc;
}

int dl_heads_save(const dl_head *dino, const float *dino_params, const dl_head *ibot, const float *ibot_params,
                  const char *path, dl_err *err) {
  const dl_head *h[2] = {dino, ibot};
  const float *p[2] = {dino_params, ibot_params};
  const char *prefix[2] = {"dino_head.", "ibot_head."};
  const int n = dino->layout.count + ibot->layout.count;
  dl_st_out *out = dl_calloc((size_t)n, sizeof *out);
  char(*names)[DL_NAME_MAX + 16] = dl_calloc((size_t)n, sizeof *names);
  int m = 0;
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < h[k]->layout.count; i++, m++) {
      snprintf(names[m], sizeof names[m], "%s%s", prefix[k], h[k]->layout.entries[i].name);
      fill_out(&out[m], names[m], &h[k]->layout.entries[i], p[k]);
    }
  const dl_st_meta meta[] = {{"format", "pt"}, {"writer", "distill"}};
  int rc = dl_st_write_f32(path, out, m, meta, 2, err);
  free(out);
  free(names);
  return rc;
}

static const dl_st_tensor *find_prefixed(const dl_safetensors *st, const char *prefix, const char *name) {
  char full[DL_NAME_MAX + 16];
  snprintf(full, sizeof full, "%s%s", prefix, name);
  return dl_st_find(st, full);
}

// The head's shape from its tensors: mlp.0, mlp.2, ... weights and the last layer.
static int infer_head(const dl_safetensors *st, const char *path, const char *prefix, dl_head_config *c, dl_err *err) {
  memset(c, 0, sizeof *c);
  char name[32];
  for (int l = 0; l < DL_HEAD_MAX_LAYERS; l++) {
    snprintf(name, sizeof name, "mlp.%d.weight", 2 * l);
    const dl_st_tensor *w = find_prefixed(st, prefix, name);
    if (!w) break;
    if (w->ndim != 2 || w->shape[0] <= 0 || w->shape[1] <= 0 || w->shape[0] > (1 << 20) || w->shape[1] > (1 << 20))
      return dl_fail(err, "%s: %s%s is not a matrix", path, prefix, name);
    if (l == 0) c->in_dim = (int)w->shape[1];
    if (l == 0) c->hidden_dim = (int)w->shape[0];
    c->out_dim = (int)w->shape[0];
    c->nlayers = l + 1;
  }
  if (c->nlayers == 0) return dl_fail(err, "%s: no tensor %smlp.0.weight", path, prefix);
  const dl_st_tensor *v = find_prefixed(st, prefix, "last_layer.weight_v");
  if (v && (v->ndim != 2 || v->shape[0] <= 0 || v->shape[0] > (1 << 22)))
    return dl_fail(err, "%s: %slast_layer.weight_v is not a matrix", path, prefix);
  c->prototypes = v ? (int)v->shape[0] : 0;
  return 0;
}

static int read_head(const dl_safetensors *st, const char *path, const char *prefix, dl_head *h, dl_err *err) {
  dl_head_config c;
  if (infer_head(st, path, prefix, &c, err)) return -1;
  dl_head_init(h, &c);
  for (int i = 0; i < h->layout.count; i++) {
    const dl_param_entry *e = &h->layout.entries[i];
    const dl_st_tensor *t = find_prefixed(st, prefix, e->name);
    if (!t) return dl_fail(err, "%s: missing tensor %s%s", path, prefix, e->name);
    int same = t->ndim == e->ndim;
    for (int d = 0; same && d < e->ndim; d++) same = t->shape[d] == e->shape[d];
    if (!same) return dl_fail(err, "%s: tensor %s%s has an unexpected shape", path, prefix, e->name);
    if (dl_st_read_f32(t, h->params + e->offset, err)) return dl_fail_prefix(err, path);
  }
  return 0;
}

int dl_heads_load(const char *path, dl_head *dino, dl_head *ibot, dl_err *err) {
  dl_safetensors st;
  memset(dino, 0, sizeof *dino);
  memset(ibot, 0, sizeof *ibot);
  if (dl_st_open(path, &st, err)) return -1;
  // Without ibot_head.* the iBOT head is the DINO head (DINOv2's ibot.separate_head: false).
  const char *ibot_prefix = dl_st_find(&st, "ibot_head.mlp.0.weight") ? "ibot_head." : "dino_head.";
  int rc = read_head(&st, path, "dino_head.", dino, err);
  if (rc == 0) rc = read_head(&st, path, ibot_prefix, ibot, err);
  // Tensors outside the heads (a training checkpoint's backbone) are not ours to
  // judge; a name under a head's prefix that the head lacks is an error.
  for (int i = 0; i < st.count && rc == 0; i++) {
    const char *n = st.tensors[i].name;
    const dl_head *h = strncmp(n, "dino_head.", 10) == 0 ? dino : strncmp(n, "ibot_head.", 10) == 0 ? ibot : NULL;
    if (h && !dl_vit_layout_find(&h->layout, n + 10)) rc = dl_fail(err, "%s: unknown tensor %s", path, n);
  }
  dl_st_close(&st);
  if (rc) {
    if (dino->params) dl_head_free(dino);
    if (ibot->params) dl_head_free(ibot);
    memset(dino, 0, sizeof *dino);
    memset(ibot, 0, sizeof *ibot);
  }
  return rc;
}

// Little-endian bytes of v into p; returns p + n.
static uint8_t *put_le(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
  return p + n;
}

static uint64_t hash_entry(const dl_head *h, int index, const char *name, uint64_t seed) {
  const dl_param_entry *e = &h->layout.entries[index];
  uint8_t head[64 + 4 + 8 * 8], *p = head;
  const size_t len = strlen(name) + 1;
  memcpy(p, name, len);
  p = put_le(p + len, (uint64_t)e->ndim, 4);
  for (int d = 0; d < e->ndim; d++) p = put_le(p, (uint64_t)(int64_t)e->shape[d], 8);
  seed = dl_xxhash64(head, (size_t)(p - head), seed);
  // The values as float32 little-endian (the host's order on every target we build for).
  return dl_xxhash64(dl_head_param(h, index), e->numel * sizeof(float), seed);
}

uint64_t dl_heads_last_layer_hash(const dl_head *dino, const dl_head *ibot) {
  if (!dino || !ibot || dino->last_g < 0 || dino->last_v < 0 || ibot->last_g < 0 || ibot->last_v < 0) return 0;
  uint64_t h = 0;
  h = hash_entry(dino, dino->last_g, "dino_head.last_layer.weight_g", h);
  h = hash_entry(dino, dino->last_v, "dino_head.last_layer.weight_v", h);
  h = hash_entry(ibot, ibot->last_g, "ibot_head.last_layer.weight_g", h);
  h = hash_entry(ibot, ibot->last_v, "ibot_head.last_layer.weight_v", h);
  return h ? h : 1;
}
