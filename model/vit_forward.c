// The DINOv2 ViT forward pass on the CPU for a whole batch at once: every
// linear layer is one sgemm over all tokens of all images, which is what
// makes the CPU path fast.
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu/ops.h"
#include "model/pos_embed.h"
#include "model/vit.h"
#include "model/vit_bf16.h"

#define LN_EPS 1e-6f

// Activation buffers carved out of one workspace allocation.
typedef struct forward_buffers {
  float *x, *ln, *qkv, *attn, *hidden, *gated, *tmp, *unfold, *pos, *scratch;
} forward_buffers;

static size_t carve(forward_buffers *fb, float *base, const dl_vit_config *c, int n, int t, int np) {
  const size_t D = (size_t)c->dim, rows = (size_t)n * t, pp = (size_t)c->patch * c->patch * 3;
  const size_t fc1_out = (size_t)c->ffn_hidden * (c->ffn == DL_FFN_SWIGLU ? 2 : 1);
  size_t sizes[] = {rows * D, rows * D, rows * 3 * D, rows * D, rows * fc1_out,
                    c->ffn == DL_FFN_SWIGLU ? rows * c->ffn_hidden : 0, rows * D,
                    (size_t)n * np * pp, (size_t)np * D,
                    (size_t)omp_get_max_threads() * dl_attention_scratch_floats(t)};
  float **slots[] = {&fb->x, &fb->ln, &fb->qkv, &fb->attn, &fb->hidden, &fb->gated,
                     &fb->tmp, &fb->unfold, &fb->pos, &fb->scratch};
  size_t off = 0;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    if (base) *slots[i] = base + off;
    off += (sizes[i] + 15) & ~(size_t)15;
  }
  return off;
}

// x = [cls + pos0, registers, patches + pos]: registers come after the
// position embeddings are added, so they carry none.
static void assemble_tokens(const dl_vit *vit, forward_buffers *fb, int n, int np, int t,
                            const bool *masks) {
  const dl_vit_config *c = &vit->cfg;
  const int D = c->dim, R = c->registers;
  const float *cls = dl_vit_param(vit, DL_P_CLS), *pos0 = dl_vit_param(vit, DL_P_POS);
  const float *reg = dl_vit_param(vit, DL_P_REG), *mask_tok = dl_vit_param(vit, DL_P_MASK);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; i++) {
    float *xi = fb->x + (size_t)i * t * D;
    for (int k = 0; k < D; k++) xi[k] = cls[k] + pos0[k];
    if (R) memcpy(xi + D, reg, (size_t)R * D * sizeof(float));
    for (int q = 0; q < np; q++) {
      const float *src = fb->tmp + ((size_t)i * np + q) * D;
      if (masks && masks[(size_t)i * np + q]) src = mask_tok;
      float *dst = xi + (size_t)(1 + R + q) * D;
      const float *pq = fb->pos + (size_t)q * D;
      for (int k = 0; k < D; k++) dst[k] = src[k] + pq[k];
    }
  }
}

// A block's linear layers: float32 (ops.h) unless the forward holds the
// weight in bf16 (w16 not NULL: the bf16 teacher, vit_bf16.h).
static void linear(const dl_bf16_matrix *w16, float *y, const float *x, const float *w, const float *bias, int m,
                   int k, int n) {
  if (w16) dl_gemm_bf16_nt(y, x, w16, m, &(dl_gemm_epilogue){.bias = bias});
  else dl_linear(y, x, w, bias, m, k, n);
}
static void linear_gelu(const dl_bf16_matrix *w16, float *y, const float *x, const float *w, const float *bias,
                        int m, int k, int n) {
  if (w16) dl_gemm_bf16_nt(y, x, w16, m, &(dl_gemm_epilogue){.bias = bias, .gelu = true});
  else dl_linear_gelu(y, x, w, bias, m, k, n);
}
static void linear_residual(const dl_bf16_matrix *w16, float *res, float *scratch, const float *x, const float *w,
                            const float *bias, const float *gamma, int m, int k, int n) {
  if (w16) dl_gemm_bf16_nt(scratch, x, w16, m, &(dl_gemm_epilogue){.bias = bias, .residual = res, .gamma = gamma});
  else dl_linear_residual(res, scratch, x, w, bias, gamma, m, k, n);
}

static void block_forward(const dl_vit *vit, const dl_vit_bf16 *bf16, int b, forward_buffers *fb, int n, int t) {
  const dl_vit_config *c = &vit->cfg;
  const int D = c->dim, rows = n * t, F = c->ffn_hidden;
#define P(k) dl_vit_param(vit, dl_vit_block_index(c, b, k))
#define W16(k) (bf16 ? &bf16->by_param[dl_vit_block_index(c, b, k)] : NULL)
  dl_layernorm(fb->ln, fb->x, P(DL_P_NORM1_W), P(DL_P_NORM1_B), rows, D, LN_EPS);
  linear(W16(DL_P_QKV_W), fb->qkv, fb->ln, P(DL_P_QKV_W), P(DL_P_QKV_B), rows, D, 3 * D);
  dl_attention(fb->attn, fb->qkv, n, t, c->heads, D / c->heads, fb->scratch);
  linear_residual(W16(DL_P_PROJ_W), fb->x, fb->tmp, fb->attn, P(DL_P_PROJ_W), P(DL_P_PROJ_B), P(DL_P_LS1), rows, D,
                  D);
  dl_layernorm(fb->ln, fb->x, P(DL_P_NORM2_W), P(DL_P_NORM2_B), rows, D, LN_EPS);
  if (c->ffn == DL_FFN_SWIGLU) {
    linear(W16(DL_P_FC1_W), fb->hidden, fb->ln, P(DL_P_FC1_W), P(DL_P_FC1_B), rows, D, 2 * F);
    dl_swiglu(fb->gated, fb->hidden, rows, F);
    linear_residual(W16(DL_P_FC2_W), fb->x, fb->tmp, fb->gated, P(DL_P_FC2_W), P(DL_P_FC2_B), P(DL_P_LS2), rows, F,
                    D);
  } else {
    linear_gelu(W16(DL_P_FC1_W), fb->hidden, fb->ln, P(DL_P_FC1_W), P(DL_P_FC1_B), rows, D, F);
    linear_residual(W16(DL_P_FC2_W), fb->x, fb->tmp, fb->hidden, P(DL_P_FC2_W), P(DL_P_FC2_B), P(DL_P_LS2), rows, F,
                    D);
  }
#undef W16
#undef P
}

static void write_outputs(const dl_vit *vit, forward_buffers *fb, int n, int np, int t, dl_vit_outputs *out) {
  const int D = vit->cfg.dim, R = vit->cfg.registers;
  const int norm_w = vit->layout.count - 2, norm_b = vit->layout.count - 1;
  if (out->prenorm) memcpy(out->prenorm, fb->x, (size_t)n * t * D * sizeof(float));
  dl_layernorm(fb->ln, fb->x, dl_vit_param(vit, norm_w), dl_vit_param(vit, norm_b), n * t, D, LN_EPS);
  for (int i = 0; i < n; i++) {
    const float *li = fb->ln + (size_t)i * t * D;
    memcpy(out->cls + (size_t)i * D, li, (size_t)D * sizeof(float));
    if (R && out->regs) memcpy(out->regs + (size_t)i * R * D, li + D, (size_t)R * D * sizeof(float));
    memcpy(out->patches + (size_t)i * np * D, li + (size_t)(1 + R) * D, (size_t)np * D * sizeof(float));
  }
}

// The forward pass; bf16 NULL: float32 throughout.
static int forward(const dl_vit *vit, const dl_vit_bf16 *bf16, const float *images, int n, int h, int w,
                   const bool *masks, dl_vit_workspace *ws, dl_vit_outputs *out, dl_err *err) {
  const dl_vit_config *c = &vit->cfg;
  if (n <= 0) return dl_fail(err, "empty batch");
  if (h <= 0 || w <= 0 || h % c->patch || w % c->patch)
    return dl_fail(err, "input %dx%d is not a multiple of the patch size %d", h, w, c->patch);
  const int gh = h / c->patch, gw = w / c->patch, np = gh * gw, t = 1 + c->registers + np, D = c->dim;
  forward_buffers fb;
  size_t need = carve(&fb, NULL, c, n, t, np);
  if (ws->cap < need) {
    free(ws->buf);
    ws->buf = dl_aligned_alloc(need * sizeof(float));
    ws->cap = need;
  }
  carve(&fb, ws->buf, c, n, t, np);

  dl_unfold_patches(fb.unfold, images, n, h, w, c->patch);
  dl_linear(fb.tmp, fb.unfold, dl_vit_param(vit, DL_P_PATCH_W), dl_vit_param(vit, DL_P_PATCH_B), n * np,
            3 * c->patch * c->patch, D);
  const float *stored = dl_vit_param(vit, DL_P_POS) + D;  // skips the class position
  if (dl_pos_embed_is_identity(c->pos_grid, gh, gw))
    memcpy(fb.pos, stored, (size_t)np * D * sizeof(float));
  else
    dl_pos_embed_resize(fb.pos, stored, c->pos_grid, D, gh, gw, c->interp);
  assemble_tokens(vit, &fb, n, np, t, masks);
  for (int b = 0; b < c->depth; b++) block_forward(vit, bf16, b, &fb, n, t);
  write_outputs(vit, &fb, n, np, t, out);
  return 0;
}

int dl_vit_forward(const dl_vit *vit, const float *images, int n, int h, int w, const bool *masks,
                   dl_vit_workspace *ws, dl_vit_outputs *out, dl_err *err) {
  return forward(vit, NULL, images, n, h, w, masks, ws, out, err);
}

int dl_vit_forward_bf16(const dl_vit *vit, const dl_vit_bf16 *bf16, const float *images, int n, int h, int w,
                        const bool *masks, dl_vit_workspace *ws, dl_vit_outputs *out, dl_err *err) {
  if (bf16->count != vit->layout.count) return dl_fail(err, "the bf16 weights belong to another model");
  return forward(vit, bf16, images, n, h, w, masks, ws, out, err);
}
