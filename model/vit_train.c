// The ViT's training forward pass (activations kept) and backward pass.
#include "model/vit_train.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu/ops.h"
#include "model/cpu/ops_backward.h"
#include "model/pos_embed.h"
#include "model/pos_embed_train.h"

#define LN_EPS 1e-6f

typedef struct arena {
  float *base;
  size_t off;
} arena;

// Measures (base NULL) or hands out 64-byte aligned slices of one allocation.
static float *take(arena *a, size_t n) {
  float *p = a->base ? a->base + a->off : NULL;
  a->off += (n + 15) & ~(size_t)15;
  return p;
}

static size_t max3(size_t a, size_t b, size_t c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

static size_t carve(dl_vit_train_ws *ws, float *base, const dl_vit_config *c) {
  arena a = {base, 0};
  const size_t D = (size_t)c->dim, rows = (size_t)ws->n * ws->t, F = (size_t)c->ffn_hidden;
  const size_t fc1 = F * (c->ffn == DL_FFN_SWIGLU ? 2 : 1), pp = (size_t)c->patch * c->patch * 3;
  const size_t npr = (size_t)ws->n * ws->np, nt = (size_t)omp_get_max_threads();
  const size_t ptmp = dl_pos_embed_tmp_floats(c->pos_grid, c->dim, ws->gh, ws->gw);
  for (int b = 0; b <= c->depth; b++) ws->xs[b] = take(&a, rows * D);
  for (int b = 0; b < c->depth; b++) {
    dl_vit_block_acts *k = &ws->blocks[b];
    k->x_mid = take(&a, rows * D);
    k->ln1 = take(&a, rows * D);
    k->ln2 = take(&a, rows * D);
    k->mean1 = take(&a, rows);
    k->rstd1 = take(&a, rows);
    k->mean2 = take(&a, rows);
    k->rstd2 = take(&a, rows);
    k->qkv = take(&a, rows * 3 * D);
    k->probs = take(&a, (size_t)ws->n * c->heads * ws->t * ws->t);
    k->attn = take(&a, rows * D);
    k->proj = take(&a, rows * D);
    k->h_pre = take(&a, rows * fc1);
    k->h_act = take(&a, rows * F);
    k->fc2 = take(&a, rows * D);
  }
  ws->meanf = take(&a, rows);
  ws->rstdf = take(&a, rows);
  ws->unfold = take(&a, npr * pp);
  ws->tok = take(&a, npr * D);
  ws->pos = take(&a, (size_t)ws->np * D);
  ws->wy = take(&a, (size_t)ws->gh * c->pos_grid);
  ws->wx = take(&a, (size_t)ws->gw * c->pos_grid);
  ws->pos_tmp = take(&a, ptmp);
  ws->ones = take(&a, rows);
  ws->dx = take(&a, rows * D);
  ws->dy = take(&a, rows * D);
  ws->dln = take(&a, rows * D);
  ws->dqkv = take(&a, rows * 3 * D);
  ws->dattn = take(&a, rows * D);
  ws->dh = take(&a, rows * fc1);
  ws->dhact = take(&a, rows * F);
  ws->dpos = take(&a, (size_t)ws->np * D);
  ws->dpos_tmp = take(&a, ptmp);
  ws->dunfold = take(&a, npr * pp);
  ws->scratch = take(&a, max3(nt * dl_attention_backward_scratch_floats(ws->t),
                              dl_layernorm_backward_scratch_floats(c->dim), nt * D));
  return a.off;
}

void dl_vit_train_ws_free(dl_vit_train_ws *ws) {
  free(ws->buf);
  free(ws->blocks);
  free(ws->xs);
  memset(ws, 0, sizeof *ws);
}

// The inverse scatter of unfold_patches (patches do not overlap).
static void fold_patches(float *img, const float *rows, int n, int h, int w, int p) {
  const int gh = h / p, gw = w / p, row = 3 * p * p;
#pragma omp parallel for collapse(2) schedule(static)
  for (int i = 0; i < n; i++)
    for (int gy = 0; gy < gh; gy++)
      for (int gx = 0; gx < gw; gx++) {
        const float *o = rows + (((size_t)i * gh + gy) * gw + gx) * row;
        for (int c = 0; c < 3; c++)
          for (int ky = 0; ky < p; ky++)
            memcpy(img + (((size_t)i * 3 + c) * h + gy * p + ky) * w + gx * p, o + (c * p + ky) * p,
                   (size_t)p * sizeof(float));
      }
}

static int prepare(const dl_vit *vit, int n, int h, int w, const bool *masks, dl_vit_train_ws *ws,
                   dl_err *err) {
  const dl_vit_config *c = &vit->cfg;
  if (n <= 0) return dl_fail(err, "empty batch");
  if (h <= 0 || w <= 0 || h % c->patch || w % c->patch)
    return dl_fail(err, "input %dx%d is not a multiple of the patch size %d", h, w, c->patch);
  if (ws->blocks_cap < c->depth) {
    free(ws->blocks);
    free(ws->xs);
    ws->blocks = dl_calloc((size_t)c->depth, sizeof *ws->blocks);
    ws->xs = dl_calloc((size_t)c->depth + 1, sizeof *ws->xs);
    ws->blocks_cap = c->depth;
  }
  ws->n = n, ws->h = h, ws->w = w, ws->gh = h / c->patch, ws->gw = w / c->patch;
  ws->np = ws->gh * ws->gw, ws->t = 1 + c->registers + ws->np, ws->masks = masks;
  size_t need = carve(ws, NULL, c);
  if (ws->cap < need) {
    free(ws->buf);
    ws->buf = dl_aligned_alloc(need * sizeof(float));
    ws->cap = need;
  }
  carve(ws, ws->buf, c);
  const size_t rows = (size_t)n * ws->t;
  for (size_t r = 0; r < rows; r++) ws->ones[r] = 1.0f;
  return 0;
}

static void embed_forward(const dl_vit *vit, dl_vit_train_ws *ws, const float *images) {
  const dl_vit_config *c = &vit->cfg;
  const int D = c->dim, R = c->registers, np = ws->np, t = ws->t, M = c->pos_grid;
  dl_unfold_patches(ws->unfold, images, ws->n, ws->h, ws->w, c->patch);
  dl_linear(ws->tok, ws->unfold, dl_vit_param(vit, DL_P_PATCH_W), dl_vit_param(vit, DL_P_PATCH_B),
            ws->n * np, 3 * c->patch * c->patch, D);
  const float *stored = dl_vit_param(vit, DL_P_POS) + D;
  if (dl_pos_embed_is_identity(M, ws->gh, ws->gw)) {
    memcpy(ws->pos, stored, (size_t)np * D * sizeof(float));
  } else {
    dl_pos_embed_axis_weights(ws->wy, M, ws->gh, c->interp);
    dl_pos_embed_axis_weights(ws->wx, M, ws->gw, c->interp);
    dl_pos_embed_apply(ws->pos, stored, ws->wy, ws->wx, M, D, ws->gh, ws->gw, ws->pos_tmp);
  }
  const float *cls = dl_vit_param(vit, DL_P_CLS), *pos0 = dl_vit_param(vit, DL_P_POS);
  const float *reg = dl_vit_param(vit, DL_P_REG), *mask_tok = dl_vit_param(vit, DL_P_MASK);
  float *x = ws->xs[0];
#pragma omp parallel for schedule(static)
  for (int i = 0; i < ws->n; i++) {
    float *xi = x + (size_t)i * t * D;
    for (int k = 0; k < D; k++) xi[k] = cls[k] + pos0[k];
    if (R) memcpy(xi + D, reg, (size_t)R * D * sizeof(float));
    for (int q = 0; q < np; q++) {
      const float *src = ws->tok + ((size_t)i * np + q) * D;
      if (ws->masks && ws->masks[(size_t)i * np + q]) src = mask_tok;
      float *dst = xi + (size_t)(1 + R + q) * D;
      const float *pq = ws->pos + (size_t)q * D;
      for (int k = 0; k < D; k++) dst[k] = src[k] + pq[k];
    }
  }
}

#define BP(k) dl_vit_param(vit, dl_vit_block_index(c, b, k))
#define BG(k) (grads + vit->layout.entries[dl_vit_block_index(c, b, k)].offset)

static void layernorm_train(float *y, float *mean, float *rstd, const float *x, const float *g,
                            const float *bias, int rows, int d) {
  dl_layernorm_stats(mean, rstd, x, rows, d, LN_EPS);
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * d;
    float *yr = y + (size_t)r * d;
    const float mu = mean[r], rs = rstd[r];
#pragma omp simd
    for (int i = 0; i < d; i++) yr[i] = (xr[i] - mu) * rs * g[i] + bias[i];
  }
}

static void block_forward(const dl_vit *vit, int b, dl_vit_train_ws *ws) {
  const dl_vit_config *c = &vit->cfg;
  const int D = c->dim, rows = ws->n * ws->t, F = c->ffn_hidden;
  dl_vit_block_acts *k = &ws->blocks[b];
  const float *x = ws->xs[b];
  layernorm_train(k->ln1, k->mean1, k->rstd1, x, BP(DL_P_NORM1_W), BP(DL_P_NORM1_B), rows, D);
  dl_linear(k->qkv, k->ln1, BP(DL_P_QKV_W), BP(DL_P_QKV_B), rows, D, 3 * D);
  dl_attention_train(k->attn, k->probs, k->qkv, ws->n, ws->t, c->heads, D / c->heads);
  dl_linear(k->proj, k->attn, BP(DL_P_PROJ_W), BP(DL_P_PROJ_B), rows, D, D);
  memcpy(k->x_mid, x, (size_t)rows * D * sizeof(float));
  dl_residual_scaled(k->x_mid, k->proj, BP(DL_P_LS1), rows, D);
  layernorm_train(k->ln2, k->mean2, k->rstd2, k->x_mid, BP(DL_P_NORM2_W), BP(DL_P_NORM2_B), rows, D);
  if (c->ffn == DL_FFN_SWIGLU) {
    dl_linear(k->h_pre, k->ln2, BP(DL_P_FC1_W), BP(DL_P_FC1_B), rows, D, 2 * F);
    dl_swiglu(k->h_act, k->h_pre, rows, F);
  } else {
    dl_linear(k->h_pre, k->ln2, BP(DL_P_FC1_W), BP(DL_P_FC1_B), rows, D, F);
    memcpy(k->h_act, k->h_pre, (size_t)rows * F * sizeof(float));
    dl_gelu_inplace(k->h_act, (size_t)rows * F);
  }
  dl_linear(k->fc2, k->h_act, BP(DL_P_FC2_W), BP(DL_P_FC2_B), rows, F, D);
  float *out = ws->xs[b + 1];
  memcpy(out, k->x_mid, (size_t)rows * D * sizeof(float));
  dl_residual_scaled(out, k->fc2, BP(DL_P_LS2), rows, D);
}

int dl_vit_forward_train(const dl_vit *vit, const float *images, int n, int h, int w,
                         const bool *masks, dl_vit_train_ws *ws, dl_vit_outputs *out, dl_err *err) {
  if (prepare(vit, n, h, w, masks, ws, err)) return -1;
  const dl_vit_config *c = &vit->cfg;
  const int D = c->dim, R = c->registers, np = ws->np, t = ws->t, rows = n * t;
  embed_forward(vit, ws, images);
  for (int b = 0; b < c->depth; b++) block_forward(vit, b, ws);
  const float *xf = ws->xs[c->depth];
  if (out->prenorm) memcpy(out->prenorm, xf, (size_t)rows * D * sizeof(float));
  // The final norm's output goes to the scratch of the backward pass (dln),
  // which is free until then, and from there to the outputs.
  const int nw = vit->layout.count - 2;
  layernorm_train(ws->dln, ws->meanf, ws->rstdf, xf, dl_vit_param(vit, nw), dl_vit_param(vit, nw + 1), rows, D);
  for (int i = 0; i < n; i++) {
    const float *li = ws->dln + (size_t)i * t * D;
    if (out->cls) memcpy(out->cls + (size_t)i * D, li, (size_t)D * sizeof(float));
    if (R && out->regs) memcpy(out->regs + (size_t)i * R * D, li + D, (size_t)R * D * sizeof(float));
    if (out->patches)
      memcpy(out->patches + (size_t)i * np * D, li + (size_t)(1 + R) * D, (size_t)np * D * sizeof(float));
  }
  return 0;
}

static void add_inplace(float *a, const float *b, size_t n) {
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) a[i] += b[i];
}

// ws->dx holds the gradient of block b's output; on return, of its input.
static void block_backward(const dl_vit *vit, int b, dl_vit_train_ws *ws, float *grads) {
  const dl_vit_config *c = &vit->cfg;
  const int D = c->dim, rows = ws->n * ws->t, F = c->ffn_hidden, hd = D / c->heads;
  const int fc1 = c->ffn == DL_FFN_SWIGLU ? 2 * F : F;
  const dl_vit_block_acts *k = &ws->blocks[b];
  // out = x_mid + ls2 * fc2(act(fc1(norm2(x_mid)))).
  dl_residual_scaled_backward(ws->dy, BG(DL_P_LS2), ws->dx, k->fc2, BP(DL_P_LS2), rows, D, ws->scratch);
  dl_linear_backward(ws->dhact, BG(DL_P_FC2_W), BG(DL_P_FC2_B), ws->dy, k->h_act, BP(DL_P_FC2_W), rows, F,
                     D, ws->ones, 0);
  if (c->ffn == DL_FFN_SWIGLU) dl_swiglu_backward(ws->dh, ws->dhact, k->h_pre, rows, F);
  else dl_gelu_backward(ws->dh, ws->dhact, k->h_pre, (size_t)rows * F);
  dl_linear_backward(ws->dln, BG(DL_P_FC1_W), BG(DL_P_FC1_B), ws->dh, k->ln2, BP(DL_P_FC1_W), rows, D, fc1,
                     ws->ones, 0);
  dl_layernorm_backward(ws->dy, BG(DL_P_NORM2_W), BG(DL_P_NORM2_B), ws->dln, k->x_mid, BP(DL_P_NORM2_W),
                        k->mean2, k->rstd2, rows, D, ws->scratch);
  add_inplace(ws->dx, ws->dy, (size_t)rows * D);
  // x_mid = x + ls1 * proj(attention(qkv(norm1(x)))).
  dl_residual_scaled_backward(ws->dy, BG(DL_P_LS1), ws->dx, k->proj, BP(DL_P_LS1), rows, D, ws->scratch);
  dl_linear_backward(ws->dattn, BG(DL_P_PROJ_W), BG(DL_P_PROJ_B), ws->dy, k->attn, BP(DL_P_PROJ_W), rows, D,
                     D, ws->ones, 0);
  dl_attention_backward(ws->dqkv, ws->dattn, k->qkv, k->probs, ws->n, ws->t, c->heads, hd, ws->scratch);
  dl_linear_backward(ws->dln, BG(DL_P_QKV_W), BG(DL_P_QKV_B), ws->dqkv, k->ln1, BP(DL_P_QKV_W), rows, D,
                     3 * D, ws->ones, 0);
  dl_layernorm_backward(ws->dy, BG(DL_P_NORM1_W), BG(DL_P_NORM1_B), ws->dln, ws->xs[b], BP(DL_P_NORM1_W),
                        k->mean1, k->rstd1, rows, D, ws->scratch);
  add_inplace(ws->dx, ws->dy, (size_t)rows * D);
}

#undef BP
#undef BG

static float *gslot(const dl_vit *vit, float *grads, int index) {
  return grads + vit->layout.entries[index].offset;
}

// Tokens, registers, position embeddings (through the resize) and the patch
// embedding, from the gradient of the first block's input in ws->dx.
static void embed_backward(const dl_vit *vit, dl_vit_train_ws *ws, float *grads, float *d_images) {
  const dl_vit_config *c = &vit->cfg;
  const int D = c->dim, R = c->registers, np = ws->np, t = ws->t, n = ws->n, M = c->pos_grid;
  float *g_cls = gslot(vit, grads, DL_P_CLS), *g_pos = gslot(vit, grads, DL_P_POS);
  float *g_reg = gslot(vit, grads, DL_P_REG), *g_mask = gslot(vit, grads, DL_P_MASK);
  const float *dx = ws->dx;
  float *dtok = ws->dy;  // [n * np, D]
  memset(ws->dpos, 0, (size_t)np * D * sizeof(float));
  for (int i = 0; i < n; i++)
    for (int k = 0; k < D; k++) {
      const float g = dx[(size_t)i * t * D + k];
      g_cls[k] += g;
      g_pos[k] += g;
      for (int r = 0; r < R; r++) g_reg[(size_t)r * D + k] += dx[((size_t)i * t + 1 + r) * D + k];
    }
  // Patch positions: one task per position, summing over the images.
#pragma omp parallel for schedule(static)
  for (int q = 0; q < np; q++) {
    float *dp = ws->dpos + (size_t)q * D;
    for (int i = 0; i < n; i++) {
      const float *g = dx + ((size_t)i * t + 1 + R + q) * D;
      float *dt = dtok + ((size_t)i * np + q) * D;
      const bool masked = ws->masks && ws->masks[(size_t)i * np + q];
      for (int k = 0; k < D; k++) {
        dp[k] += g[k];
        dt[k] = masked ? 0.0f : g[k];
      }
    }
  }
  if (ws->masks)  // masked patches took mask_token: its gradient, serially
    for (int i = 0; i < n; i++)
      for (int q = 0; q < np; q++)
        if (ws->masks[(size_t)i * np + q])
          for (int k = 0; k < D; k++) g_mask[k] += dx[((size_t)i * t + 1 + R + q) * D + k];
  if (dl_pos_embed_is_identity(M, ws->gh, ws->gw)) add_inplace(g_pos + D, ws->dpos, (size_t)np * D);
  else dl_pos_embed_apply_backward(g_pos + D, ws->dpos, ws->wy, ws->wx, M, D, ws->gh, ws->gw, ws->dpos_tmp);
  const int pp = 3 * c->patch * c->patch;
  dl_linear_backward(d_images ? ws->dunfold : NULL, gslot(vit, grads, DL_P_PATCH_W),
                     gslot(vit, grads, DL_P_PATCH_B), dtok, ws->unfold, dl_vit_param(vit, DL_P_PATCH_W),
                     n * np, pp, D, ws->ones, 0);
  if (d_images) fold_patches(d_images, ws->dunfold, n, ws->h, ws->w, c->patch);
}

void dl_vit_backward(const dl_vit *vit, dl_vit_train_ws *ws, const float *d_cls, const float *d_regs,
                     const float *d_patches, float *grads, float *d_images) {
  const dl_vit_config *c = &vit->cfg;
  const int D = c->dim, R = c->registers, np = ws->np, t = ws->t, n = ws->n, rows = n * t;
  // Gather the outputs' gradients into token order [cls, registers, patches].
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; i++) {
    float *g = ws->dln + (size_t)i * t * D;
    if (d_cls) memcpy(g, d_cls + (size_t)i * D, (size_t)D * sizeof(float));
    else memset(g, 0, (size_t)D * sizeof(float));
    if (R && d_regs) memcpy(g + D, d_regs + (size_t)i * R * D, (size_t)R * D * sizeof(float));
    else if (R) memset(g + D, 0, (size_t)R * D * sizeof(float));
    if (d_patches) memcpy(g + (size_t)(1 + R) * D, d_patches + (size_t)i * np * D, (size_t)np * D * sizeof(float));
    else memset(g + (size_t)(1 + R) * D, 0, (size_t)np * D * sizeof(float));
  }
  const int nw = vit->layout.count - 2;
  dl_layernorm_backward(ws->dx, gslot(vit, grads, nw), gslot(vit, grads, nw + 1), ws->dln, ws->xs[c->depth],
                        dl_vit_param(vit, nw), ws->meanf, ws->rstdf, rows, D, ws->scratch);
  for (int b = c->depth - 1; b >= 0; b--) block_backward(vit, b, ws, grads);
  embed_backward(vit, ws, grads, d_images);
}
