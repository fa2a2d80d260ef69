// Maps the three public name layouts of DINOv2 weights onto the official
// names, infers the architecture from names and shapes, and copies the
// tensors into the flat buffer. Every tensor of the file must be used: an
// unknown name means the file is not what we think it is.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"
#include "model/vit.h"

const char *dl_weights_layout_name(dl_weights_layout l) {
  static const char *const names[] = {"official", "timm", "huggingface"};
  return names[l];
}

typedef struct source_map {
  const dl_safetensors *st;
  dl_weights_layout layout;
  const char *hf_prefix;  // "" or "dinov2." (Dinov2For... checkpoints)
  bool *used;
} source_map;

static const dl_st_tensor *find_src(source_map *m, const char *name) {
  const dl_st_tensor *t = dl_st_find(m->st, name);
  if (t) m->used[t - m->st->tensors] = true;
  return t;
}

// fmt holds a %d for the block index and may hold a %s for the MLP's name.
static const dl_st_tensor *find_hf(source_map *m, const char *fmt, int block, const char *mlp) {
  char name[160], rest[128];
  snprintf(rest, sizeof rest, fmt, block, mlp);
  snprintf(name, sizeof name, "%s%s", m->hf_prefix, rest);
  return find_src(m, name);
}

// Global parameter names in the other layouts (official name first).
static const char *hf_global_name(const char *official) {
  static const char *const table[][2] = {
      {"cls_token", "embeddings.cls_token"},
      {"register_tokens", "embeddings.register_tokens"},
      {"mask_token", "embeddings.mask_token"},
      {"pos_embed", "embeddings.position_embeddings"},
      {"patch_embed.proj.weight", "embeddings.patch_embeddings.projection.weight"},
      {"patch_embed.proj.bias", "embeddings.patch_embeddings.projection.bias"},
      {"norm.weight", "layernorm.weight"},
      {"norm.bias", "layernorm.bias"},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (strcmp(table[i][0], official) == 0) return table[i][1];
  return NULL;
}

static const dl_st_tensor *global_src(source_map *m, const char *official) {
  if (m->layout == DL_LAYOUT_HF) return find_hf(m, hf_global_name(official), 0, "");
  if (m->layout == DL_LAYOUT_TIMM && strcmp(official, "register_tokens") == 0)
    return find_src(m, "reg_token");
  return find_src(m, official);
}

// The source tensors of one block parameter: one, or three (HF's separate
// query, key and value) to be stacked along the first axis.
static int block_src(source_map *m, int b, enum dl_block_param p, bool swiglu,
                     const dl_st_tensor *out[3]) {
  static const char *const hf[DL_P_BLOCK_COUNT] = {
      "encoder.layer.%d.norm1.weight", "encoder.layer.%d.norm1.bias", NULL, NULL,
      "encoder.layer.%d.attention.output.dense.weight", "encoder.layer.%d.attention.output.dense.bias",
      "encoder.layer.%d.layer_scale1.lambda1", "encoder.layer.%d.norm2.weight",
      "encoder.layer.%d.norm2.bias", "encoder.layer.%d.mlp.%s.weight", "encoder.layer.%d.mlp.%s.bias",
      "encoder.layer.%d.mlp.%s.weight", "encoder.layer.%d.mlp.%s.bias",
      "encoder.layer.%d.layer_scale2.lambda1"};
  static const char *const hub[DL_P_BLOCK_COUNT] = {
      "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
      "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.%s.weight", "mlp.%s.bias",
      "mlp.%s.weight", "mlp.%s.bias", "ls2.gamma"};
  bool first_fc = p == DL_P_FC1_W || p == DL_P_FC1_B;
  out[1] = out[2] = NULL;
  char fmt[128], name[160];
  if (m->layout == DL_LAYOUT_HF) {
    if (p == DL_P_QKV_W || p == DL_P_QKV_B) {
      const char *kind = p == DL_P_QKV_W ? "weight" : "bias";
      const char *parts[3] = {"query", "key", "value"};
      for (int i = 0; i < 3; i++) {
        snprintf(fmt, sizeof fmt, "encoder.layer.%%d.attention.attention.%s.%s", parts[i], kind);
        out[i] = find_hf(m, fmt, b, "");
      }
      return 3;
    }
    const char *mlp = swiglu ? (first_fc ? "weights_in" : "weights_out") : (first_fc ? "fc1" : "fc2");
    out[0] = find_hf(m, hf[p], b, mlp);
    return 1;
  }
  // Official and timm: SwiGLU is w12/w3 in the hub checkpoints, fc1/fc2 in timm.
  const char *mlp = swiglu && m->layout == DL_LAYOUT_OFFICIAL ? (first_fc ? "w12" : "w3")
                                                              : (first_fc ? "fc1" : "fc2");
  char param[64];
  snprintf(param, sizeof param, hub[p], mlp);
  snprintf(name, sizeof name, "blocks.%d.%s", b, param);
  out[0] = find_src(m, name);
  return 1;
}

// ---- architecture inference -------------------------------------------------

static bool has(const dl_safetensors *st, const char *name) { return dl_st_find(st, name) != NULL; }

static dl_weights_layout detect_layout(const dl_safetensors *st, const char **hf_prefix) {
  *hf_prefix = "";
  if (has(st, "embeddings.cls_token")) return DL_LAYOUT_HF;
  if (has(st, "dinov2.embeddings.cls_token")) {
    *hf_prefix = "dinov2.";
    return DL_LAYOUT_HF;
  }
  if (has(st, "reg_token") || (!has(st, "mask_token") && has(st, "blocks.0.mlp.fc1.weight") &&
                               !has(st, "register_tokens")))
    return DL_LAYOUT_TIMM;
  return DL_LAYOUT_OFFICIAL;
}

static int need(const dl_st_tensor *t, const char *what, dl_err *err) {
  return t ? 0 : dl_fail(err, "missing tensor %s", what);
}

static int infer_ffn(source_map *m, dl_vit_config *c, dl_err *err) {
  const dl_st_tensor *fc1, *fc2;
  if (m->layout == DL_LAYOUT_HF) {
    char n[128];
    snprintf(n, sizeof n, "%sencoder.layer.0.mlp.weights_in.weight", m->hf_prefix);
    c->ffn = has(m->st, n) ? DL_FFN_SWIGLU : DL_FFN_MLP;
  } else {
    c->ffn = has(m->st, "blocks.0.mlp.w12.weight") ? DL_FFN_SWIGLU : DL_FFN_MLP;
  }
  const dl_st_tensor *parts[3];
  block_src(m, 0, DL_P_FC1_W, c->ffn == DL_FFN_SWIGLU, parts);
  fc1 = parts[0];
  block_src(m, 0, DL_P_FC2_W, c->ffn == DL_FFN_SWIGLU, parts);
  fc2 = parts[0];
  if (need(fc1, "for the first MLP layer of block 0", err) || need(fc2, "for the second MLP layer of block 0", err))
    return -1;
  if (fc1->ndim != 2 || fc2->ndim != 2) return dl_fail(err, "MLP weights of block 0 are not matrices");
  // timm packs SwiGLU's w12 as fc1: twice as many rows as fc2 has columns.
  if (c->ffn == DL_FFN_MLP && fc1->shape[0] == 2 * fc2->shape[1]) c->ffn = DL_FFN_SWIGLU;
  c->ffn_hidden = (int)fc2->shape[1];
  return 0;
}

static int infer_config(source_map *m, const dl_vit_overrides *ov, dl_vit_config *c,
                        bool *pos_has_class_row, dl_err *err) {
  memset(c, 0, sizeof *c);
  const dl_st_tensor *cls = global_src(m, "cls_token"), *pw = global_src(m, "patch_embed.proj.weight");
  const dl_st_tensor *pos = global_src(m, "pos_embed"), *reg = global_src(m, "register_tokens");
  if (need(cls, "cls_token", err) || need(pw, "patch_embed.proj.weight", err) || need(pos, "pos_embed", err))
    return -1;
  c->dim = (int)cls->shape[cls->ndim - 1];
  if (c->dim <= 0 || cls->numel != c->dim) return dl_fail(err, "cls_token has an unexpected shape");
  if (pw->ndim != 4 || pw->shape[0] != c->dim || pw->shape[1] != 3 || pw->shape[2] != pw->shape[3] ||
      pw->shape[2] <= 0)
    return dl_fail(err, "patch embedding weight is not [%d, 3, p, p]", c->dim);
  c->patch = (int)pw->shape[2];
  c->registers = reg ? (int)(reg->numel / c->dim) : 0;
  if (reg && (int64_t)c->registers * c->dim != reg->numel) return dl_fail(err, "register tokens have an unexpected shape");
  int64_t rows = pos->numel / c->dim;
  if (rows * c->dim != pos->numel) return dl_fail(err, "pos_embed's size is not a multiple of %d", c->dim);
  int64_t m1 = (int64_t)llround(sqrt((double)rows)), m0 = (int64_t)llround(sqrt((double)(rows - 1)));
  // timm's register models store no class position (it is folded into cls_token).
  *pos_has_class_row = !(m->layout == DL_LAYOUT_TIMM && m1 * m1 == rows);
  c->pos_grid = (int)(*pos_has_class_row ? m0 : m1);
  if ((int64_t)c->pos_grid * c->pos_grid + (*pos_has_class_row ? 1 : 0) != rows || c->pos_grid == 0)
    return dl_fail(err, "pos_embed has %lld rows, not a square grid (plus a class position)", (long long)rows);
  for (c->depth = 0;; c->depth++) {
    const dl_st_tensor *parts[3];
    block_src(m, c->depth, DL_P_NORM1_W, false, parts);
    if (!parts[0]) break;
  }
  if (c->depth == 0) return dl_fail(err, "no transformer blocks found");
  if (infer_ffn(m, c, err)) return -1;
  // Names and shapes do not say the head count or the interpolation: the
  // flags do, else a distill export's metadata (student/checkpoint.c), else
  // the released models' rules (64-wide heads; antialias with registers).
  const char *arch = dl_st_meta_get(m->st, "architecture");
  const char *heads_at = arch ? strstr(arch, "heads=") : NULL, *interp_at = arch ? strstr(arch, "interp=") : NULL;
  c->heads = c->dim / 64;
  if (heads_at) c->heads = atoi(heads_at + 6);
  if (ov && ov->heads > 0) c->heads = ov->heads;
  if (c->heads <= 0 || c->dim % c->heads != 0)
    return dl_fail(err, "embed dim %d is not divisible into %d heads (give the head count: --heads)", c->dim, c->heads);
  c->interp = c->registers > 0 ? DL_INTERP_ANTIALIAS : DL_INTERP_LEGACY;
  if (interp_at) c->interp = strncmp(interp_at + 7, "antialias", 9) == 0 ? DL_INTERP_ANTIALIAS : DL_INTERP_LEGACY;
  if (ov && ov->interp >= 0) c->interp = (dl_interp_mode)ov->interp;
  return 0;
}

// ---- copying ----------------------------------------------------------------

// Shapes must agree exactly, up to leading dimensions of size 1 ([1, 1, D]
// and [D] are the same token); `rows` is the expected first dimension when a
// part covers only some rows of the parameter.
static int shape_matches(const dl_st_tensor *t, const dl_param_entry *e, int64_t rows) {
  int64_t want[4];
  int wn = e->ndim;
  for (int i = 0; i < wn; i++) want[i] = e->shape[i];
  if (rows > 0) want[wn > 1 ? wn - 2 : 0] = rows;
  int a = 0, b = 0;
  while (a < t->ndim - 1 && t->shape[a] == 1) a++;
  while (b < wn - 1 && want[b] == 1) b++;
  if (t->ndim - a != wn - b) return 0;
  for (; a < t->ndim; a++, b++)
    if (t->shape[a] != want[b]) return 0;
  return 1;
}

static int copy_checked(const dl_st_tensor *t, const dl_param_entry *e, int64_t rows, size_t numel,
                        float *dst, dl_err *err) {
  if (!t) return dl_fail(err, "missing tensor for '%s'", e->name);
  if ((size_t)t->numel != numel || !shape_matches(t, e, rows)) {
    char want[96];
    int k = snprintf(want, sizeof want, "[");
    for (int i = 0; i < e->ndim; i++)
      k += snprintf(want + k, sizeof want - (size_t)k, "%s%lld", i ? ", " : "",
                    (long long)(rows > 0 && i == (e->ndim > 1 ? e->ndim - 2 : 0) ? rows : e->shape[i]));
    snprintf(want + k, sizeof want - (size_t)k, "]");
    return dl_fail(err, "tensor '%s' has %d dims and %lld values; '%s' needs shape %s", t->name, t->ndim,
                   (long long)t->numel, e->name, want);
  }
  return dl_st_read_f32(t, dst, err);
}

static int copy_entry(source_map *m, const dl_vit_config *c, const dl_param_entry *e, int index,
                      bool pos_has_class_row, float *dst, dl_err *err) {
  const int first_block = DL_P_GLOBAL_COUNT, after_blocks = first_block + c->depth * DL_P_BLOCK_COUNT;
  if (index < first_block || index >= after_blocks) {  // embeddings and the final norm
    const dl_st_tensor *t = global_src(m, e->name);
    if (index == DL_P_MASK && !t) return 0;  // only pretraining uses it; timm drops it
    if (index == DL_P_REG && c->registers == 0) return 0;
    if (index == DL_P_POS && !pos_has_class_row)  // class row stays 0: cls_token holds it
      return copy_checked(t, e, e->shape[1] - 1, e->numel - (size_t)c->dim, dst + c->dim, err);
    return copy_checked(t, e, 0, e->numel, dst, err);
  }
  int b = (index - DL_P_GLOBAL_COUNT) / DL_P_BLOCK_COUNT;
  enum dl_block_param p = (enum dl_block_param)((index - DL_P_GLOBAL_COUNT) % DL_P_BLOCK_COUNT);
  const dl_st_tensor *parts[3];
  int n = block_src(m, b, p, c->ffn == DL_FFN_SWIGLU, parts);
  size_t each = e->numel / (size_t)n;
  for (int i = 0; i < n; i++)
    if (copy_checked(parts[i], e, n > 1 ? e->shape[0] / n : 0, each, dst + i * each, err)) return -1;
  return 0;
}

static int check_all_used(const source_map *m, dl_err *err) {
  for (int i = 0; i < m->st->count; i++)
    if (!m->used[i])
      return dl_fail(err, "unknown tensor '%s' (not part of a DINOv2 backbone in the %s layout)",
                     m->st->tensors[i].name, dl_weights_layout_name(m->layout));
  return 0;
}

int dl_vit_load(const char *path, const dl_vit_overrides *ov, dl_vit *vit,
                dl_weights_layout *layout_out, dl_err *err) {
  memset(vit, 0, sizeof *vit);
  dl_safetensors st;
  if (dl_st_open(path, &st, err)) return -1;
  source_map m = {.st = &st, .used = dl_calloc((size_t)st.count + 1, sizeof(bool))};
  m.layout = detect_layout(&st, &m.hf_prefix);
  bool pos_has_class_row = true;
  dl_vit_config cfg;
  int rc = infer_config(&m, ov, &cfg, &pos_has_class_row, err);
  if (rc == 0) {
    dl_vit_init_empty(vit, &cfg);
    memset(m.used, 0, (size_t)st.count * sizeof(bool));  // the probes above marked some
    for (int i = 0; i < vit->layout.count && rc == 0; i++)
      rc = copy_entry(&m, &cfg, &vit->layout.entries[i], i, pos_has_class_row,
                      vit->params + vit->layout.entries[i].offset, err);
    if (rc == 0) rc = check_all_used(&m, err);
    if (rc != 0) dl_vit_free(vit);
  }
  if (layout_out) *layout_out = m.layout;
  free(m.used);
  dl_st_close(&st);
  return rc ? dl_fail_prefix(err, path) : 0;
}
