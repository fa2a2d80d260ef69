#include "model/cuda/heads_cuda.h"

#include <string.h>

#include "common/err.h"
#include "model/cuda/cuda_check.h"
#include "model/cuda/device_arena.h"

#define L2_EPS 1e-12f

static int layer_in(const dl_head_config *c, int l) { return l == 0 ? c->in_dim : c->hidden_dim; }
static int layer_out(const dl_head_config *c, int l) { return l == c->nlayers - 1 ? c->out_dim : c->hidden_dim; }

void dl_cuda_head_init(dl_cuda_head *h, const dl_head *host, dl_dtype dtype, dl_cuda_blas *blas, cudaStream_t s) {
  memset(h, 0, sizeof *h);
  h->cfg = host->cfg;
  h->layout = &host->layout;
  h->last_g = host->last_g;
  h->last_v = host->last_v;
  h->dtype = dtype;
  h->blas = blas;
  h->stream = s;
  const size_t total = host->layout.total;
  cudaCheck(cudaMalloc((void **)&h->master, total * sizeof(float)));
  // On the model's stream (a non-blocking one, which the legacy stream's
  // copies do not order with), then waited for: host->params may go.
  cudaCheck(cudaMemcpyAsync(h->master, host->params, total * sizeof(float), cudaMemcpyHostToDevice, s));
  if (dtype == DL_DTYPE_F32) {
    h->params = h->master;
  } else {
    cudaCheck(cudaMalloc(&h->params, total * dl_dtype_size(dtype)));
    dl_cuda_convert(h->params, dtype, h->master, DL_DTYPE_F32, total, s);
  }
  cudaCheck(cudaStreamSynchronize(s));
}

void dl_cuda_head_free(dl_cuda_head *h) {
  if (h->params && h->params != h->master) cudaCheck(cudaFree(h->params));
  if (h->master) cudaCheck(cudaFree(h->master));
  memset(h, 0, sizeof *h);
}

void dl_cuda_head_ws_free(dl_cuda_head_ws *ws) {
  if (ws->mem) cudaCheck(cudaFree(ws->mem));
  memset(ws, 0, sizeof *ws);
}

static const void *param(const dl_cuda_head *h, int index) {
  return (const unsigned char *)h->params + h->layout->entries[index].offset * dl_dtype_size(h->dtype);
}
static const float *master(const dl_cuda_head *h, int index) { return h->master + h->layout->entries[index].offset; }
static float *gslot(const dl_cuda_head *h, float *grads, int index) { return grads + h->layout->entries[index].offset; }

static size_t carve(dl_cuda_head_ws *ws, unsigned char *base, const dl_head_config *c, int m, size_t e) {
  dl_device_arena a = {base, 0};
  size_t wid = (size_t)(c->hidden_dim > c->out_dim ? c->hidden_dim : c->out_dim);
  if ((size_t)c->in_dim > wid) wid = (size_t)c->in_dim;
  for (int l = 0; l < c->nlayers; l++) {
    ws->pre[l] = dl_arena_take(&a, (size_t)m * layer_out(c, l) * e);
    ws->act[l] = dl_arena_take(&a, (size_t)m * layer_out(c, l) * e);
  }
  const size_t K = (size_t)c->prototypes, B = (size_t)c->out_dim, f = sizeof(float);
  ws->zn_own = dl_arena_take(&a, (size_t)m * B * e);
  ws->znorm = dl_arena_take(&a, (size_t)m * f);
  ws->w_eff = dl_arena_take(&a, K * B * e);
  ws->vnorm = dl_arena_take(&a, K * f);
  ws->dw = dl_arena_take(&a, K * B * f);
  ws->dz = dl_arena_take(&a, (size_t)m * B * e);
  ws->dzn = dl_arena_take(&a, (size_t)m * B * e);
  ws->dact = dl_arena_take(&a, (size_t)m * wid * e);
  ws->dpre = dl_arena_take(&a, (size_t)m * wid * e);
  return a.off;
}

static void prepare(const dl_cuda_head *h, dl_cuda_head_ws *ws, dl_head_mode mode, const void *x, int m) {
  const size_t e = dl_dtype_size(h->dtype), need = carve(ws, NULL, &h->cfg, m, e);
  if (ws->bytes < need) {
    if (ws->mem) cudaCheck(cudaFree(ws->mem));
    cudaCheck(cudaMalloc(&ws->mem, need));
    ws->bytes = need;
  }
  carve(ws, ws->mem, &h->cfg, m, e);
  ws->m = m;
  ws->mode = mode;
  ws->x = x;
}

// GELU after every layer but the last, whose output is pre[nlayers - 1].
static void mlp_forward(dl_cuda_head *h, dl_cuda_head_ws *ws, const void *x, int m) {
  const dl_head_config *c = &h->cfg;
  const void *in = x;
  for (int l = 0; l < c->nlayers; l++) {
    const int o = layer_out(c, l);
    dl_cuda_linear(h->blas, h->dtype, ws->pre[l], in, param(h, 2 * l), param(h, 2 * l + 1), m, layer_in(c, l), o,
                   DL_EPILOGUE_BIAS, h->stream);
    if (l == c->nlayers - 1) break;
    dl_cuda_gelu(h->dtype, ws->act[l], ws->pre[l], (size_t)m * o, h->stream);
    in = ws->act[l];
  }
}

void dl_cuda_head_forward_begin(dl_cuda_head *h, dl_head_mode mode, const void *x, int m, dl_cuda_head_ws *ws) {
  const dl_head_config *c = &h->cfg;
  DL_ASSERT(mode != DL_HEAD_BOTTLENECK && c->prototypes > 0);
  prepare(h, ws, mode, x, m);
  const dl_dtype dt = h->dtype;
  cudaStream_t s = h->stream;
  ws->zn = x;  // LAST_LAYER: the input is the normalized bottleneck
  if (mode == DL_HEAD_FULL) {
    mlp_forward(h, ws, x, m);
    dl_cuda_row_normalize(dt, ws->zn_own, ws->znorm, dt, ws->pre[c->nlayers - 1], NULL, m, c->out_dim, L2_EPS, s);
    ws->zn = ws->zn_own;
  }
  // W = g * v / ||v|| row by row, from the float32 master copy.
  dl_cuda_row_normalize(dt, ws->w_eff, ws->vnorm, DL_DTYPE_F32, master(h, h->last_v), master(h, h->last_g),
                        c->prototypes, c->out_dim, 0.0f, s);
  // The chunks' weight gradients add up here.
  cudaCheck(cudaMemsetAsync(ws->dw, 0, (size_t)c->prototypes * c->out_dim * sizeof(float), s));
}

void dl_cuda_head_last_rows(dl_cuda_head *h, dl_cuda_head_ws *ws, int row0, int n, void *out) {
  const size_t e = dl_dtype_size(h->dtype), B = (size_t)h->cfg.out_dim;
  const void *zn = (const unsigned char *)ws->zn + (size_t)row0 * B * e;
  dl_cuda_linear(h->blas, h->dtype, out, zn, ws->w_eff, NULL, n, (int)B, h->cfg.prototypes, DL_EPILOGUE_NONE,
                 h->stream);
}

void dl_cuda_head_forward(dl_cuda_head *h, dl_head_mode mode, const void *x, int m, void *out, dl_cuda_head_ws *ws) {
  const dl_head_config *c = &h->cfg;
  DL_ASSERT(mode == DL_HEAD_FULL || c->prototypes > 0);
  if (mode != DL_HEAD_BOTTLENECK && c->prototypes > 0) {
    dl_cuda_head_forward_begin(h, mode, x, m, ws);
    dl_cuda_head_last_rows(h, ws, 0, m, out);
    return;
  }
  prepare(h, ws, mode, x, m);
  const dl_dtype dt = h->dtype;
  const int B = c->out_dim;
  const size_t bytes = (size_t)m * B * dl_dtype_size(dt);
  cudaStream_t s = h->stream;
  mlp_forward(h, ws, x, m);
  const void *z = ws->pre[c->nlayers - 1];
  if (c->prototypes == 0) {
    cudaCheck(cudaMemcpyAsync(out, z, bytes, cudaMemcpyDeviceToDevice, s));
    return;
  }
  dl_cuda_row_normalize(dt, ws->zn_own, ws->znorm, dt, z, NULL, m, B, L2_EPS, s);
  ws->zn = ws->zn_own;
  cudaCheck(cudaMemcpyAsync(out, ws->zn_own, bytes, cudaMemcpyDeviceToDevice, s));
}

static void mlp_backward(dl_cuda_head *h, dl_cuda_head_ws *ws, const void *dout, float *grads, void *dx) {
  const dl_head_config *c = &h->cfg;
  const int m = ws->m;
  const void *d = dout;
  for (int l = c->nlayers - 1; l >= 0; l--) {
    const int in = layer_in(c, l), o = layer_out(c, l);
    const void *x = l == 0 ? ws->x : ws->act[l - 1];
    void *dxl = l == 0 ? dx : ws->dact;
    dl_cuda_linear_backward(h->blas, h->dtype, dxl, gslot(h, grads, 2 * l), gslot(h, grads, 2 * l + 1), d, x,
                            param(h, 2 * l), m, in, o, 0, DL_BIAS_GRAD_ACCUMULATE, h->stream);
    if (l == 0) break;
    dl_cuda_gelu_backward(h->dtype, ws->dpre, ws->dact, ws->pre[l - 1], (size_t)m * in, h->stream);
    d = ws->dpre;
  }
}

void dl_cuda_head_last_rows_backward(dl_cuda_head *h, dl_cuda_head_ws *ws, int row0, int n, const void *dout,
                                     void *dzn) {
  const size_t e = dl_dtype_size(h->dtype), B = (size_t)h->cfg.out_dim, off = (size_t)row0 * B * e;
  // logits = zn W^T: dW += dlogits^T zn (float32), dzn = dlogits W for these rows.
  dl_cuda_linear_backward(h->blas, h->dtype, (unsigned char *)(dzn ? dzn : ws->dzn) + off, ws->dw, NULL, dout,
                          (const unsigned char *)ws->zn + off, ws->w_eff, n, (int)B, h->cfg.prototypes, 0,
                          DL_BIAS_GRAD_ACCUMULATE, h->stream);
}

void dl_cuda_head_backward_finish(dl_cuda_head *h, dl_cuda_head_ws *ws, float *grads, void *dx) {
  const dl_head_config *c = &h->cfg;
  cudaStream_t s = h->stream;
  const void *dzn = ws->dzn;
  if (ws->mode != DL_HEAD_BOTTLENECK) {
    // Through the weight norm into dg and dv.
    dl_cuda_row_normalize_backward(DL_DTYPE_F32, gslot(h, grads, h->last_v), gslot(h, grads, h->last_g), ws->dw,
                                   master(h, h->last_v), ws->vnorm, master(h, h->last_g), c->prototypes, c->out_dim,
                                   0.0f, 1, s);
    if (ws->mode == DL_HEAD_LAST_LAYER) return;
  }
  dl_cuda_row_normalize_backward(h->dtype, ws->dz, NULL, dzn, ws->pre[c->nlayers - 1], ws->znorm, NULL, ws->m,
                                 c->out_dim, L2_EPS, 0, s);
  mlp_backward(h, ws, ws->dz, grads, dx);
}

void dl_cuda_head_backward(dl_cuda_head *h, dl_cuda_head_ws *ws, const void *dout, float *grads, void *dx) {
  const size_t e = dl_dtype_size(h->dtype), bytes = (size_t)ws->m * h->cfg.out_dim * e;
  if (h->cfg.prototypes == 0) {
    mlp_backward(h, ws, dout, grads, dx);
    return;
  }
  if (ws->mode == DL_HEAD_BOTTLENECK)  // the gradient arrives at the normalized bottleneck
    cudaCheck(cudaMemcpyAsync(ws->dzn, dout, bytes, cudaMemcpyDeviceToDevice, h->stream));
  else
    dl_cuda_head_last_rows_backward(h, ws, 0, ws->m, dout, ws->mode == DL_HEAD_LAST_LAYER ? dx : NULL);
  dl_cuda_head_backward_finish(h, ws, grads, dx);
}
