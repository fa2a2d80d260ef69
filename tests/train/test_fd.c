// Finite-difference checks of every backward pass on small random shapes.
// The ops are float32 only, so the checks run in float: central differences
// with step 1e-2 (relative to the value where it is larger) on a loss summed
// in double; the analytic gradient over the sampled coordinates must agree
// within 2e-2 relative (norm over the samples) -- float32 rounding of the
// loss divided by the step is about 1e-4 of these losses' gradients, and the
// O(h^2) truncation is well below that, so a wrong formula (usually off by
// 10% or more) fails while rounding does not.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu/ops.h"
#include "model/cpu/ops_backward.h"
#include "model/heads.h"
#include "model/losses.h"
#include "model/pos_embed.h"
#include "model/pos_embed_train.h"
#include "model/vit_train.h"
#include "tests/harness.h"
#include "tests/train/ref_util.h"

#define FD_TOL 2e-2
#define FD_SAMPLES 12

static unsigned long long rng = 42;

static float *rnd(size_t n, float scale) {
  float *x = malloc(n * sizeof(float) + 4);
  for (size_t i = 0; i < n; i++) x[i] = scale * ref_rand(&rng);
  return x;
}

static double dot_r(const float *y, const float *r, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += (double)y[i] * r[i];
  return s;
}

typedef double (*loss_fn)(void *ctx);

// Compares analytic[] with central differences of loss() in x at up to
// FD_SAMPLES coordinates spread over the tensor.
static void fd_check(const char *what, float *x, size_t n, const float *analytic, loss_fn loss, void *ctx) {
  const int samples = n < FD_SAMPLES ? (int)n : FD_SAMPLES;
  float fd[FD_SAMPLES] = {0}, an[FD_SAMPLES] = {0};
  for (int s = 0; s < samples; s++) {
    size_t i = n <= FD_SAMPLES ? (size_t)s : (size_t)((s * 2654435761ULL + 7) % n);
    const float x0 = x[i], h = 1e-2f * (fabsf(x0) > 1.0f ? fabsf(x0) : 1.0f);
    x[i] = x0 + h;
    double lp = loss(ctx);
    x[i] = x0 - h;
    double lm = loss(ctx);
    x[i] = x0;
    fd[s] = (float)((lp - lm) / (2.0 * h));
    an[s] = analytic[i];
  }
  double e = dl_rel_err(an, fd, (size_t)samples);
  double mag = 0.0;
  for (int s = 0; s < samples; s++) mag = fmax(mag, fabs(fd[s]));
  CHECK(e <= FD_TOL && mag > 0.0, "finite differences %s: %d coordinates, relative error %.2e (max |grad| %.3g)",
        what, samples, e, mag);
}

// ---- linear, layernorm, activations, residual --------------------------------
typedef struct op_ctx {
  int m, k, n;
  float *x, *w, *b, *r, *y, *aux;
} op_ctx;

static double linear_loss(void *p) {
  op_ctx *c = p;
  dl_linear(c->y, c->x, c->w, c->b, c->m, c->k, c->n);
  return dot_r(c->y, c->r, (size_t)c->m * c->n);
}

static void check_linear(void) {
  op_ctx c = {5, 7, 6, rnd(35, 1), rnd(42, 1), rnd(6, 1), rnd(30, 1), malloc(30 * 4), NULL};
  float *dx = malloc(35 * 4), *dw = calloc(42, 4), *db = calloc(6, 4), ones[5] = {1, 1, 1, 1, 1};
  dl_linear_backward(dx, dw, db, c.r, c.x, c.w, 5, 7, 6, ones, 0);
  fd_check("linear dx", c.x, 35, dx, linear_loss, &c);
  fd_check("linear dw", c.w, 42, dw, linear_loss, &c);
  fd_check("linear db", c.b, 6, db, linear_loss, &c);
  free(dx); free(dw); free(db); free(c.x); free(c.w); free(c.b); free(c.r); free(c.y);
}

static double layernorm_loss(void *p) {
  op_ctx *c = p;
  dl_layernorm(c->y, c->x, c->w, c->b, c->m, c->k, 1e-6f);
  return dot_r(c->y, c->r, (size_t)c->m * c->k);
}

static void check_layernorm(void) {
  op_ctx c = {4, 9, 0, rnd(36, 2), rnd(9, 1), rnd(9, 1), rnd(36, 1), malloc(36 * 4), NULL};
  float mean[4], rstd[4], *dx = malloc(36 * 4), *dg = calloc(9, 4), *db = calloc(9, 4);
  float *scratch = malloc(dl_layernorm_backward_scratch_floats(9) * 4);
  dl_layernorm_stats(mean, rstd, c.x, 4, 9, 1e-6f);
  dl_layernorm_backward(dx, dg, db, c.r, c.x, c.w, mean, rstd, 4, 9, scratch);
  fd_check("layernorm dx", c.x, 36, dx, layernorm_loss, &c);
  fd_check("layernorm dgamma", c.w, 9, dg, layernorm_loss, &c);
  fd_check("layernorm dbeta", c.b, 9, db, layernorm_loss, &c);
  free(dx); free(dg); free(db); free(scratch); free(c.x); free(c.w); free(c.b); free(c.r); free(c.y);
}

static double gelu_loss(void *p) {
  op_ctx *c = p;
  memcpy(c->y, c->x, (size_t)c->m * 4);
  dl_gelu_inplace(c->y, (size_t)c->m);
  return dot_r(c->y, c->r, (size_t)c->m);
}

static double swiglu_loss(void *p) {
  op_ctx *c = p;
  dl_swiglu(c->y, c->x, c->m, c->k);
  return dot_r(c->y, c->r, (size_t)c->m * c->k);
}

static void check_activations(void) {
  op_ctx g = {24, 0, 0, rnd(24, 3), NULL, NULL, rnd(24, 1), malloc(24 * 4), NULL};
  float dx[24];
  dl_gelu_backward(dx, g.r, g.x, 24);
  fd_check("gelu", g.x, 24, dx, gelu_loss, &g);
  op_ctx s = {3, 5, 0, rnd(30, 3), NULL, NULL, rnd(15, 1), malloc(15 * 4), NULL};
  float dxg[30];
  dl_swiglu_backward(dxg, s.r, s.x, 3, 5);
  fd_check("swiglu", s.x, 30, dxg, swiglu_loss, &s);
  free(g.x); free(g.r); free(g.y); free(s.x); free(s.r); free(s.y);
}

static double residual_loss(void *p) {
  op_ctx *c = p;
  memcpy(c->y, c->aux, (size_t)c->m * c->k * 4);
  dl_residual_scaled(c->y, c->x, c->w, c->m, c->k);
  return dot_r(c->y, c->r, (size_t)c->m * c->k);
}

static void check_residual(void) {
  op_ctx c = {3, 8, 0, rnd(24, 1), rnd(8, 1), NULL, rnd(24, 1), malloc(24 * 4), rnd(24, 1)};
  float dy[24], dg[8] = {0}, *scratch = malloc(dl_layernorm_backward_scratch_floats(8) * 4);
  dl_residual_scaled_backward(dy, dg, c.r, c.x, c.w, 3, 8, scratch);
  fd_check("layerscale residual dy", c.x, 24, dy, residual_loss, &c);
  fd_check("layerscale residual dgamma", c.w, 8, dg, residual_loss, &c);
  free(scratch); free(c.x); free(c.w); free(c.r); free(c.y); free(c.aux);
}

// ---- attention -----------------------------------------------------------------
static double attention_loss(void *p) {
  op_ctx *c = p;  // m = batch, k = t, n = heads; head dim 4
  dl_attention_train(c->y, c->aux, c->x, c->m, c->k, c->n, 4);
  return dot_r(c->y, c->r, (size_t)c->m * c->k * c->n * 4);
}

static void check_attention(void) {
  const int batch = 2, t = 5, heads = 2, d = heads * 4;
  op_ctx c = {batch, t, heads, rnd((size_t)batch * t * 3 * d, 1.5f), NULL, NULL, rnd((size_t)batch * t * d, 1),
              malloc((size_t)batch * t * d * 4), malloc((size_t)batch * heads * t * t * 4)};
  attention_loss(&c);
  float *dqkv = malloc((size_t)batch * t * 3 * d * 4), *scratch = malloc(64 * dl_attention_backward_scratch_floats(t) * 4);
  dl_attention_backward(dqkv, c.r, c.x, c.aux, batch, t, heads, 4, scratch);
  fd_check("attention dq, dk, dv", c.x, (size_t)batch * t * 3 * d, dqkv, attention_loss, &c);
  free(dqkv); free(scratch); free(c.x); free(c.r); free(c.y); free(c.aux);
}

// ---- position embeddings ---------------------------------------------------------
typedef struct pos_ctx {
  int grid, d, gh, gw;
  float *src, *dst, *wy, *wx, *tmp, *r;
} pos_ctx;

static double pos_loss(void *p) {
  pos_ctx *c = p;
  dl_pos_embed_apply(c->dst, c->src, c->wy, c->wx, c->grid, c->d, c->gh, c->gw, c->tmp);
  return dot_r(c->dst, c->r, (size_t)c->gh * c->gw * c->d);
}

static void check_pos_embed(dl_interp_mode mode, int gh, int gw) {
  pos_ctx c = {4, 3, gh, gw, rnd(48, 1), malloc((size_t)gh * gw * 3 * 4), malloc((size_t)gh * 4 * 4),
               malloc((size_t)gw * 4 * 4), malloc(dl_pos_embed_tmp_floats(4, 3, gh, gw) * 4), rnd((size_t)gh * gw * 3, 1)};
  dl_pos_embed_axis_weights(c.wy, 4, gh, mode);
  dl_pos_embed_axis_weights(c.wx, 4, gw, mode);
  // The training resize agrees with the inference one.
  float *ref = malloc((size_t)gh * gw * 3 * 4);
  dl_pos_embed_resize(ref, c.src, 4, 3, gh, gw, mode);
  pos_loss(&c);
  double e = dl_rel_err(c.dst, ref, (size_t)gh * gw * 3);
  CHECK(e < 1e-6, "position resize %s 4x4 -> %dx%d equals dl_pos_embed_resize (%.2g)",
        mode == DL_INTERP_LEGACY ? "legacy" : "antialias", gh, gw, e);
  float *dsrc = calloc(48, 4), *tmp = malloc(dl_pos_embed_tmp_floats(4, 3, gh, gw) * 4);
  dl_pos_embed_apply_backward(dsrc, c.r, c.wy, c.wx, 4, 3, gh, gw, tmp);
  char what[96];
  snprintf(what, sizeof what, "position resize %s 4x4 -> %dx%d", mode == DL_INTERP_LEGACY ? "legacy" : "antialias",
           gh, gw);
  fd_check(what, c.src, 48, dsrc, pos_loss, &c);
  free(ref); free(dsrc); free(tmp); free(c.src); free(c.dst); free(c.wy); free(c.wx); free(c.tmp); free(c.r);
}

// ---- the whole ViT -----------------------------------------------------------------
typedef struct vit_ctx {
  dl_vit *vit;
  float *img, *r_cls, *r_reg, *r_patch;
  bool *masks;
  int n, h, w;
  dl_vit_train_ws ws;
  dl_vit_outputs out;
} vit_ctx;

static double vit_loss(void *p) {
  vit_ctx *c = p;
  dl_err err;
  dl_vit_forward_train(c->vit, c->img, c->n, c->h, c->w, c->masks, &c->ws, &c->out, &err);
  const int D = c->vit->cfg.dim, R = c->vit->cfg.registers, np = c->ws.np;
  double l = dot_r(c->out.cls, c->r_cls, (size_t)c->n * D) + dot_r(c->out.patches, c->r_patch, (size_t)c->n * np * D);
  if (R) l += dot_r(c->out.regs, c->r_reg, (size_t)c->n * R * D);
  return l;
}

static void check_vit(const char *label, dl_vit_config cfg, int h, int w, bool with_masks) {
  dl_vit vit;
  dl_vit_init_empty(&vit, &cfg);
  for (int i = 0; i < vit.layout.count; i++) {
    const dl_param_entry *e = &vit.layout.entries[i];
    const bool gain = strstr(e->name, "norm") && strstr(e->name, "weight");
    for (size_t j = 0; j < e->numel; j++)
      vit.params[e->offset + j] = gain ? 1.0f + 0.3f * ref_rand(&rng) : 0.4f * ref_rand(&rng);
  }
  const int n = 2, D = cfg.dim, R = cfg.registers, np = dl_vit_num_patches(&cfg, h, w);
  vit_ctx c = {&vit, rnd((size_t)n * 3 * h * w, 1), rnd((size_t)n * D, 1), rnd((size_t)n * (R ? R : 1) * D, 1),
               rnd((size_t)n * np * D, 1), NULL, n, h, w, {0}, {0}};
  if (with_masks) {
    c.masks = calloc((size_t)n * np, sizeof(bool));
    for (int i = 0; i < n * np; i += 3) c.masks[i] = true;
  }
  c.out = (dl_vit_outputs){malloc((size_t)n * D * 4), R ? malloc((size_t)n * R * D * 4) : NULL,
                           malloc((size_t)n * np * D * 4), NULL};
  vit_loss(&c);
  float *grads = calloc(vit.layout.total, 4), *dimg = malloc((size_t)n * 3 * h * w * 4);
  dl_vit_backward(&vit, &c.ws, c.r_cls, R ? c.r_reg : NULL, c.r_patch, grads, dimg);
  char what[160];
  snprintf(what, sizeof what, "%s input", label);
  fd_check(what, c.img, (size_t)n * 3 * h * w, dimg, vit_loss, &c);
  for (int i = 0; i < vit.layout.count; i++) {
    const dl_param_entry *e = &vit.layout.entries[i];
    if (e->numel == 0 || (!with_masks && strcmp(e->name, "mask_token") == 0)) continue;
    snprintf(what, sizeof what, "%s %s", label, e->name);
    fd_check(what, vit.params + e->offset, e->numel, grads + e->offset, vit_loss, &c);
  }
  dl_vit_train_ws_free(&c.ws);
  free(grads); free(dimg); free(c.img); free(c.r_cls); free(c.r_reg); free(c.r_patch); free(c.masks);
  free(c.out.cls); free(c.out.regs); free(c.out.patches);
  dl_vit_free(&vit);
}

// ---- heads ---------------------------------------------------------------------------
typedef struct head_ctx {
  dl_head *h;
  dl_head_mode mode;
  float *x, *out, *r;
  int m;
  dl_head_ws ws;
} head_ctx;

static double head_loss(void *p) {
  head_ctx *c = p;
  dl_head_forward(c->h, c->mode, c->x, c->m, c->out, &c->ws);
  return dot_r(c->out, c->r, (size_t)c->m * dl_head_out_dim(c->h, c->mode));
}

static void check_head(const char *label, dl_head_config cfg, dl_head_mode mode) {
  dl_head h;
  dl_head_init(&h, &cfg);
  dl_head_init_random(&h, 7);
  for (size_t j = 0; j < h.layout.total; j++) h.params[j] += 0.2f * ref_rand(&rng);  // larger than DINOv2's init
  const int m = 4, in = mode == DL_HEAD_LAST_LAYER ? cfg.out_dim : cfg.in_dim, out = dl_head_out_dim(&h, mode);
  head_ctx c = {&h, mode, rnd((size_t)m * in, 1), malloc((size_t)m * out * 4), rnd((size_t)m * out, 1), m, {0}};
  if (mode == DL_HEAD_LAST_LAYER)  // a normalized bottleneck, as a teacher sends
    for (int r = 0; r < m; r++) {
      double ss = 0.0;
      for (int j = 0; j < in; j++) ss += (double)c.x[r * in + j] * c.x[r * in + j];
      for (int j = 0; j < in; j++) c.x[r * in + j] /= (float)sqrt(ss);
    }
  head_loss(&c);
  float *grads = calloc(h.layout.total, 4), *dx = malloc((size_t)m * in * 4);
  dl_head_backward(&h, &c.ws, c.r, grads, dx);
  char what[160];
  snprintf(what, sizeof what, "%s input", label);
  fd_check(what, c.x, (size_t)m * in, dx, head_loss, &c);
  for (int i = 0; i < h.layout.count; i++) {
    const dl_param_entry *e = &h.layout.entries[i];
    const bool used = mode == DL_HEAD_FULL || (mode == DL_HEAD_BOTTLENECK) == (strstr(e->name, "last_layer") == NULL);
    if (!used) continue;
    snprintf(what, sizeof what, "%s %s", label, e->name);
    fd_check(what, h.params + e->offset, e->numel, grads + e->offset, head_loss, &c);
  }
  dl_head_ws_free(&c.ws);
  free(grads); free(dx); free(c.x); free(c.out); free(c.r);
  dl_head_free(&h);
}

// ---- losses ---------------------------------------------------------------------------
typedef struct loss_ctx {
  int kind, a, b, k;
  float *s, *t, *w, *scratch;
  int *idx;
} loss_ctx;

enum { L_DINO, L_IBOT, L_KOLEO, L_COS, L_L1 };

static double loss_value(void *p) {
  loss_ctx *c = p;
  switch (c->kind) {
    case L_DINO: return dl_dino_loss(c->s, c->t, c->a, 2, c->b, c->k, 0.1f, true, 1.0f, NULL);
    case L_IBOT: return dl_ibot_loss(c->s, c->t, c->w, c->a, c->k, 3, 0.1f, 1.0f, NULL);
    case L_KOLEO: return dl_koleo_loss(c->s, c->a, c->k, 1.0f, NULL, c->scratch, c->idx);
    case L_COS: return dl_cosine_loss(c->s, c->t, c->a, c->k, 1.0f, NULL);
    default: return dl_smooth_l1_loss(c->s, c->t, (size_t)c->a * c->k, 1.0f, 1.0f, NULL);
  }
}

static float *softmax_rows_of(int rows, int k) {
  float *t = rnd((size_t)rows * k, 2);
  for (int r = 0; r < rows; r++) {
    double s = 0.0;
    for (int j = 0; j < k; j++) s += t[r * k + j] = expf(t[r * k + j]);
    for (int j = 0; j < k; j++) t[r * k + j] /= (float)s;
  }
  return t;
}

static void check_losses(void) {
  const int K = 7;
  float g[64 * 8];
  loss_ctx c = {L_DINO, 4, 3, K, rnd(4 * 3 * K, 0.3f), softmax_rows_of(2 * 3, K), NULL, NULL, NULL};
  dl_dino_loss(c.s, c.t, 4, 2, 3, K, 0.1f, true, 1.0f, g);
  fd_check("DINO cross-entropy (self pairs skipped)", c.s, 4 * 3 * K, g, loss_value, &c);
  free(c.s); free(c.t);

  bool masks[3 * 4] = {1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 1};
  float w[12];
  const int m = dl_ibot_weights(w, masks, 3, 4);
  c = (loss_ctx){L_IBOT, m, 0, K, rnd((size_t)m * K, 0.3f), softmax_rows_of(m, K), w, NULL, NULL};
  dl_ibot_loss(c.s, c.t, w, m, K, 3, 0.1f, 1.0f, g);
  fd_check("iBOT cross-entropy (per-crop weights)", c.s, (size_t)m * K, g, loss_value, &c);
  free(c.s); free(c.t);

  int idx[6];
  c = (loss_ctx){L_KOLEO, 6, 0, 5, rnd(30, 1), NULL, NULL, malloc((30 + 12) * 4), idx};
  dl_koleo_loss(c.s, 6, 5, 1.0f, g, c.scratch, idx);
  fd_check("KoLeo", c.s, 30, g, loss_value, &c);
  free(c.s); free(c.scratch);

  c = (loss_ctx){L_COS, 5, 0, 6, rnd(30, 1), rnd(30, 1), NULL, NULL, NULL};
  dl_cosine_loss(c.s, c.t, 5, 6, 1.0f, g);
  fd_check("1 - cos", c.s, 30, g, loss_value, &c);
  c.kind = L_L1;
  for (int i = 0; i < 30; i++) c.t[i] = c.s[i] + 2.0f * ref_rand(&rng);  // both branches of smooth-L1
  dl_smooth_l1_loss(c.s, c.t, 30, 1.0f, 1.0f, g);
  fd_check("smooth-L1 (beta 1)", c.s, 30, g, loss_value, &c);
  free(c.s); free(c.t);
}

int main(void) {
  check_linear();
  check_layernorm();
  check_activations();
  check_residual();
  check_attention();
  check_pos_embed(DL_INTERP_LEGACY, 6, 3);
  check_pos_embed(DL_INTERP_ANTIALIAS, 6, 3);
  check_pos_embed(DL_INTERP_ANTIALIAS, 2, 5);
  dl_vit_config mlp = {.patch = 2, .dim = 8, .depth = 2, .heads = 2, .ffn_hidden = 12, .registers = 0,
                       .pos_grid = 2, .ffn = DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
  check_vit("ViT mlp legacy 6x4 masked:", mlp, 6, 4, true);
  dl_vit_config swiglu = {.patch = 2, .dim = 8, .depth = 1, .heads = 2, .ffn_hidden = 6, .registers = 2,
                          .pos_grid = 3, .ffn = DL_FFN_SWIGLU, .interp = DL_INTERP_ANTIALIAS};
  check_vit("ViT swiglu reg2 antialias 4x8:", swiglu, 4, 8, false);
  check_vit("ViT swiglu reg2 stored grid 6x6:", swiglu, 6, 6, false);
  dl_head_config dino = {.in_dim = 6, .hidden_dim = 10, .out_dim = 5, .nlayers = 3, .prototypes = 9};
  check_head("DINO head full:", dino, DL_HEAD_FULL);
  check_head("DINO head to bottleneck:", dino, DL_HEAD_BOTTLENECK);
  check_head("DINO head last layer:", dino, DL_HEAD_LAST_LAYER);
  dl_head_config adaptor = {.in_dim = 6, .hidden_dim = 12, .out_dim = 9, .nlayers = 2, .prototypes = 0};
  check_head("adaptor MLP:", adaptor, DL_HEAD_FULL);
  check_losses();
  return dl_test_summary("test_fd");
}
