#include "model/cuda/vit_cuda.h"

#include <stdlib.h>
#include <string.h>

#include "model/cuda/attention_dispatch.h"
#include "model/cuda/cuda_check.h"
#include "model/cuda/vit_cuda_layout.h"
#include "model/pos_embed.h"

#define LN_EPS 1e-6f

void dl_cuda_vit_init(dl_cuda_vit *g, const dl_vit *host, dl_dtype dtype) {
  memset(g, 0, sizeof *g);
  g->cfg = host->cfg;
  g->layout = &host->layout;
  g->dtype = dtype;
  cudaCheck(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking));
  dl_cuda_blas_init(&g->blas);
  const size_t total = host->layout.total;
  float *staging;
  cudaCheck(cudaMalloc((void **)&staging, total * sizeof(float)));
  // On g->stream: a legacy-stream copy is not ordered with the non-blocking
  // stream's convert below.
  cudaCheck(cudaMemcpyAsync(staging, host->params, total * sizeof(float), cudaMemcpyHostToDevice, g->stream));
  cudaCheck(cudaMalloc(&g->params, total * dl_dtype_size(dtype)));
  dl_cuda_convert(g->params, dtype, staging, DL_DTYPE_F32, total, g->stream);
  cudaCheck(cudaStreamSynchronize(g->stream));
  cudaCheck(cudaFree(staging));
}

void dl_cuda_vit_free(dl_cuda_vit *g) {
  void *bufs[] = {g->params, g->work, g->images, g->outputs, g->axis_weights, g->masks};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    if (bufs[i]) cudaCheck(cudaFree(bufs[i]));
  dl_cuda_blas_free(&g->blas);
  if (g->stream) cudaCheck(cudaStreamDestroy(g->stream));
  free(g->host_outputs);
  memset(g, 0, sizeof *g);
}

// Grows a device buffer to at least `need` bytes (contents not kept).
static void ensure_device(void **p, size_t *cap, size_t need) {
  if (*cap >= need) return;
  if (*p) cudaCheck(cudaFree(*p));
  cudaCheck(cudaMalloc(p, need));
  *cap = need;
}

static const void *param(const dl_cuda_vit *g, int index) {
  return (const unsigned char *)g->params + g->layout->entries[index].offset * dl_dtype_size(g->dtype);
}

// The weights of the LayerNorm after block b's residual add (b = -1: before
// the first block): block b + 1's first, or the final norm.
static void next_norm(const dl_cuda_vit *g, int b, const void **w, const void **bias) {
  const dl_vit_config *c = &g->cfg;
  if (b + 1 < c->depth) {
    *w = param(g, dl_vit_block_index(c, b + 1, DL_P_NORM1_W));
    *bias = param(g, dl_vit_block_index(c, b + 1, DL_P_NORM1_B));
  } else {
    *w = param(g, g->layout->count - 2);
    *bias = param(g, g->layout->count - 1);
  }
}

// Block b from fb->ln, its normalized input; the residual stream fb->x is
// float32 and each add is fused with the LayerNorm after it, so on return
// fb->ln holds the next block's (or the final) normalized input.
static void block_forward(dl_cuda_vit *g, int b, dl_cuda_vit_buffers *fb, int n, int t) {
  const dl_vit_config *c = &g->cfg;
  const dl_dtype dt = g->dtype;
  const int D = c->dim, rows = n * t, F = c->ffn_hidden;
  cudaStream_t s = g->stream;
  float *x = fb->x;
#define P(k) param(g, dl_vit_block_index(c, b, k))
  dl_cuda_linear(&g->blas, dt, fb->qkv, fb->ln, P(DL_P_QKV_W), P(DL_P_QKV_B), rows, D, 3 * D, DL_EPILOGUE_BIAS, s);
  dl_cuda_attention(dt, fb->attn, NULL, fb->qkv, n, t, c->heads, D / c->heads, s);
  dl_cuda_linear(&g->blas, dt, fb->tmp, fb->attn, P(DL_P_PROJ_W), P(DL_P_PROJ_B), rows, D, D, DL_EPILOGUE_BIAS, s);
  dl_cuda_residual_layernorm(dt, x, fb->ln, NULL, NULL, x, fb->tmp, P(DL_P_LS1), P(DL_P_NORM2_W), P(DL_P_NORM2_B),
                             rows, D, LN_EPS, s);
  if (c->ffn == DL_FFN_SWIGLU) {
    dl_cuda_linear(&g->blas, dt, fb->hidden, fb->ln, P(DL_P_FC1_W), P(DL_P_FC1_B), rows, D, 2 * F, DL_EPILOGUE_BIAS,
                   s);
    dl_cuda_swiglu(dt, fb->gated, fb->hidden, rows, F, s);
    dl_cuda_linear(&g->blas, dt, fb->tmp, fb->gated, P(DL_P_FC2_W), P(DL_P_FC2_B), rows, F, D, DL_EPILOGUE_BIAS, s);
  } else {
    dl_cuda_linear(&g->blas, dt, fb->hidden, fb->ln, P(DL_P_FC1_W), P(DL_P_FC1_B), rows, D, F,
                   g->fuse_gelu ? DL_EPILOGUE_BIAS_GELU_TANH : DL_EPILOGUE_BIAS, s);
    if (!g->fuse_gelu) dl_cuda_gelu(dt, fb->hidden, fb->hidden, (size_t)rows * F, s);
    dl_cuda_linear(&g->blas, dt, fb->tmp, fb->hidden, P(DL_P_FC2_W), P(DL_P_FC2_B), rows, F, D, DL_EPILOGUE_BIAS, s);
  }
  const void *nw, *nb;
  next_norm(g, b, &nw, &nb);
  dl_cuda_residual_layernorm(dt, x, fb->ln, NULL, NULL, x, fb->tmp, P(DL_P_LS2), nw, nb, rows, D, LN_EPS, s);
#undef P
}

// The position embeddings for a gh x gw grid into fb->pos.
static void position_embeddings(dl_cuda_vit *g, dl_cuda_vit_buffers *fb, int gh, int gw) {
  const dl_vit_config *c = &g->cfg;
  const size_t esz = dl_dtype_size(g->dtype), D = (size_t)c->dim;
  const unsigned char *stored = (const unsigned char *)param(g, DL_P_POS) + D * esz;  // skips the class position
  if (dl_pos_embed_is_identity(c->pos_grid, gh, gw)) {
    cudaCheck(cudaMemcpyAsync(fb->pos, stored, (size_t)gh * gw * D * esz, cudaMemcpyDeviceToDevice, g->stream));
    return;
  }
  const size_t M = (size_t)c->pos_grid, floats = ((size_t)gh + gw) * M;
  float *host = dl_malloc(floats * sizeof(float));
  dl_pos_embed_axis_weights(host, c->pos_grid, gh, c->interp);
  dl_pos_embed_axis_weights(host + (size_t)gh * M, c->pos_grid, gw, c->interp);
  size_t cap_bytes = g->axis_cap * sizeof(float);
  ensure_device((void **)&g->axis_weights, &cap_bytes, floats * sizeof(float));
  g->axis_cap = cap_bytes / sizeof(float);
  // Synchronous copy: the host buffer is freed right after.
  cudaCheck(cudaMemcpyAsync(g->axis_weights, host, floats * sizeof(float), cudaMemcpyHostToDevice, g->stream));
  cudaCheck(cudaStreamSynchronize(g->stream));
  free(host);
  dl_cuda_pos_embed_resize(g->dtype, fb->pos, stored, g->axis_weights, g->axis_weights + (size_t)gh * M,
                           c->pos_grid, c->dim, gh, gw, g->stream);
}

int dl_cuda_vit_forward(dl_cuda_vit *g, const float *images, int n, int h, int w, const bool *masks,
                        dl_vit_outputs *out, dl_err *err) {
  const dl_vit_config *c = &g->cfg;
  if (n <= 0) return dl_fail(err, "empty batch");
  if (h <= 0 || w <= 0 || h % c->patch || w % c->patch)
    return dl_fail(err, "input %dx%d is not a multiple of the patch size %d", h, w, c->patch);
  if (c->dim / c->heads != DL_CUDA_ATTN_HEAD_DIM)
    return dl_fail(err, "the CUDA attention needs head dimension %d, the model has %d", DL_CUDA_ATTN_HEAD_DIM,
                   c->dim / c->heads);
  const int gh = h / c->patch, gw = w / c->patch, np = gh * gw, t = 1 + c->registers + np, D = c->dim;
  const int R = c->registers;
  const dl_dtype dt = g->dtype;
  cudaStream_t s = g->stream;

  dl_cuda_vit_buffers fb;
  ensure_device(&g->work, &g->work_bytes, dl_cuda_vit_carve(&fb, NULL, c, dl_dtype_size(dt), n, h, w));
  dl_cuda_vit_carve(&fb, g->work, c, dl_dtype_size(dt), n, h, w);

  const size_t img_floats = (size_t)n * 3 * h * w, out_floats = (size_t)n * t * D;
  size_t bytes = g->images_cap * sizeof(float);
  ensure_device((void **)&g->images, &bytes, img_floats * sizeof(float));
  g->images_cap = bytes / sizeof(float);
  bytes = g->outputs_cap * sizeof(float);
  ensure_device((void **)&g->outputs, &bytes, out_floats * sizeof(float));
  g->outputs_cap = bytes / sizeof(float);
  cudaCheckOr(cudaMemcpyAsync(g->images, images, img_floats * sizeof(float), cudaMemcpyHostToDevice, s),
              dl_cuda_take_error(err));
  const unsigned char *dmasks = NULL;
  if (masks) {
    // bool is one byte holding 0 or 1 on every ABI this builds for.
    ensure_device((void **)&g->masks, &g->masks_cap, (size_t)n * np);
    cudaCheckOr(cudaMemcpyAsync(g->masks, masks, (size_t)n * np, cudaMemcpyHostToDevice, s), dl_cuda_take_error(err));
    dmasks = g->masks;
  }

  dl_cuda_unfold_patches(dt, fb.unfold, g->images, n, h, w, c->patch, s);
  dl_cuda_linear(&g->blas, dt, fb.tmp, fb.unfold, param(g, DL_P_PATCH_W), param(g, DL_P_PATCH_B), n * np,
                 3 * c->patch * c->patch, D, DL_EPILOGUE_BIAS, s);
  position_embeddings(g, &fb, gh, gw);
  dl_cuda_assemble_tokens(dt, (float *)fb.x, fb.tmp, param(g, DL_P_CLS), param(g, DL_P_POS), param(g, DL_P_REG),
                          param(g, DL_P_MASK), fb.pos, dmasks, n, np, R, D, s);
  const void *nw, *nb;
  next_norm(g, -1, &nw, &nb);  // the first LayerNorm: no residual add before it
  dl_cuda_residual_layernorm(dt, NULL, fb.ln, NULL, NULL, (const float *)fb.x, NULL, NULL, nw, nb, n * t, D, LN_EPS,
                             s);
  for (int b = 0; b < c->depth; b++) block_forward(g, b, &fb, n, t);

  // fb.ln holds the final LayerNorm's output (fused into the last add).
  if (out->prenorm)  // the float32 stream itself, no conversion
    cudaCheckOr(cudaMemcpyAsync(out->prenorm, fb.x, out_floats * sizeof(float), cudaMemcpyDeviceToHost, s),
                dl_cuda_take_error(err));
  dl_cuda_convert(g->outputs, DL_DTYPE_F32, fb.ln, dt, out_floats, s);
  if (g->host_outputs_cap < out_floats) {
    free(g->host_outputs);
    g->host_outputs = dl_malloc(out_floats * sizeof(float));
    g->host_outputs_cap = out_floats;
  }
  cudaCheckOr(cudaMemcpyAsync(g->host_outputs, g->outputs, out_floats * sizeof(float), cudaMemcpyDeviceToHost, s),
              dl_cuda_take_error(err));
  cudaCheckOr(cudaStreamSynchronize(s), dl_cuda_take_error(err));
  if (dl_cuda_take_error(err)) return -1;  // a failure recorded by a void call above
  for (int i = 0; i < n; i++) {
    const float *li = g->host_outputs + (size_t)i * t * D;
    memcpy(out->cls + (size_t)i * D, li, (size_t)D * sizeof(float));
    if (R && out->regs) memcpy(out->regs + (size_t)i * R * D, li + D, (size_t)R * D * sizeof(float));
    memcpy(out->patches + (size_t)i * np * D, li + (size_t)(1 + R) * D, (size_t)np * D * sizeof(float));
  }
  return 0;
}
