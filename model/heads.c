#include "model/heads.h"
#include "model/heads_bf16.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "data/rng.h"
#include "model/cpu/ops.h"
#include "model/cpu/ops_backward.h"
#include "model/param_table.h"

#define L2_EPS 1e-12f

static int layer_in(const dl_head_config *c, int l) { return l == 0 ? c->in_dim : c->hidden_dim; }
static int layer_out(const dl_head_config *c, int l) { return l == c->nlayers - 1 ? c->out_dim : c->hidden_dim; }

void dl_head_init(dl_head *h, const dl_head_config *cfg) {
  DL_ASSERT(cfg->nlayers >= 1 && cfg->nlayers <= DL_HEAD_MAX_LAYERS);
  h->cfg = *cfg;
  dl_param_table_init(&h->layout, 2 * cfg->nlayers + 2);
  char name[DL_NAME_MAX];
  for (int l = 0; l < cfg->nlayers; l++) {
    snprintf(name, sizeof name, "mlp.%d.weight", 2 * l);
    dl_param_table_add(&h->layout, name, 2, (int64_t[]){layer_out(cfg, l), layer_in(cfg, l)}, 0, DL_LAYER_ID_HEAD);
    snprintf(name, sizeof name, "mlp.%d.bias", 2 * l);
    dl_param_table_add(&h->layout, name, 1, (int64_t[]){layer_out(cfg, l)}, 1, DL_LAYER_ID_HEAD);
  }
  h->last_g = h->last_v = -1;
  if (cfg->prototypes > 0) {
    // weight_g takes weight decay in DINOv2 (its name matches no exclusion).
    h->last_g = dl_param_table_add(&h->layout, "last_layer.weight_g", 2, (int64_t[]){cfg->prototypes, 1}, 0,
                                   DL_LAYER_ID_HEAD);
    h->last_v = dl_param_table_add(&h->layout, "last_layer.weight_v", 2,
                                   (int64_t[]){cfg->prototypes, cfg->out_dim}, 0, DL_LAYER_ID_HEAD);
  }
  h->params = dl_aligned_alloc(h->layout.total * sizeof(float));
  memset(h->params, 0, h->layout.total * sizeof(float));
}

void dl_head_init_random(dl_head *h, unsigned long long seed) {
  // One stream per MLP layer and one for the last layer, so no layer's
  // draws depend on how many another rejected.
  for (int l = 0; l < h->cfg.nlayers; l++) {
    const dl_param_entry *e = &h->layout.entries[2 * l];
    float *w = h->params + e->offset;
    dl_rng g = dl_rng_make(dl_key_derive(seed, (uint64_t)l));
    // The official trunc_normal_(std=.02) keeps its default absolute bounds
    // a=-2, b=2: in effect an untruncated normal (as the backbone's Linears).
    for (size_t i = 0; i < e->numel; i++) w[i] = dl_rng_trunc_normal(&g, 0.02);
  }
  if (h->last_g >= 0) {
    float *g = dl_head_param(h, h->last_g), *v = dl_head_param(h, h->last_v);
    dl_rng r = dl_rng_make(dl_key_derive(seed, DL_HEAD_MAX_LAYERS));
    // A Linear layer's default: uniform within 1 / sqrt(fan_in); weight_g = 1.
    const float bound = 1.0f / sqrtf((float)h->cfg.out_dim);
    for (int k = 0; k < h->cfg.prototypes; k++) g[k] = 1.0f;
    for (size_t i = 0; i < h->layout.entries[h->last_v].numel; i++)
      v[i] = (float)((2.0 * dl_rng_unit(&r) - 1.0) * bound);
  }
}

void dl_head_free(dl_head *h) {
  free(h->params);
  dl_vit_layout_free(&h->layout);
}

void dl_head_ws_free(dl_head_ws *ws) {
  free(ws->buf);
  memset(ws, 0, sizeof *ws);
}

float *dl_head_param(const dl_head *h, int index) { return h->params + h->layout.entries[index].offset; }

int dl_head_out_dim(const dl_head *h, dl_head_mode mode) {
  if (mode == DL_HEAD_BOTTLENECK || h->cfg.prototypes == 0) return h->cfg.out_dim;
  return h->cfg.prototypes;
}

static float *take(float *base, size_t *off, size_t n) {
  float *p = base ? base + *off : NULL;
  *off += (n + 15) & ~(size_t)15;
  return p;
}

static size_t carve(dl_head_ws *ws, float *base, const dl_head_config *c, int m) {
  size_t off = 0, wid = (size_t)(c->hidden_dim > c->out_dim ? c->hidden_dim : c->out_dim);
  if ((size_t)c->in_dim > wid) wid = (size_t)c->in_dim;
  for (int l = 0; l < c->nlayers; l++) {
    ws->pre[l] = take(base, &off, (size_t)m * layer_out(c, l));
    ws->act[l] = take(base, &off, (size_t)m * layer_out(c, l));
  }
  const size_t K = (size_t)c->prototypes, B = (size_t)c->out_dim;
  ws->zn = take(base, &off, (size_t)m * B);
  ws->znorm = take(base, &off, (size_t)m);
  ws->w_eff = take(base, &off, K * B);
  ws->vnorm = take(base, &off, K);
  ws->dw = take(base, &off, K * B);
  ws->dz = take(base, &off, (size_t)m * B);
  ws->dact = take(base, &off, (size_t)m * wid);
  ws->dpre = take(base, &off, (size_t)m * wid);
  ws->ones = take(base, &off, (size_t)m);
  return off;
}

static void prepare(const dl_head *h, dl_head_ws *ws, dl_head_mode mode, const float *x, int m) {
  size_t need = carve(ws, NULL, &h->cfg, m);
  if (ws->cap < need) {
    free(ws->buf);
    ws->buf = dl_aligned_alloc(need * sizeof(float));
    ws->cap = need;
  }
  carve(ws, ws->buf, &h->cfg, m);
  ws->m = m;
  ws->mode = mode;
  ws->x = x;
  for (int r = 0; r < m; r++) ws->ones[r] = 1.0f;
}

// The MLP: GELU after every layer but the last. The last layer's output is
// pre[nlayers - 1] (act of the last layer is unused). bf16: NULL, or the
// layers' weights in bf16 (the bf16 teacher, heads_bf16.h).
static void mlp_forward(const dl_head *h, const dl_head_bf16 *bf16, dl_head_ws *ws, const float *x, int m) {
  const dl_head_config *c = &h->cfg;
  const float *in = x;
  for (int l = 0; l < c->nlayers; l++) {
    const int o = layer_out(c, l);
    if (bf16)
      dl_gemm_bf16_nt(ws->pre[l], in, &bf16->layers[l], m, &(dl_gemm_epilogue){.bias = dl_head_param(h, 2 * l + 1)});
    else
      dl_linear(ws->pre[l], in, dl_head_param(h, 2 * l), dl_head_param(h, 2 * l + 1), m, layer_in(c, l), o);
    if (l == c->nlayers - 1) break;
    memcpy(ws->act[l], ws->pre[l], (size_t)m * o * sizeof(float));
    dl_gelu_inplace(ws->act[l], (size_t)m * o);
    in = ws->act[l];
  }
}

// zn = z / max(||z||, eps) per row, as F.normalize.
static void l2_normalize(float *zn, float *norms, const float *z, int m, int d) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < m; r++) {
    const float *zr = z + (size_t)r * d;
    float ss = 0.0f;
    for (int i = 0; i < d; i++) ss += zr[i] * zr[i];
    float nrm = sqrtf(ss);
    norms[r] = nrm;
    const float den = nrm > L2_EPS ? nrm : L2_EPS;
    for (int i = 0; i < d; i++) zn[(size_t)r * d + i] = zr[i] / den;
  }
}

// W = g * v / ||v|| row by row (the weight_norm reparametrization, dim 0).
static void weight_norm(const dl_head *h, dl_head_ws *ws) {
  const int K = h->cfg.prototypes, B = h->cfg.out_dim;
  const float *g = dl_head_param(h, h->last_g), *v = dl_head_param(h, h->last_v);
#pragma omp parallel for schedule(static)
  for (int k = 0; k < K; k++) {
    const float *vk = v + (size_t)k * B;
    float ss = 0.0f;
    for (int j = 0; j < B; j++) ss += vk[j] * vk[j];
    const float nrm = sqrtf(ss), s = g[k] / nrm;
    ws->vnorm[k] = nrm;
    for (int j = 0; j < B; j++) ws->w_eff[(size_t)k * B + j] = s * vk[j];
  }
}

void dl_head_forward(const dl_head *h, dl_head_mode mode, const float *x, int m, float *out, dl_head_ws *ws) {
  const dl_head_config *c = &h->cfg;
  DL_ASSERT(mode == DL_HEAD_FULL || c->prototypes > 0);
  prepare(h, ws, mode, x, m);
  const int B = c->out_dim;
  if (mode != DL_HEAD_LAST_LAYER) {
    mlp_forward(h, NULL, ws, x, m);
    if (c->prototypes == 0) {
      memcpy(out, ws->pre[c->nlayers - 1], (size_t)m * B * sizeof(float));
      return;
    }
    l2_normalize(mode == DL_HEAD_BOTTLENECK ? out : ws->zn, ws->znorm, ws->pre[c->nlayers - 1], m, B);
    if (mode == DL_HEAD_BOTTLENECK) {
      memcpy(ws->zn, out, (size_t)m * B * sizeof(float));
      return;
    }
  } else {
    memcpy(ws->zn, x, (size_t)m * B * sizeof(float));
  }
  weight_norm(h, ws);
  dl_linear(out, ws->zn, ws->w_eff, NULL, m, B, c->prototypes);
}

void dl_head_bottleneck_bf16(const dl_head *h, const dl_head_bf16 *bf16, const float *x, int m, float *out,
                             dl_head_ws *ws) {
  const dl_head_config *c = &h->cfg;
  DL_ASSERT(c->prototypes > 0);
  prepare(h, ws, DL_HEAD_BOTTLENECK, x, m);
  mlp_forward(h, bf16, ws, x, m);
  l2_normalize(out, ws->znorm, ws->pre[c->nlayers - 1], m, c->out_dim);
  memcpy(ws->zn, out, (size_t)m * c->out_dim * sizeof(float));
}

// dW (in ws->dw) -> dg, dv: with u = v / ||v||, dg = dW . u and
// dv = g / ||v|| (dW - (dW . u) u).
static void weight_norm_backward(const dl_head *h, dl_head_ws *ws, float *grads) {
  const int K = h->cfg.prototypes, B = h->cfg.out_dim;
  const float *g = dl_head_param(h, h->last_g), *v = dl_head_param(h, h->last_v);
  float *dg = grads + h->layout.entries[h->last_g].offset, *dv = grads + h->layout.entries[h->last_v].offset;
#pragma omp parallel for schedule(static)
  for (int k = 0; k < K; k++) {
    const float *vk = v + (size_t)k * B, *dwk = ws->dw + (size_t)k * B;
    const float inv = 1.0f / ws->vnorm[k];
    float dot = 0.0f;
    for (int j = 0; j < B; j++) dot += dwk[j] * vk[j];
    dot *= inv;  // dW . u
    dg[k] += dot;
    const float s = g[k] * inv;
    for (int j = 0; j < B; j++) dv[(size_t)k * B + j] += s * (dwk[j] - dot * vk[j] * inv);
  }
}

// dz = (dzn - zn (zn . dzn)) / ||z|| (or dzn / eps where the norm was clamped).
static void l2_normalize_backward(float *dz, const float *dzn, const float *zn, const float *norms, int m, int d) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < m; r++) {
    const float *a = zn + (size_t)r * d, *g = dzn + (size_t)r * d;
    float *o = dz + (size_t)r * d;
    if (norms[r] <= L2_EPS) {
      for (int i = 0; i < d; i++) o[i] = g[i] / L2_EPS;
      continue;
    }
    float dot = 0.0f;
    for (int i = 0; i < d; i++) dot += a[i] * g[i];
    const float inv = 1.0f / norms[r];
    for (int i = 0; i < d; i++) o[i] = (g[i] - a[i] * dot) * inv;
  }
}

static void mlp_backward(const dl_head *h, dl_head_ws *ws, const float *dout, float *grads, float *dx) {
  const dl_head_config *c = &h->cfg;
  const int m = ws->m;
  const float *d = dout;
  for (int l = c->nlayers - 1; l >= 0; l--) {
    const int in = layer_in(c, l), o = layer_out(c, l);
    const float *x = l == 0 ? ws->x : ws->act[l - 1];
    float *dw = grads + h->layout.entries[2 * l].offset, *db = grads + h->layout.entries[2 * l + 1].offset;
    float *dxl = l == 0 ? dx : ws->dact;
    dl_linear_backward(dxl, dw, db, d, x, dl_head_param(h, 2 * l), m, in, o, ws->ones, 0);
    if (l == 0) break;
    dl_gelu_backward(ws->dpre, ws->dact, ws->pre[l - 1], (size_t)m * in);
    d = ws->dpre;
  }
}

void dl_head_backward(const dl_head *h, dl_head_ws *ws, const float *dout, float *grads, float *dx) {
  const dl_head_config *c = &h->cfg;
  const int m = ws->m, B = c->out_dim, K = c->prototypes;
  if (c->prototypes == 0) {
    mlp_backward(h, ws, dout, grads, dx);
    return;
  }
  const float *dzn = dout;
  if (ws->mode != DL_HEAD_BOTTLENECK) {
    // logits = zn W^T: dW = dlogits^T zn, dzn = dlogits W.
    memset(ws->dw, 0, (size_t)K * B * sizeof(float));
    float *dzn_out = ws->mode == DL_HEAD_LAST_LAYER ? dx : ws->dz;
    dl_linear_backward(dzn_out, ws->dw, NULL, dout, ws->zn, ws->w_eff, m, B, K, ws->ones, 0);
    weight_norm_backward(h, ws, grads);
    if (ws->mode == DL_HEAD_LAST_LAYER) return;
    dzn = ws->dz;
  }
  // dz goes to dpre (free until the MLP's backward reads it as its input).
  l2_normalize_backward(ws->dpre, dzn, ws->zn, ws->znorm, m, B);
  mlp_backward(h, ws, ws->dpre, grads, dx);
}
