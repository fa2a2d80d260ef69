#include "model/cuda/vit_cuda_train.h"

#include <stdlib.h>
#include <string.h>

#include "model/cuda/attention_dispatch.h"
#include "model/cuda/cuda_check.h"
#include "model/cuda/device_arena.h"
#include "model/cuda/grad_buckets.h"
#include "model/pos_embed.h"

#define LN_EPS 1e-6f

static size_t carve(dl_cuda_vit_train_ws *ws, unsigned char *base, const dl_vit_config *c, size_t e) {
  dl_device_arena a = {base, 0};
  const size_t D = (size_t)c->dim, rows = (size_t)ws->n * ws->t, F = (size_t)c->ffn_hidden;
  const size_t fc1 = F * (c->ffn == DL_FFN_SWIGLU ? 2 : 1), pp = (size_t)c->patch * c->patch * 3;
  const size_t npr = (size_t)ws->n * ws->np, lse = (size_t)ws->n * c->heads * ws->t, f = sizeof(float);
  for (int b = 0; b <= c->depth; b++) ws->xs[b] = dl_arena_take(&a, rows * D * f);  // the fp32 residual stream
  for (int b = 0; b < c->depth; b++) {
    dl_cuda_block_acts *k = &ws->blocks[b];
    k->x_mid = dl_arena_take(&a, rows * D * f);
    k->ln1 = dl_arena_take(&a, rows * D * e);
    k->ln2 = dl_arena_take(&a, rows * D * e);
    k->qkv = dl_arena_take(&a, rows * 3 * D * e);
    k->attn = dl_arena_take(&a, rows * D * e);
    k->proj = dl_arena_take(&a, rows * D * e);
    k->h_pre = dl_arena_take(&a, rows * fc1 * e);
    k->h_act = dl_arena_take(&a, rows * F * e);
    k->fc2 = dl_arena_take(&a, rows * D * e);
    k->mean1 = dl_arena_take(&a, rows * f);
    k->rstd1 = dl_arena_take(&a, rows * f);
    k->mean2 = dl_arena_take(&a, rows * f);
    k->rstd2 = dl_arena_take(&a, rows * f);
    k->lse = dl_arena_take(&a, lse * f);
  }
  ws->unfold = dl_arena_take(&a, npr * pp * e);
  ws->tok = dl_arena_take(&a, npr * D * e);
  ws->pos = dl_arena_take(&a, (size_t)ws->np * D * e);
  ws->lnf = dl_arena_take(&a, rows * D * e);
  ws->meanf = dl_arena_take(&a, rows * f);
  ws->rstdf = dl_arena_take(&a, rows * f);
  ws->wy = dl_arena_take(&a, (size_t)ws->gh * c->pos_grid * f);
  ws->wx = dl_arena_take(&a, (size_t)ws->gw * c->pos_grid * f);
  ws->masks = dl_arena_take(&a, npr);
  ws->dx = dl_arena_take(&a, rows * D * f);
  ws->dy = dl_arena_take(&a, rows * D * e);
  ws->dln = dl_arena_take(&a, rows * D * e);
  ws->dqkv = dl_arena_take(&a, rows * 3 * D * e);
  ws->dattn = dl_arena_take(&a, rows * D * e);
  ws->dh = dl_arena_take(&a, rows * fc1 * e);
  ws->dhact = dl_arena_take(&a, rows * F * e);
  ws->dtok = dl_arena_take(&a, npr * D * e);
  ws->dpos = dl_arena_take(&a, (size_t)ws->np * D * f);
  ws->attn_scratch = dl_arena_take(&a, lse * f);
  return a.off;
}

void dl_cuda_vit_train_ws_free(dl_cuda_vit_train_ws *ws) {
  if (ws->mem) cudaCheck(cudaFree(ws->mem));
  free(ws->blocks);
  free(ws->xs);
  memset(ws, 0, sizeof *ws);
}

static const void *param(const dl_cuda_vit *g, int index) {
  return (const unsigned char *)g->params + g->layout->entries[index].offset * dl_dtype_size(g->dtype);
}
static float *gslot(const dl_cuda_vit *g, float *grads, int index) { return grads + g->layout->entries[index].offset; }

static int prepare(dl_cuda_vit *g, int n, int h, int w, dl_cuda_vit_train_ws *ws, dl_err *err) {
  const dl_vit_config *c = &g->cfg;
  if (n <= 0) return dl_fail(err, "empty batch");
  if (h <= 0 || w <= 0 || h % c->patch || w % c->patch)
    return dl_fail(err, "input %dx%d is not a multiple of the patch size %d", h, w, c->patch);
  if (c->dim / c->heads != DL_CUDA_ATTN_HEAD_DIM)
    return dl_fail(err, "the CUDA attention needs head dimension %d", DL_CUDA_ATTN_HEAD_DIM);
  if (ws->blocks_cap < c->depth) {
    free(ws->blocks);
    free(ws->xs);
    ws->blocks = dl_calloc((size_t)c->depth, sizeof *ws->blocks);
    ws->xs = dl_calloc((size_t)c->depth + 1, sizeof *ws->xs);
    ws->blocks_cap = c->depth;
  }
  ws->n = n, ws->h = h, ws->w = w, ws->gh = h / c->patch, ws->gw = w / c->patch;
  ws->np = ws->gh * ws->gw, ws->t = 1 + c->registers + ws->np;
  const size_t e = dl_dtype_size(g->dtype), need = carve(ws, NULL, c, e);
  if (ws->mem_bytes < need) {
    if (ws->mem) cudaCheckOr(cudaFree(ws->mem), dl_cuda_take_error(err));
    cudaCheckOr(cudaMalloc(&ws->mem, need), dl_cuda_take_error(err));
    ws->mem_bytes = need;
  }
  carve(ws, ws->mem, c, e);
  return 0;
}

static void embed_forward(dl_cuda_vit *g, dl_cuda_vit_train_ws *ws, const float *images, const bool *masks) {
  const dl_vit_config *c = &g->cfg;
  const dl_dtype dt = g->dtype;
  const size_t e = dl_dtype_size(dt), D = (size_t)c->dim, M = (size_t)c->pos_grid;
  cudaStream_t s = g->stream;
  const size_t img_floats = (size_t)ws->n * 3 * ws->h * ws->w;
  size_t bytes = g->images_cap * sizeof(float);
  if (bytes < img_floats * sizeof(float)) {
    if (g->images) cudaCheck(cudaFree(g->images));
    cudaCheck(cudaMalloc((void **)&g->images, img_floats * sizeof(float)));
    g->images_cap = img_floats;
  }
  cudaCheck(cudaMemcpyAsync(g->images, images, img_floats * sizeof(float), cudaMemcpyHostToDevice, s));
  if (masks)  // bool is one byte holding 0 or 1
    cudaCheck(cudaMemcpyAsync(ws->masks, masks, (size_t)ws->n * ws->np, cudaMemcpyHostToDevice, s));
  dl_cuda_unfold_patches(dt, ws->unfold, g->images, ws->n, ws->h, ws->w, c->patch, s);
  dl_cuda_linear(&g->blas, dt, ws->tok, ws->unfold, param(g, DL_P_PATCH_W), param(g, DL_P_PATCH_B), ws->n * ws->np,
                 3 * c->patch * c->patch, c->dim, DL_EPILOGUE_BIAS, s);
  const unsigned char *stored = (const unsigned char *)param(g, DL_P_POS) + D * e;
  if (dl_pos_embed_is_identity(c->pos_grid, ws->gh, ws->gw)) {
    cudaCheck(cudaMemcpyAsync(ws->pos, stored, (size_t)ws->np * D * e, cudaMemcpyDeviceToDevice, s));
  } else {
    float *host = dl_malloc(((size_t)ws->gh + ws->gw) * M * sizeof(float));
    dl_pos_embed_axis_weights(host, c->pos_grid, ws->gh, c->interp);
    dl_pos_embed_axis_weights(host + (size_t)ws->gh * M, c->pos_grid, ws->gw, c->interp);
    cudaCheck(cudaMemcpyAsync(ws->wy, host, (size_t)ws->gh * M * sizeof(float), cudaMemcpyHostToDevice, s));
    cudaCheck(cudaMemcpyAsync(ws->wx, host + (size_t)ws->gh * M, (size_t)ws->gw * M * sizeof(float),
                              cudaMemcpyHostToDevice, s));
    cudaCheck(cudaStreamSynchronize(s));  // the host weights are freed next
    free(host);
    dl_cuda_pos_embed_resize(dt, ws->pos, stored, ws->wy, ws->wx, c->pos_grid, c->dim, ws->gh, ws->gw, s);
  }
  dl_cuda_assemble_tokens(dt, ws->xs[0], ws->tok, param(g, DL_P_CLS), param(g, DL_P_POS), param(g, DL_P_REG),
                          param(g, DL_P_MASK), ws->pos, masks ? ws->masks : NULL, ws->n, ws->np, c->registers,
                          c->dim, s);
}

#define BP(k) param(g, dl_vit_block_index(c, b, k))
#define BG(k) gslot(g, grads, dl_vit_block_index(c, b, k))

// The LayerNorm after block b's residual add: block b + 1's first, or the
// final norm after the last block.
static void next_norm(dl_cuda_vit *g, int b, dl_cuda_vit_train_ws *ws, const void **w, const void **bias, void **y,
                      float **mean, float **rstd) {
  const dl_vit_config *c = &g->cfg;
  if (b + 1 < c->depth) {
    dl_cuda_block_acts *n = &ws->blocks[b + 1];
    *w = param(g, dl_vit_block_index(c, b + 1, DL_P_NORM1_W));
    *bias = param(g, dl_vit_block_index(c, b + 1, DL_P_NORM1_B));
    *y = n->ln1, *mean = n->mean1, *rstd = n->rstd1;
  } else {
    const int nw = g->layout->count - 2;
    *w = param(g, nw), *bias = param(g, nw + 1);
    *y = ws->lnf, *mean = ws->meanf, *rstd = ws->rstdf;
  }
}

// Block b from its normalized input k->ln1 (written by the previous block's
// fused add, or by the embedding): each residual add in float32 fused with
// the LayerNorm that follows it.
static void block_forward(dl_cuda_vit *g, int b, dl_cuda_vit_train_ws *ws) {
  const dl_vit_config *c = &g->cfg;
  const dl_dtype dt = g->dtype;
  const int D = c->dim, rows = ws->n * ws->t, F = c->ffn_hidden;
  cudaStream_t s = g->stream;
  dl_cuda_block_acts *k = &ws->blocks[b];
  dl_cuda_linear(&g->blas, dt, k->qkv, k->ln1, BP(DL_P_QKV_W), BP(DL_P_QKV_B), rows, D, 3 * D, DL_EPILOGUE_BIAS, s);
  dl_cuda_attention(dt, k->attn, k->lse, k->qkv, ws->n, ws->t, c->heads, D / c->heads, s);
  dl_cuda_linear(&g->blas, dt, k->proj, k->attn, BP(DL_P_PROJ_W), BP(DL_P_PROJ_B), rows, D, D, DL_EPILOGUE_BIAS, s);
  dl_cuda_residual_layernorm(dt, k->x_mid, k->ln2, k->mean2, k->rstd2, ws->xs[b], k->proj, BP(DL_P_LS1),
                             BP(DL_P_NORM2_W), BP(DL_P_NORM2_B), rows, D, LN_EPS, s);
  if (c->ffn == DL_FFN_SWIGLU) {
    dl_cuda_linear(&g->blas, dt, k->h_pre, k->ln2, BP(DL_P_FC1_W), BP(DL_P_FC1_B), rows, D, 2 * F, DL_EPILOGUE_BIAS,
                   s);
    dl_cuda_swiglu(dt, k->h_act, k->h_pre, rows, F, s);
  } else {
    dl_cuda_linear(&g->blas, dt, k->h_pre, k->ln2, BP(DL_P_FC1_W), BP(DL_P_FC1_B), rows, D, F, DL_EPILOGUE_BIAS, s);
    dl_cuda_gelu(dt, k->h_act, k->h_pre, (size_t)rows * F, s);
  }
  dl_cuda_linear(&g->blas, dt, k->fc2, k->h_act, BP(DL_P_FC2_W), BP(DL_P_FC2_B), rows, F, D, DL_EPILOGUE_BIAS, s);
  const void *nw, *nb;
  void *ny;
  float *nmean, *nrstd;
  next_norm(g, b, ws, &nw, &nb, &ny, &nmean, &nrstd);
  dl_cuda_residual_layernorm(dt, ws->xs[b + 1], ny, nmean, nrstd, k->x_mid, k->fc2, BP(DL_P_LS2), nw, nb, rows, D,
                             LN_EPS, s);
}

int dl_cuda_vit_forward_train_device(dl_cuda_vit *g, const float *images, int n, int h, int w, const bool *masks,
                                     dl_cuda_vit_train_ws *ws, dl_err *err) {
  if (prepare(g, n, h, w, ws, err)) return -1;
  const dl_vit_config *c = &g->cfg;
  embed_forward(g, ws, images, masks);
  const void *nw, *nb;
  void *ny;
  float *nmean, *nrstd;
  next_norm(g, -1, ws, &nw, &nb, &ny, &nmean, &nrstd);  // the first LayerNorm: no residual add before it
  dl_cuda_residual_layernorm(g->dtype, NULL, ny, nmean, nrstd, ws->xs[0], NULL, NULL, nw, nb, n * ws->t, c->dim,
                             LN_EPS, g->stream);
  for (int b = 0; b < c->depth; b++) block_forward(g, b, ws);
  ws->masks = masks ? ws->masks : NULL;
  return 0;
}

int dl_cuda_vit_forward_train(dl_cuda_vit *g, const float *images, int n, int h, int w, const bool *masks,
                              dl_cuda_vit_train_ws *ws, dl_vit_outputs *out, dl_err *err) {
  if (dl_cuda_vit_forward_train_device(g, images, n, h, w, masks, ws, err)) return -1;
  const dl_vit_config *c = &g->cfg;
  const dl_dtype dt = g->dtype;
  const int D = c->dim, R = c->registers, np = ws->np, t = ws->t, rows = n * t;
  cudaStream_t s = g->stream;
  // Outputs through a float32 copy on the device, then to the host.
  const size_t floats = (size_t)rows * D;
  if (g->outputs_cap < floats) {
    if (g->outputs) cudaCheckOr(cudaFree(g->outputs), dl_cuda_take_error(err));
    cudaCheckOr(cudaMalloc((void **)&g->outputs, floats * sizeof(float)), dl_cuda_take_error(err));
    g->outputs_cap = floats;
  }
  if (g->host_outputs_cap < floats) {
    free(g->host_outputs);
    g->host_outputs = dl_malloc(floats * sizeof(float));
    g->host_outputs_cap = floats;
  }
  dl_cuda_convert(g->outputs, DL_DTYPE_F32, ws->lnf, dt, floats, s);
  cudaCheckOr(cudaMemcpyAsync(g->host_outputs, g->outputs, floats * sizeof(float), cudaMemcpyDeviceToHost, s),
              dl_cuda_take_error(err));
  cudaCheckOr(cudaStreamSynchronize(s), dl_cuda_take_error(err));
  if (dl_cuda_take_error(err)) return -1;  // a failure recorded by a void call above
  for (int i = 0; i < n; i++) {
    const float *li = g->host_outputs + (size_t)i * t * D;
    if (out->cls) memcpy(out->cls + (size_t)i * D, li, (size_t)D * sizeof(float));
    if (R && out->regs) memcpy(out->regs + (size_t)i * R * D, li + D, (size_t)R * D * sizeof(float));
    if (out->patches)
      memcpy(out->patches + (size_t)i * np * D, li + (size_t)(1 + R) * D, (size_t)np * D * sizeof(float));
  }
  return 0;
}

// ws->dx holds the gradient of block b's output; on return, of its input.
static void block_backward(dl_cuda_vit *g, int b, dl_cuda_vit_train_ws *ws, float *grads) {
  const dl_vit_config *c = &g->cfg;
  const dl_dtype dt = g->dtype;
  const int D = c->dim, rows = ws->n * ws->t, F = c->ffn_hidden, hd = D / c->heads;
  const int fc1 = c->ffn == DL_FFN_SWIGLU ? 2 * F : F;
  const dl_cuda_block_acts *k = &ws->blocks[b];
  dl_cuda_blas *blas = &g->blas;
  cudaStream_t s = g->stream;
  // out = x_mid + ls2 * fc2(act(fc1(norm2(x_mid)))). The fc2 bias gradient
  // comes with LayerScale's, the fc1 bias gradient with GELU's backward.
  dl_cuda_layerscale_backward(dt, ws->dy, BG(DL_P_LS2), BG(DL_P_FC2_B), ws->dx, k->fc2, BP(DL_P_LS2), rows, D, s);
  dl_cuda_linear_backward(blas, dt, ws->dhact, BG(DL_P_FC2_W), NULL, ws->dy, k->h_act, BP(DL_P_FC2_W), rows, F, D, 0,
                          DL_BIAS_GRAD_ACCUMULATE, s);
  float *fc1_db = BG(DL_P_FC1_B);
  if (c->ffn == DL_FFN_SWIGLU) {
    dl_cuda_swiglu_backward(dt, ws->dh, ws->dhact, k->h_pre, rows, F, s);
  } else {
    dl_cuda_gelu_backward_bias_grad(dt, ws->dh, fc1_db, ws->dhact, k->h_pre, rows, F, s);
    fc1_db = NULL;  // done
  }
  dl_cuda_linear_backward(blas, dt, ws->dln, BG(DL_P_FC1_W), fc1_db, ws->dh, k->ln2, BP(DL_P_FC1_W), rows, D, fc1, 0,
                          DL_BIAS_GRAD_ACCUMULATE, s);
  dl_cuda_layernorm_backward_residual(dt, ws->dx, BG(DL_P_NORM2_W), BG(DL_P_NORM2_B), ws->dln, k->x_mid,
                                      BP(DL_P_NORM2_W), k->mean2, k->rstd2, rows, D, s);
  // x_mid = x + ls1 * proj(attention(qkv(norm1(x)))).
  dl_cuda_layerscale_backward(dt, ws->dy, BG(DL_P_LS1), BG(DL_P_PROJ_B), ws->dx, k->proj, BP(DL_P_LS1), rows, D, s);
  dl_cuda_linear_backward(blas, dt, ws->dattn, BG(DL_P_PROJ_W), NULL, ws->dy, k->attn, BP(DL_P_PROJ_W), rows, D, D,
                          0, DL_BIAS_GRAD_ACCUMULATE, s);
  dl_cuda_attn_backward(dt, ws->dqkv, ws->dattn, k->qkv, k->attn, k->lse, ws->n, ws->t, c->heads, hd,
                             ws->attn_scratch, s);
  dl_cuda_linear_backward(blas, dt, ws->dln, BG(DL_P_QKV_W), BG(DL_P_QKV_B), ws->dqkv, k->ln1, BP(DL_P_QKV_W), rows,
                          D, 3 * D, 0, DL_BIAS_GRAD_ACCUMULATE, s);
  dl_cuda_layernorm_backward_residual(dt, ws->dx, BG(DL_P_NORM1_W), BG(DL_P_NORM1_B), ws->dln, ws->xs[b],
                                      BP(DL_P_NORM1_W), k->mean1, k->rstd1, rows, D, s);
}

#undef BP
#undef BG

static void embed_backward(dl_cuda_vit *g, dl_cuda_vit_train_ws *ws, float *grads) {
  const dl_vit_config *c = &g->cfg;
  const dl_dtype dt = g->dtype;
  const int D = c->dim, np = ws->np, M = c->pos_grid;
  cudaStream_t s = g->stream;
  float *g_pos = gslot(g, grads, DL_P_POS);
  dl_cuda_embed_backward(dt, gslot(g, grads, DL_P_CLS), g_pos, gslot(g, grads, DL_P_REG), gslot(g, grads, DL_P_MASK),
                         ws->dpos, ws->dtok, ws->dx, ws->masks, ws->n, np, c->registers, D, s);
  if (dl_pos_embed_is_identity(M, ws->gh, ws->gw))
    dl_cuda_add(DL_DTYPE_F32, g_pos + D, ws->dpos, (size_t)np * D, s);
  else
    dl_cuda_pos_embed_resize_backward(g_pos + D, ws->dpos, ws->wy, ws->wx, M, D, ws->gh, ws->gw, s);
  dl_cuda_linear_backward(&g->blas, dt, NULL, gslot(g, grads, DL_P_PATCH_W), gslot(g, grads, DL_P_PATCH_B), ws->dtok,
                          ws->unfold, param(g, DL_P_PATCH_W), ws->n * np, 3 * c->patch * c->patch, D, 0,
                          DL_BIAS_GRAD_ACCUMULATE, s);
}

static void stage_done(const dl_cuda_backward_hook *hook, int stage) {
  if (hook) hook->stage_done(hook->ctx, stage);
}

void dl_cuda_vit_backward(dl_cuda_vit *g, dl_cuda_vit_train_ws *ws, const float *d_cls, const float *d_regs,
                          const float *d_patches, float *grads) {
  dl_cuda_vit_backward_hooked(g, ws, d_cls, d_regs, d_patches, grads, NULL);
}

void dl_cuda_vit_backward_hooked(dl_cuda_vit *g, dl_cuda_vit_train_ws *ws, const float *d_cls, const float *d_regs,
                                 const float *d_patches, float *grads, const dl_cuda_backward_hook *hook) {
  const dl_vit_config *c = &g->cfg;
  const dl_dtype dt = g->dtype;
  const int D = c->dim, rows = ws->n * ws->t;
  cudaStream_t s = g->stream;
  dl_cuda_gather_output_grads(dt, ws->dln, d_cls, d_regs, d_patches, ws->n, ws->np, c->registers, D, s);
  const int nw = g->layout->count - 2;
  cudaCheck(cudaMemsetAsync(ws->dx, 0, (size_t)rows * D * sizeof(float), s));  // the backward adds into it
  dl_cuda_layernorm_backward_residual(dt, ws->dx, gslot(g, grads, nw), gslot(g, grads, nw + 1), ws->dln,
                                      ws->xs[c->depth], param(g, nw), ws->meanf, ws->rstdf, rows, D, s);
  stage_done(hook, 0);
  for (int b = c->depth - 1; b >= 0; b--) {
    block_backward(g, b, ws, grads);
    stage_done(hook, dl_grad_stage_of_block(c->depth, b));
  }
  embed_backward(g, ws, grads);
  stage_done(hook, dl_grad_stage_count(c->depth) - 1);
}
